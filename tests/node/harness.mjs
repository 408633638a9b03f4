// The Node.js suite's fixture: a real `python -m exesdb start` subprocess in a fresh
// temporary data directory, on free ports of 127.0.0.1, driven by the official client.
//
// startServer({ args, storeIds }) runs
//   <python> -m exesdb start --data-dir <tmp> --store-id s --grpc-port 0 --no-http <args>
// and resolves once every store logged `exesdb.grpc: store <ID> listening on <HOST>:<PORT>`
// and the server logged that it serves. server.stop() sends SIGTERM and rejects unless
// the server exits with code 0. The Python interpreter is $EXESDB_PYTHON, else `python3`
// (an activated virtual environment's, with the project installed).

import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { KurrentDBClient, jsonEvent } from "@kurrent/kurrentdb-client";

export const PYTHON = process.env.EXESDB_PYTHON || "python3";
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;
const LISTENING = /exesdb\.grpc: store (\S+) listening on (\S+):(\d+)( \(tls\))?\s*$/;
const SERVING = "exesdb: serving";

/** A fresh temporary folder, removed when the process exits. */
export function temporaryFolder(prefix = "exesdb-node-") {
  const folder = mkdtempSync(join(tmpdir(), prefix));
  process.on("exit", () => rmSync(folder, { recursive: true, force: true }));
  return folder;
}

