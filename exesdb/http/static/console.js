// exesdb console: plain JavaScript, no build step, no framework.
// Every value from the server is put in the page as text (textContent), never as HTML.
"use strict";

const CONSOLE_HEADER = { "X-Exesdb-Console": "1", "Content-Type": "application/json" };
const CHART_POINTS = 300;          // five minutes of one-second samples
const RESTART_HIGHLIGHT = 60;      // seconds a restarted process stays highlighted

const state = {
  node: null,                       // GET /api/node
  page: null,
  dashboard: null,                  // EventSource
  tree: null,                       // EventSource
  previous: new Map(),              // store id -> last sample (rates)
  series: new Map(),                // store id -> [{in, out}]
  stream: { store: null, id: null, low: null, high: null, after: "" },
  selectedPid: null,
};

// -- helpers -----------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function fmtNumber(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en");
}

function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function fmtRate(value) { return value === null ? "–" : `${value.toFixed(1)}/s`; }

function storeOptions(select) {
  const current = select.value;
  clear(select);
  for (const store of (state.node && state.node.stores) || []) {
    select.append(el("option", { value: store.store_id }, store.store_id));
  }
  if (current) select.value = current;
}

// -- pages -------------------------------------------------------------------------------

const PAGES = {
  dashboard: { enter: enterDashboard, leave: () => closeSource("dashboard") },
  streams: { enter: enterStreams, leave: () => {} },
  subscriptions: { enter: enterSubscriptions, leave: () => clearInterval(state.subsTimer) },
  tree: { enter: enterTree, leave: () => closeSource("tree") },
  cluster: { enter: enterCluster, leave: () => {} },
};

function closeSource(name) {
  if (state[name]) { state[name].close(); state[name] = null; }
}

function route() {
  const name = (location.hash.replace(/^#\/?/, "").split("/")[0]) || "dashboard";
  const page = PAGES[name] ? name : "dashboard";
  if (state.page && state.page !== page) PAGES[state.page].leave();
  state.page = page;
  for (const section of document.querySelectorAll(".page")) {
    section.hidden = section.id !== `page-${page}`;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  showError("");
  PAGES[page].enter();
}

// -- dashboard ---------------------------------------------------------------------------

function enterDashboard() {
  closeSource("dashboard");
  const source = new EventSource("/api/live/dashboard");
  source.addEventListener("sample", (event) => renderSample(JSON.parse(event.data)));
  source.onerror = () => showError("The live updates were interrupted; retrying…");
  source.onopen = () => showError("");
  state.dashboard = source;
}

function storeCard(store) {
  let card = document.querySelector(`#store-cards [data-store="${CSS.escape(store.store_id)}"]`);
  if (card) return card;
  const field = (name, label) => [el("dt", {}, label), el("dd", { class: name }, "–")];
  card = el("div", { class: "card store-card", dataset: { store: store.store_id } },
    el("h3", {}, el("span", { class: "store-name" }, store.store_id), " ",
      el("span", { class: "status badge" }, "")),
    el("dl", {},
      field("head", "Head ($all)"), field("streams", "Streams"),
      field("rate-in", "Events in"), field("rate-out", "Events out"),
      field("peak", "Peak in / out (5 min)"),
      field("appended", "Appended"), field("read", "Read"),
      field("connections", "gRPC connections")),
    el("canvas", { class: "chart", width: 600, height: 140 }),
    el("div", { class: "legend" }, el("span", { class: "in" }, "■ in"), "  ",
      el("span", { class: "out" }, "■ out"), " (events/s, last 5 minutes)"),
    el("table", { class: "subs" },
      el("thead", {}, el("tr", {}, el("th", {}, "Subscription"), el("th", {}, "Type"),
        el("th", {}, "Selector"), el("th", {}, "Lag"))),
      el("tbody", {})));
  $("store-cards").append(card);
  return card;
}

function renderSample(sample) {
  $("node-processes").textContent = fmtNumber(sample.processes);
  $("node-memory").textContent = fmtBytes(sample.memory_bytes);
  const seen = new Set();
  for (const store of sample.stores) {
    seen.add(store.store_id);
    const card = storeCard(store);
    const previous = state.previous.get(store.store_id);
    let rateIn = null, rateOut = null;
    if (previous && sample.time > previous.time) {
      const dt = sample.time - previous.time;
      rateIn = Math.max(0, store.events_appended - previous.events_appended) / dt;
      rateOut = Math.max(0, store.events_read - previous.events_read) / dt;
      const series = state.series.get(store.store_id) || [];
      series.push({ in: rateIn, out: rateOut });
      while (series.length > CHART_POINTS) series.shift();
      state.series.set(store.store_id, series);
    }
    state.previous.set(store.store_id, { time: sample.time,
      events_appended: store.events_appended, events_read: store.events_read });
    const set = (name, text) => { card.querySelector(`.${name}`).textContent = text; };
    const status = card.querySelector(".status");
    status.textContent = store.status;
    status.className = `status badge status-${store.status}`;
    set("head", fmtNumber(store.head));
    set("appended", fmtNumber(store.events_appended));
    set("read", fmtNumber(store.events_read));
    set("connections", fmtNumber(store.grpc_connections));
    if (rateIn !== null) {
      set("rate-in", fmtRate(rateIn));
      set("rate-out", fmtRate(rateOut));
      const series = state.series.get(store.store_id);
      const peak = (key) => Math.max(...series.map((point) => point[key]));
      set("peak", `${fmtRate(peak("in"))} / ${fmtRate(peak("out"))}`);
    }
    if (sample.detail) {
      if ("streams" in store) set("streams", fmtNumber(store.streams));
      renderSubscriptionSummary(card.querySelector(".subs tbody"), store.subscriptions);
    }
    drawChart(card.querySelector("canvas"), state.series.get(store.store_id) || []);
  }
  for (const card of document.querySelectorAll("#store-cards [data-store]")) {
    if (!seen.has(card.dataset.store)) card.remove();
  }
}

function renderSubscriptionSummary(tbody, subscriptions) {
  clear(tbody);
  if (!subscriptions) {
    tbody.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "not available")));
    return;
  }
  for (const sub of subscriptions) {
    tbody.append(el("tr", {}, el("td", {}, sub.kind === "transient" ? "(transient)" : sub.name),
      el("td", {}, sub.type), el("td", {}, sub.selector), el("td", { class: "lag" },
        fmtNumber(sub.lag))));
  }
}

