// Catch-up subscriptions through the official Node.js client: to a stream and to $all,
// with the server-side filters on event type and stream name.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  END, START, StreamDeletedError, eventTypeFilter, excludeSystemEvents, streamNameFilter,
} from "@kurrent/kurrentdb-client";

import { event, record, startServer, streamName } from "./harness.mjs";

let server;
let client;
const subscriptions = [];

before(async () => {
  server = await startServer();
  client = server.client();
});

after(async () => {
  for (const subscription of subscriptions) await subscription.unsubscribe();
  await client?.dispose();
  await server?.stop();
});

/** A subscription closed after the file's tests. */
function opened(subscription) {
  subscriptions.push(subscription);
  return subscription;
}

const typesIn = (events) => events.map(({ event: e }) => e.type);
const countOf = (n) => (log) => log.filter((entry) => entry.event).length >= n;

describe("catch-up subscription to a stream", () => {
  test("delivers the stored events, says caught up, then delivers new events live",
    async () => {
      const name = streamName();
      await client.appendToStream(name, [event("A"), event("B")]);
      const recorder = record(opened(client.subscribeToStream(name, { fromRevision: START })));
      await recorder.until((log) => log.some((entry) => entry.caughtUp));
      await client.appendToStream(name, event("C"));
      const log = await recorder.until(countOf(3));
      assert.deepEqual(log.map((entry) => entry.caughtUp ? "caughtUp" : entry.event.event.type),
        ["A", "B", "caughtUp", "C"]);
      assert.deepEqual(recorder.events().map(({ event: e }) => e.revision), [0n, 1n, 2n]);
    });

  test("caught up tells the stream revision it caught up at", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")]);
    const recorder = record(opened(client.subscribeToStream(name)));
    const log = await recorder.until((entries) => entries.some((entry) => entry.caughtUp));
    const { caughtUp } = log.find((entry) => entry.caughtUp);
    assert.equal(caughtUp.revision, 1n);
    assert.ok(caughtUp.date instanceof Date);
  });

  test("from a revision delivers only the events after it", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B"), event("C")]);
    const recorder = record(opened(client.subscribeToStream(name, { fromRevision: 0n })));
    await recorder.until(countOf(2));
    assert.deepEqual(typesIn(recorder.events()), ["B", "C"]);
  });

  test("from the end delivers only events appended later", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A")]);
    const recorder = record(opened(client.subscribeToStream(name, { fromRevision: END })));
    await recorder.until((log) => log.some((entry) => entry.caughtUp));
    await client.appendToStream(name, [event("B")]);
    await recorder.until(countOf(1));
    assert.deepEqual(typesIn(recorder.events()), ["B"]);
  });

  test("a stream that does not exist yet is delivered once it is appended to", async () => {
    const name = streamName();
    const recorder = record(opened(client.subscribeToStream(name)));
    await recorder.until((log) => log.some((entry) => entry.caughtUp));
    await client.appendToStream(name, [event("A")]);
    await recorder.until(countOf(1));
    assert.deepEqual(typesIn(recorder.events()), ["A"]);
  });

  test("catching up on 2,000 events delivers each once and in order", async () => {
    const name = streamName();
    for (let batch = 0; batch < 4; batch += 1) {
      await client.appendToStream(name, Array.from({ length: 500 },
        (_, i) => event("Numbered", { i: batch * 500 + i, padding: "x".repeat(200) })));
    }
    const recorder = record(opened(client.subscribeToStream(name)));
    await recorder.until((log) => log.some((entry) => entry.caughtUp));
    assert.deepEqual(recorder.events().map(({ event: e }) => e.data.i),
      Array.from({ length: 2000 }, (_, i) => i));
  });

  test("several subscriptions of one client catch up side by side", async () => {
    const names = [streamName(), streamName(), streamName()];
    for (const name of names) {
      await client.appendToStream(name, Array.from({ length: 300 },
        (_, i) => event("Numbered", { i, padding: "y".repeat(500) })));
    }
    const recorders = names.map((name) => record(opened(client.subscribeToStream(name))));
    await Promise.all(recorders.map((recorder) =>
      recorder.until((log) => log.some((entry) => entry.caughtUp))));
    for (const recorder of recorders) assert.equal(recorder.events().length, 300);
  });

  test("a tombstoned stream ends the subscription with StreamDeletedError", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A")]);
    await client.tombstoneStream(name);
    const recorder = record(opened(client.subscribeToStream(name)));
    await assert.rejects(recorder.until(() => false), StreamDeletedError);
  });
});

