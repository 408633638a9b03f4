// Persistent subscriptions through the official Node.js client: groups on a stream and on
// $all, ack, nack (park, retry), replay of parked events, info, list, update, delete.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  PARK, RETRY, ROUND_ROBIN, SKIP, START, PersistentSubscriptionDoesNotExistError,
  PersistentSubscriptionExistsError, PersistentSubscriptionMaximumSubscribersReachedError,
  eventTypeFilter,
  persistentSubscriptionToAllSettingsFromDefaults,
  persistentSubscriptionToStreamSettingsFromDefaults,
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

const fromStart = (changes = {}) =>
  persistentSubscriptionToStreamSettingsFromDefaults({ startFrom: START, ...changes });

/** A group's subscription, closed after the file's tests, recording what it gets; each
 * event is handled by `handle(event, subscription)` (ack by default). */
function consume(subscription, handle = (e, s) => s.ack(e)) {
  subscriptions.push(subscription);
  return record(subscription, { onEvent: (e) => handle(e, subscription) });
}

const count = (n, keep = () => true) => (log) =>
  log.filter((entry) => entry.event && keep(entry.event)).length >= n;
const deliveries = (recorder) =>
  recorder.events().map(({ event: e, retryCount }) => [e.type, retryCount]);

/** Poll `check` (an async function returning a value) until `accept` holds for its value. */
async function eventually(check, accept, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let value;
  for (;;) {
    value = await check();
    if (accept(value)) return value;
    if (Date.now() > deadline) {
      assert.fail(`not within ${timeoutMs} ms; last: ${JSON.stringify(value, (_, v) =>
        typeof v === "bigint" ? `${v}` : v)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("persistent subscription to a stream", () => {
  test("delivers the stream's events to the group and acked events are not delivered again",
    async () => {
      const name = streamName();
      await client.appendToStream(name, [event("A"), event("B")]);
      await client.createPersistentSubscriptionToStream(name, "group", fromStart());
      const recorder = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"));
      await recorder.until(count(2));
      await client.appendToStream(name, event("C"));
      await recorder.until(count(3));
      assert.deepEqual(deliveries(recorder), [["A", 0], ["B", 0], ["C", 0]]);
      const info = await eventually(
        () => client.getPersistentSubscriptionToStreamInfo(name, "group"),
        (i) => i.stats.lastCheckpointedEventRevision === 2n
          || i.stats.totalInFlightMessages === 0);
      assert.equal(info.eventSource, name);
      assert.equal(info.groupName, "group");
      assert.equal(info.stats.totalInFlightMessages, 0);
    });

  test("a nack with retry delivers the event again with its retry count", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.createPersistentSubscriptionToStream(name, "group", fromStart());
    const recorder = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"),
      (e, s) => (e.retryCount === 0 ? s.nack(RETRY, "try again", e) : s.ack(e)));
    await recorder.until(count(2));
    assert.deepEqual(deliveries(recorder), [["A", 0], ["A", 1]]);
  });

  test("a nack with park parks the event, and replaying the parked events delivers it again",
    async () => {
      const name = streamName();
      await client.appendToStream(name, [event("A"), event("B")]);
      await client.createPersistentSubscriptionToStream(name, "group", fromStart());
      let parking = true;
      const recorder = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"),
        (e, s) => (parking && e.event.type === "A" ? s.nack(PARK, "poison", e) : s.ack(e)));
      await recorder.until(count(2));
      const parked = await eventually(
        () => client.getPersistentSubscriptionToStreamInfo(name, "group"),
        (info) => info.stats.parkedMessageCount === 1n);
      assert.equal(parked.stats.parkedMessageCount, 1n);
      parking = false;
      await client.replayParkedMessagesToStream(name, "group");
      await recorder.until(count(3));
      assert.deepEqual(recorder.events().map(({ event: e }) => e.type), ["A", "B", "A"]);
      await eventually(() => client.getPersistentSubscriptionToStreamInfo(name, "group"),
        (info) => info.stats.parkedMessageCount === 0n);
    });

  test("an event nacked with retry beyond the max retry count is parked", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.createPersistentSubscriptionToStream(name, "group",
      fromStart({ maxRetryCount: 1 }));
    const recorder = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"),
      (e, s) => s.nack(RETRY, "always failing", e));
    await recorder.until(count(2));
    await eventually(() => client.getPersistentSubscriptionToStreamInfo(name, "group"),
      (info) => info.stats.parkedMessageCount === 1n);
    assert.deepEqual(deliveries(recorder), [["A", 0], ["A", 1]]);
  });

  test("a nack with skip neither delivers the event again nor parks it", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")]);
    await client.createPersistentSubscriptionToStream(name, "group", fromStart());
    const recorder = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"),
      (e, s) => (e.event.type === "A" ? s.nack(SKIP, "not for us", e) : s.ack(e)));
    await recorder.until(count(2));
    await client.appendToStream(name, event("C"));
    await recorder.until(count(3));
    assert.deepEqual(deliveries(recorder), [["A", 0], ["B", 0], ["C", 0]]);
    const info = await client.getPersistentSubscriptionToStreamInfo(name, "group");
    assert.equal(info.stats.parkedMessageCount, 0n);
  });

  test("an event not acked within the message timeout is delivered again", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.createPersistentSubscriptionToStream(name, "group",
      fromStart({ messageTimeout: 500 }));
    const recorder = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"),
      (e, s) => (e.retryCount === 0 ? undefined : s.ack(e)));
    await recorder.until(count(2));
    assert.deepEqual(deliveries(recorder), [["A", 0], ["A", 1]]);
  });

  test("round robin shares the events between the group's consumers", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "group",
      fromStart({ consumerStrategyName: ROUND_ROBIN }));
    const first = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"));
    const second = consume(client.subscribeToPersistentSubscriptionToStream(name, "group"));
    await eventually(() => client.getPersistentSubscriptionToStreamInfo(name, "group"),
      (info) => info.connections.length === 2);
    await client.appendToStream(name, Array.from({ length: 10 }, (_, i) => event(`E${i}`)));
    const total = () => first.events().length + second.events().length;
    await eventually(async () => total(), (n) => n === 10);
    assert.ok(first.events().length > 0 && second.events().length > 0,
      `${first.events().length} and ${second.events().length}`);
  });

  test("a consumer beyond the max subscriber count is refused", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "group",
      fromStart({ maxSubscriberCount: 1 }));
    consume(client.subscribeToPersistentSubscriptionToStream(name, "group"));
    await eventually(() => client.getPersistentSubscriptionToStreamInfo(name, "group"),
      (info) => info.connections.length === 1);
    const refused = record(client.subscribeToPersistentSubscriptionToStream(name, "group"));
    await assert.rejects(refused.until(() => false),
      PersistentSubscriptionMaximumSubscribersReachedError);
  });

  test("creating a group twice is a PersistentSubscriptionExistsError", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "group", fromStart());
    await assert.rejects(client.createPersistentSubscriptionToStream(name, "group", fromStart()),
      PersistentSubscriptionExistsError);
  });

  test("a deleted group is gone: subscribing to it is PersistentSubscriptionDoesNotExistError",
    async () => {
      const name = streamName();
      await client.createPersistentSubscriptionToStream(name, "group", fromStart());
      await client.deletePersistentSubscriptionToStream(name, "group");
      await assert.rejects(client.getPersistentSubscriptionToStreamInfo(name, "group"),
        PersistentSubscriptionDoesNotExistError);
      const recorder = record(client.subscribeToPersistentSubscriptionToStream(name, "group"));
      await assert.rejects(recorder.until(() => false), PersistentSubscriptionDoesNotExistError);
    });

  test("an update changes the group's settings", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "group", fromStart());
    await client.updatePersistentSubscriptionToStream(name, "group",
      fromStart({ maxRetryCount: 3, messageTimeout: 5_000 }));
    const { settings } = await client.getPersistentSubscriptionToStreamInfo(name, "group");
    assert.equal(settings.maxRetryCount, 3);
    assert.equal(settings.messageTimeout, 5_000);
  });

  test("every group of the store is listed, $all's included", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "listed", fromStart());
    await client.createPersistentSubscriptionToAll("listed-all",
      persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }));
    const groups = await client.listAllPersistentSubscriptions();
    const sources = groups.map((info) => `${info.eventSource}::${info.groupName}`);
    assert.ok(sources.includes(`${name}::listed`), sources);
    assert.ok(sources.includes("$all::listed-all"), sources);
  });

  test("restarting the subsystem keeps the groups", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "kept", fromStart());
    await client.restartPersistentSubscriptionSubsystem();
    const info = await eventually(
      () => client.getPersistentSubscriptionToStreamInfo(name, "kept").catch((e) => e),
      (result) => !(result instanceof Error));
    assert.equal(info.groupName, "kept");
  });

  test("the groups of a stream are listed", async () => {
    const name = streamName();
    await client.createPersistentSubscriptionToStream(name, "first", fromStart());
    await client.createPersistentSubscriptionToStream(name, "second", fromStart());
    const groups = await client.listPersistentSubscriptionsToStream(name);
    assert.deepEqual(groups.map((info) => info.groupName).sort(), ["first", "second"]);
  });
});

describe("persistent subscription to $all", () => {
  test("a filtered group on $all delivers the matching events and acks them", async () => {
    const type = `AllGroup${Date.now()}`;
    const name = streamName();
    await client.appendToStream(name, [event(type), event("Other"), event(type)]);
    await client.createPersistentSubscriptionToAll("all-acked",
      persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }),
      { filter: eventTypeFilter({ prefixes: [type] }) });
    const recorder = consume(client.subscribeToPersistentSubscriptionToAll("all-acked"));
    await recorder.until(count(2));
    assert.deepEqual(recorder.events().map(({ event: e }) => [e.streamId, e.type]),
      [[name, type], [name, type]]);
    const info = await eventually(() => client.getPersistentSubscriptionToAllInfo("all-acked"),
      (i) => i.stats.totalInFlightMessages === 0);
    assert.equal(info.eventSource, "$all");
  });

  test("a nack with park on $all parks the event, and replaying it delivers it again",
    async () => {
      const type = `AllParked${Date.now()}`;
      await client.appendToStream(streamName(), event(type));
      await client.createPersistentSubscriptionToAll("all-parked",
        persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }),
        { filter: eventTypeFilter({ prefixes: [type] }) });
      let parking = true;
      const recorder = consume(client.subscribeToPersistentSubscriptionToAll("all-parked"),
        (e, s) => (parking ? s.nack(PARK, "poison", e) : s.ack(e)));
      await recorder.until(count(1));
      await eventually(() => client.getPersistentSubscriptionToAllInfo("all-parked"),
        (info) => info.stats.parkedMessageCount === 1n);
      parking = false;
      await client.replayParkedMessagesToAll("all-parked");
      await recorder.until(count(2));
      assert.deepEqual(recorder.events().map(({ event: e }) => e.type), [type, type]);
    });

  test("a nack with retry on $all delivers the event again", async () => {
    const type = `AllRetried${Date.now()}`;
    await client.appendToStream(streamName(), event(type));
    await client.createPersistentSubscriptionToAll("all-retried",
      persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }),
      { filter: eventTypeFilter({ prefixes: [type] }) });
    const recorder = consume(client.subscribeToPersistentSubscriptionToAll("all-retried"),
      (e, s) => (e.retryCount === 0 ? s.nack(RETRY, "again", e) : s.ack(e)));
    await recorder.until(count(2));
    assert.deepEqual(deliveries(recorder), [[type, 0], [type, 1]]);
  });

  test("deleting a group on $all makes its info PersistentSubscriptionDoesNotExistError",
    async () => {
      await client.createPersistentSubscriptionToAll("all-deleted",
        persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }));
      await client.deletePersistentSubscriptionToAll("all-deleted");
      await assert.rejects(client.getPersistentSubscriptionToAllInfo("all-deleted"),
        PersistentSubscriptionDoesNotExistError);
    });
});