function drawChart(canvas, series) {
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 600, cssHeight = canvas.clientHeight || 140;
  if (canvas.width !== Math.round(cssWidth * ratio)) {
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const width = cssWidth, height = cssHeight, pad = 4;
  ctx.clearRect(0, 0, width, height);
  const top = Math.max(1, ...series.map((p) => Math.max(p.in, p.out)));
  ctx.fillStyle = "#687086";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(`${top.toFixed(top < 10 ? 1 : 0)}/s`, pad, 12);
  const line = (key, colour) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    series.forEach((point, i) => {
      const x = width - (series.length - 1 - i) * (width / CHART_POINTS) - pad;
      const y = height - pad - (point[key] / top) * (height - 2 * pad - 12);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  };
  line("in", "#2f5fd0");
  line("out", "#1f9d6b");
}

// -- streams -----------------------------------------------------------------------------

function enterStreams() {
  const select = $("streams-store");
  storeOptions(select);
  if (select.value && select.value !== state.stream.store) loadStreams(true);
}

async function loadStreams(reset) {
  const store = $("streams-store").value;
  if (!store) return;
  if (reset) { state.stream.after = ""; clear($("stream-list")); }
  state.stream.store = store;
  const prefix = $("streams-prefix").value;
  const query = new URLSearchParams({ prefix, after: state.stream.after, limit: "100" });
  try {
    const body = await api(`/api/stores/${encodeURIComponent(store)}/streams?${query}`);
    for (const id of body.streams) {
      $("stream-list").append(el("li", { dataset: { stream: id },
        onclick: () => openStream(store, id) }, id));
    }
    state.stream.after = body.streams.length ? body.streams[body.streams.length - 1]
      : state.stream.after;
    $("streams-more").hidden = !body.more;
    $("streams-count").textContent = `${fmtNumber(body.total)} streams in ${store}`;
    showError("");
  } catch (error) { showError(error.message); }
}

async function openStream(store, id) {
  state.stream.store = store;
  state.stream.id = id;
  for (const item of document.querySelectorAll("#stream-list li")) {
    item.classList.toggle("selected", item.dataset.stream === id);
  }
  $("stream-view").hidden = false;
  $("stream-title").textContent = id;
  await loadPage("0", "forward");
}

async function loadPage(from, direction) {
  const { store, id } = state.stream;
  const query = new URLSearchParams({ stream: id, from, count: "20", direction });
  try {
    const body = await api(`/api/stores/${encodeURIComponent(store)}/events?${query}`);
    const events = body.events.slice().sort((a, b) => a.event_number - b.event_number);
    renderEvents(events, body.version);
    showError("");
  } catch (error) { showError(error.message); }
}

function renderEvents(events, version) {
  const tbody = $("event-table").querySelector("tbody");
  clear(tbody);
  $("event-detail").hidden = true;
  for (const event of events) {
    const row = el("tr", { class: "clickable", dataset: { number: event.event_number } },
      el("td", {}, event.event_number), el("td", {}, event.event_type),
      el("td", {}, event.position), el("td", {}, event.created));
    row.addEventListener("click", () => {
      for (const other of tbody.querySelectorAll("tr")) other.classList.remove("selected");
      row.classList.add("selected");
      showEvent(event);
    });
    tbody.append(row);
  }
  state.stream.low = events.length ? events[0].event_number : null;
  state.stream.high = events.length ? events[events.length - 1].event_number : null;
  $("page-range").textContent = events.length
    ? `events ${state.stream.low}–${state.stream.high} of 0–${version}` : "no events here";
  $("page-prev").disabled = !events.length || state.stream.low <= 0;
  $("page-next").disabled = !events.length || state.stream.high >= version;
}

function payloadText(payload) {
  if (payload === null) return "(none)";
  const cut = payload.truncated ? `\n… (${fmtNumber(payload.size)} bytes, cut)` : "";
  return payload.kind === "bytes" ? `${payload.size} bytes\n${payload.hex}${cut}`
    : payload.text + cut;
}

function showEvent(event) {
  $("event-detail").hidden = false;
  $("event-title").textContent = `${event.stream_id} #${event.event_number}: ${event.event_type}`;
  const fields = $("event-fields");
  clear(fields);
  for (const [label, value] of [["Event id", event.event_id], ["Type", event.event_type],
    ["Content type", event.content_type], ["Position", event.position],
    ["Created", event.created]]) {
    fields.append(el("dt", {}, label), el("dd", {}, value));
  }
  $("event-data").textContent = payloadText(event.data);
  $("event-metadata").textContent = payloadText(event.metadata);
}

// -- subscriptions -----------------------------------------------------------------------

function enterSubscriptions() {
  storeOptions($("subs-store"));
  loadSubscriptions();
  clearInterval(state.subsTimer);
  state.subsTimer = setInterval(loadSubscriptions, 5000);
}

async function loadSubscriptions() {
  const store = $("subs-store").value;
  if (!store) return;
  try {
    const body = await api(`/api/stores/${encodeURIComponent(store)}/subscriptions`);
    const tbody = $("subs-table").querySelector("tbody");
    clear(tbody);
    for (const sub of body.subscriptions || []) {
      tbody.append(el("tr", { dataset: { key: sub.key } },
        el("td", {}, sub.name), el("td", {}, sub.kind), el("td", {}, sub.type),
        el("td", {}, sub.selector), el("td", {}, fmtNumber(sub.position)),
        el("td", {}, fmtNumber(sub.head)), el("td", { class: "lag" }, fmtNumber(sub.lag)),
        el("td", {}, fmtNumber(sub.in_flight)), el("td", {}, sub.subscriber || "(broadcast)"),
        el("td", {}, sub.running === null ? "–" : sub.running ? "yes" : "no")));
    }
    const groups = $("groups-table").querySelector("tbody");
    clear(groups);
    $("groups-none").hidden = body.groups !== null && body.groups.length > 0;
    $("groups-table").hidden = !body.groups || body.groups.length === 0;
    for (const group of body.groups || []) {
      const replay = el("button", { type: "button", disabled: group.parked === 0 },
        "Replay parked");
      replay.addEventListener("click", () => replayParked(store, group));
      groups.append(el("tr", {}, el("td", {}, group.stream), el("td", {}, group.group),
        el("td", {}, group.status), el("td", {}, fmtNumber(group.consumers)),
        el("td", {}, fmtNumber(group.in_flight)), el("td", { class: "parked" },
          fmtNumber(group.parked)), el("td", {}, fmtNumber(group.last_checkpoint)),
        el("td", {}, replay)));
    }
    showError("");
  } catch (error) { showError(error.message); }
}

async function replayParked(store, group) {
  try {
    await api(`/api/stores/${encodeURIComponent(store)}/groups/replay-parked`, {
      method: "POST", headers: CONSOLE_HEADER,
      body: JSON.stringify({ stream: group.stream, group: group.group }),
    });
    await loadSubscriptions();
  } catch (error) { showError(error.message); }
}

// -- supervision tree --------------------------------------------------------------------

function enterTree() {
  closeSource("tree");
  const source = new EventSource("/api/live/tree");
  source.addEventListener("tree", (event) => renderTree(JSON.parse(event.data)));
  source.onerror = () => showError("The live tree was interrupted; retrying…");
  source.onopen = () => showError("");
  state.tree = source;
}

function renderTree(body) {
  const box = $("tree");
  clear(box);
  if (!body.tree) { box.append(el("p", { class: "muted" }, "No snapshot yet.")); return; }
  box.dataset.version = body.version;
  box.append(el("ul", {}, treeNode(body.tree, body.now)));
}

function treeNode(node, now) {
  const recent = node.restarted_at !== null && now - node.restarted_at < RESTART_HIGHLIGHT;
  const classes = ["node", node.kind];
  if (recent) classes.push("restarted");
  if (node.pid === null && node.kind !== "node") classes.push("down");
  if (node.pid !== null && node.pid === state.selectedPid) classes.push("selected");
  const label = el("span", { class: classes.join(" "), dataset: { path: node.path,
    pid: node.pid || "" }, title: node.path },
    el("span", { class: "label" }, node.label),
    node.kind === "node" ? null : el("span", { class: "pid" }, node.pid || "not running"),
    recent ? el("span", { class: "badge restart" }, "restarted") : null,
    node.restarts ? el("span", { class: "badge" },
      `${node.restarts} restart${node.restarts === 1 ? "" : "s"} seen`) : null,
    node.unreachable ? el("span", { class: "badge" }, "not answering") : null);
  if (node.pid) label.addEventListener("click", () => selectProcess(node.pid));
  const children = node.children.map((child) => treeNode(child, now));
  if (node.more) children.push(el("li", { class: "muted" }, `… ${node.more} more`));
  return el("li", {}, label, children.length ? el("ul", {}, children) : null);
}

async function selectProcess(pid) {
  state.selectedPid = pid;
  for (const node of document.querySelectorAll("#tree .node")) {
    node.classList.toggle("selected", node.dataset.pid === pid);
  }
  $("process-message").textContent = "";
  try {
    const info = await api(`/api/processes/${encodeURIComponent(pid)}`);
    $("process-info").hidden = false;
    $("process-title").textContent = `${info.label} ${info.pid}`;
    const fields = $("process-fields");
    clear(fields);
    const rows = [["Path", info.path], ["Kind", info.kind], ["Alive", info.alive ? "yes" : "no"],
      ["Last restart", info.restarted_at ? new Date(info.restarted_at * 1000).toISOString() : "–"]];
    if (info.kind === "supervisor") rows.push(["Children restarts seen", info.restarts]);
    if (info.children) rows.push(["Children", `${info.children.active} running of ${info.children.specs}`]);
    if ("message_queue_len" in info) rows.push(["Message queue", info.message_queue_len]);
    for (const [label, value] of rows) fields.append(el("dt", {}, label), el("dd", {}, value));
    const kill = $("process-kill");
    kill.hidden = !(state.node && state.node.admin);
    kill.onclick = () => killProcess(info.pid);
  } catch (error) { showError(error.message); }
}

async function killProcess(pid) {
  try {
    const body = await api(`/api/processes/${encodeURIComponent(pid)}/kill`,
      { method: "POST", headers: CONSOLE_HEADER });
    $("process-message").textContent = `killed ${body.killed}; its supervisor restarts it`;
  } catch (error) { $("process-message").textContent = error.message; }
}

// -- cluster -----------------------------------------------------------------------------

async function enterCluster() {
  const box = $("cluster");
  try {
    const stores = await api("/api/cluster");
    clear(box);
    for (const store of stores) {
      const rows = store.members.map((member) => el("tr", {},
        el("td", {}, member.node, member.me ? " (this node)" : ""),
        el("td", {}, member.address || "–"),
        el("td", {}, member.alive ? "alive" : "down"),
        el("td", {}, member.leader ? el("span", { class: "badge leader" }, "leader") : "follower")));
      box.append(el("div", { class: "card", dataset: { store: store.store_id } },
        el("h3", {}, `${store.store_id} `, el("span", { class: "badge" }, store.db_type)),
        el("p", {}, "Leader: ", el("strong", { class: "leader" }, store.leader || "none")),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Member"),
          el("th", {}, "Address"), el("th", {}, "State"), el("th", {}, "Role"))),
        el("tbody", {}, rows))));
    }
    showError("");
  } catch (error) { showError(error.message); }
}

// -- start -------------------------------------------------------------------------------

async function start() {
  $("stream-search").addEventListener("submit", (event) => {
    event.preventDefault();
    loadStreams(true);
  });
  $("streams-store").addEventListener("change", () => loadStreams(true));
  $("streams-more").addEventListener("click", () => loadStreams(false));
  $("subs-store").addEventListener("change", loadSubscriptions);
  $("page-first").addEventListener("click", () => loadPage("0", "forward"));
  $("page-last").addEventListener("click", () => loadPage("end", "backward"));
  $("page-next").addEventListener("click", () => loadPage(String(state.stream.high + 1), "forward"));
  $("page-prev").addEventListener("click", () => loadPage(String(state.stream.low - 1), "backward"));
  try {
    state.node = await api("/api/node");
    $("whoami").textContent = state.node.user ? `signed in as ${state.node.user}` : "";
  } catch (error) { showError(error.message); }
  window.addEventListener("hashchange", route);
  route();
}

document.addEventListener("DOMContentLoaded", start);