/** Run `<python> -m exesdb <args>`; throw with its output unless it exits 0. */
export function runExesdb(args, input = undefined) {
  const result = spawnSync(PYTHON, ["-m", "exesdb", ...args], { input, encoding: "utf8" });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`python -m exesdb ${args.join(" ")} exited ${result.status}:\n` +
      `${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

/** A test CA and a server certificate it issued for 127.0.0.1 and localhost, generated
 * with trustme as the Python tests do: { caFile, certFile, keyFile }. */
export function makeCertificates(folder = temporaryFolder("exesdb-node-tls-")) {
  const caFile = join(folder, "ca.pem");
  const certFile = join(folder, "server.crt");
  const keyFile = join(folder, "server.key");
  const script = [
    "import sys, trustme",
    "ca = trustme.CA()",
    "cert = ca.issue_cert('127.0.0.1', 'localhost')",
    "ca.cert_pem.write_to_path(sys.argv[1])",
    "cert.private_key_and_cert_chain_pem.write_to_path(sys.argv[2])",
    "cert.private_key_pem.write_to_path(sys.argv[3])",
  ].join("\n");
  const result = spawnSync(PYTHON, ["-c", script, caFile, certFile, keyFile],
    { encoding: "utf8" });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`trustme failed:\n${result.stderr}`);
  return { caFile, certFile, keyFile };
}

/** A users file made by `python -m exesdb user add`: users is { name: [password, groups] }. */
export function makeUsersFile(users, folder = temporaryFolder("exesdb-node-users-")) {
  const file = join(folder, "users");
  writeFileSync(file, "");
  for (const [name, [password, groups]] of Object.entries(users)) {
    const groupArgs = groups.flatMap((group) => ["--group", group]);
    runExesdb(["user", "add", "--users-file", file, ...groupArgs, "--password-stdin", name],
      `${password}\n`);
  }
  return file;
}

export class Server {
  constructor(process, ports, tls) {
    this.process = process;
    this.ports = ports;
    this.tls = tls;
    this.output = [];
  }

  /** The first store's port. */
  get port() {
    return Object.values(this.ports)[0];
  }

  /** A kurrentdb:// connection string for a store: TLS trusting caFile when given (or
   * only the system's roots with tls: true), else plain text. */
  connectionString({ storeId = undefined, user = undefined, password = undefined,
    caFile = undefined, tls = caFile !== undefined } = {}) {
    const port = storeId === undefined ? this.port : this.ports[storeId];
    const credentials = user === undefined ? "" : `${user}:${password}@`;
    const options = !tls ? "tls=false" : caFile === undefined ? "tls=true"
      : `tls=true&tlsCAFile=${caFile}`;
    return `kurrentdb://${credentials}127.0.0.1:${port}?${options}`;
  }

  /** A connected client (see connectionString). */
  client(options = {}) {
    return KurrentDBClient.connectionString(this.connectionString(options));
  }

  /** SIGTERM; resolves once the server exited with code 0, else rejects with its output. */
  stop() {
    const child = this.process;
    return new Promise((resolve, reject) => {
      const done = (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`the server exited with ${code ?? signal}; its output:\n` +
          this.output.join("")));
      };
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the server did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM`));
      }, STOP_TIMEOUT_MS);
      if (child.exitCode !== null || child.signalCode !== null) {
        done(child.exitCode, child.signalCode);
        return;
      }
      child.once("exit", done);
      child.kill("SIGTERM");
    });
  }
}

/** Start `python -m exesdb start` (see the top of this file). */
export function startServer({ args = [], storeIds = ["s"] } = {}) {
  const dataDir = temporaryFolder("exesdb-node-data-");
  const command = ["-m", "exesdb", "start", "--data-dir", dataDir,
    ...storeIds.flatMap((id) => ["--store-id", id]), "--grpc-port", "0", "--no-http", ...args];
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith("EX_ESDB_")));
  const child = spawn(PYTHON, command, { env, stdio: ["ignore", "ignore", "pipe"] });
  const server = new Server(child, {}, false);
  process.on("exit", () => child.kill("SIGKILL"));
  return new Promise((resolve, reject) => {
    let serving = false;
    let pending = "";
    const fail = (why) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${why}; its output:\n${server.output.join("")}`));
    };
    const timer = setTimeout(
      () => fail(`the server did not listen within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    child.on("error", (error) => fail(`${PYTHON} -m exesdb start failed: ${error.message}`));
    child.on("exit", (code) => {
      if (!serving) fail(`the server exited (${code}) before it served`);
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      server.output.push(chunk);
      if (serving) return;
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        const match = LISTENING.exec(line);
        if (match) {
          server.ports[match[1]] = Number(match[3]);
          server.tls ||= Boolean(match[4]);
        }
        if (line.includes(SERVING)) serving = true;
      }
      if (serving && storeIds.every((id) => id in server.ports)) {
        clearTimeout(timer);
        resolve(server);
      }
    });
  });
}

/** A stream name of its own for one test. */
export function streamName(prefix = "node") {
  return `${prefix}-${randomUUID()}`;
}

/** A JSON event of the given type. */
export function event(type, data = {}) {
  return jsonEvent({ type, data });
}

/** Collect an async iterable's items. */
export async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** Record what a subscription delivers, in order: { event }, { caughtUp } and { error }
 * entries in `log`; `until(predicate)` resolves with the log once predicate(log) holds
 * (rejects after timeoutMs, or at once on an error entry unless the predicate accepts it). */
export function record(subscription, { onEvent = undefined } = {}) {
  const log = [];
  const waiters = new Set();
  const changed = () => {
    for (const waiter of waiters) waiter();
  };
  subscription.on("data", async (resolved) => {
    log.push({ event: resolved });
    if (onEvent) await onEvent(resolved);
    changed();
  });
  subscription.on("caughtUp", (info) => {
    log.push({ caughtUp: info });
    changed();
  });
  subscription.on("error", (error) => {
    log.push({ error });
    changed();
  });
  const until = (predicate, timeoutMs = 10_000) => new Promise((resolve, reject) => {
    const waiter = () => {
      if (predicate(log)) {
        finish();
        resolve(log);
      } else {
        const failed = log.find((entry) => entry.error);
        if (failed) {
          finish();
          reject(failed.error);
        }
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`not within ${timeoutMs} ms; the subscription delivered: ` +
        describeLog(log)));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      waiters.delete(waiter);
    };
    waiters.add(waiter);
    waiter();
  });
  const events = () => log.filter((entry) => entry.event).map((entry) => entry.event);
  return { log, until, events };
}

/** A log of record() as text, for failure messages. */
export function describeLog(log) {
  return JSON.stringify(log.map((entry) => {
    if (entry.caughtUp) return "caughtUp";
    if (entry.error) return `error ${entry.error}`;
    const { event: e } = entry.event;
    return e ? `${e.streamId}@${e.revision} ${e.type}` : "?";
  }));
}