describe("catch-up subscription to $all", () => {
  test("from a position delivers every later event of every stream", async () => {
    const first = streamName();
    const second = streamName();
    const { position } = await client.appendToStream(first, event("A"));
    await client.appendToStream(second, event("B"));
    await client.appendToStream(first, event("C"));
    const mine = new Set([first, second]);
    const recorder = record(opened(client.subscribeToAll({ fromPosition: position })));
    const delivered = () => recorder.events().filter(({ event: e }) => mine.has(e.streamId));
    await recorder.until(() => delivered().length >= 2);
    assert.deepEqual(delivered().map(({ event: e }) => [e.streamId, e.type]),
      [[second, "B"], [first, "C"]]);
  });

  test("from the end delivers new events live", async () => {
    const name = streamName();
    const recorder = record(opened(client.subscribeToAll({ fromPosition: END })));
    await recorder.until((log) => log.some((entry) => entry.caughtUp));
    await client.appendToStream(name, event("A"));
    await recorder.until(() => recorder.events().some(({ event: e }) => e.streamId === name));
  });

  test("an event type prefix filter delivers only events of matching types", async () => {
    const prefix = `T${Date.now()}`;
    const name = streamName();
    await client.appendToStream(name, [event(`${prefix}-one`), event("Other"),
      event(`${prefix}-two`)]);
    const recorder = record(opened(client.subscribeToAll({
      fromPosition: START, filter: eventTypeFilter({ prefixes: [prefix] }),
    })));
    await recorder.until(countOf(2));
    assert.deepEqual(typesIn(recorder.events()), [`${prefix}-one`, `${prefix}-two`]);
  });

  test("a stream name regex filter delivers only events of matching streams", async () => {
    const tag = `regex${Date.now()}`;
    const matching = `${tag}-account`;
    await client.appendToStream(`other-${tag}`, event("Skipped"));
    await client.appendToStream(matching, [event("A"), event("B")]);
    const recorder = record(opened(client.subscribeToAll({
      fromPosition: START, filter: streamNameFilter({ regex: `^${tag}-` }),
    })));
    await recorder.until(countOf(2));
    assert.deepEqual(recorder.events().map(({ event: e }) => [e.streamId, e.type]),
      [[matching, "A"], [matching, "B"]]);
  });

  test("a stream name prefix filter delivers only events of matching streams", async () => {
    const prefix = `prefix${Date.now()}-`;
    await client.appendToStream(`${prefix}x`, event("A"));
    await client.appendToStream(streamName(), event("Skipped"));
    await client.appendToStream(`${prefix}y`, event("B"));
    const recorder = record(opened(client.subscribeToAll({
      fromPosition: START, filter: streamNameFilter({ prefixes: [prefix] }),
    })));
    await recorder.until(countOf(2));
    assert.deepEqual(typesIn(recorder.events()), ["A", "B"]);
  });

  test("excluding system events leaves out $-typed events such as metadata", async () => {
    const name = streamName();
    await client.setStreamMetadata(name, { maxCount: 10 });
    await client.appendToStream(name, event("Visible"));
    const recorder = record(opened(client.subscribeToAll({
      fromPosition: START, filter: excludeSystemEvents(),
    })));
    await recorder.until(() => recorder.events().some(({ event: e }) => e.streamId === name));
    assert.ok(recorder.events().every(({ event: e }) => !e.type.startsWith("$")));
  });

  test("a filtered subscription reports checkpoints while it searches", async () => {
    const prefix = `checkpoint${Date.now()}`;
    for (let i = 0; i < 5; i += 1) {
      await client.appendToStream(streamName(), event("Unmatched"));
    }
    const checkpoints = [];
    const recorder = record(opened(client.subscribeToAll({
      fromPosition: START,
      filter: eventTypeFilter({
        prefixes: [prefix], checkpointInterval: 1, maxSearchWindow: 1,
        checkpointReached: (_subscription, position) => {
          checkpoints.push(position);
        },
      }),
    })));
    await recorder.until(() => checkpoints.length > 0);
    assert.equal(typeof checkpoints[0].commit, "bigint");
    assert.deepEqual(recorder.events(), []);
  });
});
