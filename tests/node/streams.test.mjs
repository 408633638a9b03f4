// Streams through the official Node.js client: appends with every expected state, reads of
// a stream and of $all both ways, delete and tombstone, stream metadata.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ANY, BACKWARDS, END, FORWARDS, NO_STREAM, START, STREAM_EXISTS,
  StreamDeletedError, StreamNotFoundError, WrongExpectedVersionError, binaryEvent, jsonEvent,
} from "@kurrent/kurrentdb-client";

import { collect, event, startServer, streamName } from "./harness.mjs";

let server;
let client;

before(async () => {
  server = await startServer();
  client = server.client();
});

after(async () => {
  await client?.dispose();
  await server?.stop();
});

const types = (resolved) => resolved.map(({ event: e }) => e.type);

describe("append", () => {
  test("any appends to a new stream and to an existing one", async () => {
    const name = streamName();
    const first = await client.appendToStream(name, event("A"), { streamState: ANY });
    const second = await client.appendToStream(name, event("B"), { streamState: ANY });
    assert.equal(first.success, true);
    assert.equal(first.nextExpectedRevision, 0n);
    assert.equal(second.nextExpectedRevision, 1n);
    assert.ok(second.position.commit > first.position.commit);
  });

  test("no_stream appends to a stream that does not exist", async () => {
    const name = streamName();
    const result = await client.appendToStream(name, [event("A"), event("B")],
      { streamState: NO_STREAM });
    assert.equal(result.nextExpectedRevision, 1n);
  });

  test("no_stream on an existing stream is a wrong expected version with the current revision",
    async () => {
      const name = streamName();
      await client.appendToStream(name, event("A"));
      await assert.rejects(
        client.appendToStream(name, event("B"), { streamState: NO_STREAM }),
        (error) => {
          assert.ok(error instanceof WrongExpectedVersionError, error);
          assert.equal(error.streamName, name);
          assert.equal(error.expectedState, NO_STREAM);
          assert.equal(error.actualState, 0n);
          return true;
        });
    });

  test("stream_exists appends to an existing stream", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    const result = await client.appendToStream(name, event("B"), { streamState: STREAM_EXISTS });
    assert.equal(result.nextExpectedRevision, 1n);
  });

  test("stream_exists on a missing stream is a wrong expected version with no stream",
    async () => {
      const name = streamName();
      await assert.rejects(
        client.appendToStream(name, event("A"), { streamState: STREAM_EXISTS }),
        (error) => {
          assert.ok(error instanceof WrongExpectedVersionError, error);
          assert.equal(error.expectedState, STREAM_EXISTS);
          assert.equal(error.actualState, NO_STREAM);
          return true;
        });
    });

  test("an exact revision appends when it is the stream's last revision", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")]);
    const result = await client.appendToStream(name, event("C"), { streamState: 1n });
    assert.equal(result.nextExpectedRevision, 2n);
  });

  test("a wrong exact revision is refused with the expected and the current revision",
    async () => {
      const name = streamName();
      await client.appendToStream(name, [event("A"), event("B")]);
      await assert.rejects(client.appendToStream(name, event("C"), { streamState: 5n }),
        (error) => {
          assert.ok(error instanceof WrongExpectedVersionError, error);
          assert.equal(error.expectedState, 5n);
          assert.equal(error.actualState, 1n);
          return true;
        });
      assert.deepEqual(types(await collect(client.readStream(name))), ["A", "B"]);
    });

  test("the unary Append call (used with per-call credentials) checks revisions too",
    async () => {
      const name = streamName();
      const credentials = { username: "nobody", password: "unchecked" };
      const result = await client.appendToStream(name, [event("A"), event("B")],
        { streamState: NO_STREAM, credentials });
      assert.equal(result.nextExpectedRevision, 1n);
      await assert.rejects(
        client.appendToStream(name, event("C"), { streamState: 0n, credentials }),
        (error) => {
          assert.ok(error instanceof WrongExpectedVersionError, error);
          assert.equal(error.actualState, 1n);
          return true;
        });
    });

  test("an event appended twice with the same id is stored once", async () => {
    const name = streamName();
    const once = event("A");
    await client.appendToStream(name, once, { streamState: NO_STREAM });
    await client.appendToStream(name, once, { streamState: NO_STREAM });
    assert.deepEqual(types(await collect(client.readStream(name))), ["A"]);
  });
});

describe("events as stored", () => {
  test("a JSON event keeps its id, type, data and metadata", async () => {
    const name = streamName();
    const sent = jsonEvent({ type: "Placed", data: { sku: "A-1", n: 2 },
      metadata: { correlation: "c-1" } });
    await client.appendToStream(name, sent);
    const [{ event: got }] = await collect(client.readStream(name));
    assert.equal(got.id, sent.id);
    assert.equal(got.type, "Placed");
    assert.equal(got.isJson, true);
    assert.deepEqual(got.data, { sku: "A-1", n: 2 });
    assert.deepEqual(got.metadata, { correlation: "c-1" });
    assert.ok(got.created instanceof Date);
    assert.ok(Math.abs(got.created.getTime() - Date.now()) < 60_000);
  });

  test("a binary event keeps its bytes", async () => {
    const name = streamName();
    const bytes = Uint8Array.from([0, 1, 2, 254, 255]);
    await client.appendToStream(name, binaryEvent({ type: "Blob", data: bytes }));
    const [{ event: got }] = await collect(client.readStream(name));
    assert.equal(got.isJson, false);
    assert.deepEqual(Uint8Array.from(got.data), bytes);
  });

  test("a thousand events appended at once read back in order", async () => {
    const name = streamName();
    const events = Array.from({ length: 1000 }, (_, i) => event("Numbered", { i }));
    const result = await client.appendToStream(name, events, { streamState: NO_STREAM });
    assert.equal(result.nextExpectedRevision, 999n);
    const read = await collect(client.readStream(name));
    assert.deepEqual(read.map(({ event: e }) => e.data.i), events.map((_, i) => i));
  });

  test("a link event read with resolveLinkTos gives the event it points to and the link",
    async () => {
      const target = streamName();
      const links = streamName("links");
      await client.appendToStream(target, [event("A"), event("B")]);
      await client.appendToStream(links, binaryEvent({ type: "$>",
        data: Buffer.from(`1@${target}`) }));
      const [resolved] = await collect(client.readStream(links, { resolveLinkTos: true }));
      assert.equal(resolved.event.streamId, target);
      assert.equal(resolved.event.type, "B");
      assert.equal(resolved.link.streamId, links);
      assert.equal(resolved.link.type, "$>");
      const [unresolved] = await collect(client.readStream(links));
      assert.equal(unresolved.event.type, "$>");
      assert.equal(unresolved.link, undefined);
    });
});

describe("read a stream", () => {
  test("forwards from the start gives every event in order with its data", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A", { n: 1 }), event("B", { n: 2 })]);
    const events = await collect(client.readStream(name, { direction: FORWARDS,
      fromRevision: START }));
    assert.deepEqual(types(events), ["A", "B"]);
    assert.deepEqual(events.map(({ event: e }) => e.revision), [0n, 1n]);
    assert.deepEqual(events.map(({ event: e }) => e.data), [{ n: 1 }, { n: 2 }]);
    assert.equal(events[0].event.streamId, name);
    assert.equal(events[0].event.isJson, true);
  });

  test("backwards from the end gives the events newest first", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B"), event("C")]);
    const events = await collect(client.readStream(name, { direction: BACKWARDS,
      fromRevision: END, maxCount: 2 }));
    assert.deepEqual(types(events), ["C", "B"]);
  });

  test("forwards from a revision with a max count", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B"), event("C")]);
    const events = await collect(client.readStream(name, { fromRevision: 1n, maxCount: 1 }));
    assert.deepEqual(types(events), ["B"]);
  });

  test("a missing stream is a StreamNotFoundError", async () => {
    const name = streamName();
    await assert.rejects(collect(client.readStream(name)), StreamNotFoundError);
  });
});

describe("read $all", () => {
  test("forwards gives appended events in commit order", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")]);
    const all = await collect(client.readAll({ direction: FORWARDS, fromPosition: START }));
    const mine = all.filter(({ event: e }) => e?.streamId === name);
    assert.deepEqual(types(mine), ["A", "B"]);
    assert.ok(mine[0].event.position.commit < mine[1].event.position.commit);
  });

  test("backwards from the end starts with the last appended event", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")]);
    const last = await collect(client.readAll({ direction: BACKWARDS, fromPosition: END,
      maxCount: 2 }));
    assert.deepEqual(last.map(({ event: e }) => [e.streamId, e.type]),
      [[name, "B"], [name, "A"]]);
  });

  test("forwards from a position starts at that event", async () => {
    const name = streamName();
    const { position } = await client.appendToStream(name, [event("A")]);
    await client.appendToStream(name, [event("B")]);
    const events = await collect(client.readAll({ fromPosition: position, maxCount: 2 }));
    assert.deepEqual(events.map(({ event: e }) => [e.streamId, e.type]),
      [[name, "A"], [name, "B"]]);
  });
});

describe("delete and tombstone", () => {
  test("a deleted stream reads as not found", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.deleteStream(name);
    await assert.rejects(collect(client.readStream(name)), StreamNotFoundError);
  });

  test("a deleted stream can be appended to again and keeps its revisions", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")]);
    await client.deleteStream(name, { expectedRevision: 1n });
    const result = await client.appendToStream(name, event("C"), { streamState: 1n });
    assert.equal(result.nextExpectedRevision, 2n);
    const events = await collect(client.readStream(name));
    assert.deepEqual(events.map(({ event: e }) => [e.type, e.revision]), [["C", 2n]]);
  });

  test("deleting a stream that never existed is a wrong expected version with no stream",
    async () => {
      const name = streamName();
      await assert.rejects(client.deleteStream(name), (error) => {
        assert.ok(error instanceof WrongExpectedVersionError, error);
        assert.equal(error.streamName, name);
        // from KurrentDB's trailers, as numbers: expected any (-2), actual no stream (-1)
        assert.equal(error.expectedState, -2n);
        assert.equal(error.actualState, -1n);
        return true;
      });
    });

  test("deleting with a wrong expected revision is a wrong expected version", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await assert.rejects(client.deleteStream(name, { expectedRevision: 3n }),
      WrongExpectedVersionError);
  });

  test("a tombstoned stream reads as StreamDeletedError", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.tombstoneStream(name);
    await assert.rejects(collect(client.readStream(name)), StreamDeletedError);
  });

  test("appending to a tombstoned stream is a StreamDeletedError", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.tombstoneStream(name);
    await assert.rejects(client.appendToStream(name, event("B")), (error) => {
      assert.ok(error instanceof StreamDeletedError, error);
      assert.equal(error.streamName, name);
      return true;
    });
  });

  test("deleting a tombstoned stream is a StreamDeletedError", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    await client.tombstoneStream(name);
    await assert.rejects(client.deleteStream(name), StreamDeletedError);
    await assert.rejects(client.tombstoneStream(name), StreamDeletedError);
  });
});

describe("stream metadata", () => {
  test("metadata set is read back, custom properties included", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    const { position } = await client.setStreamMetadata(name,
      { maxCount: 5, custom: "value" });
    const { streamName: metaFor, metadata, metastreamRevision } =
      await client.getStreamMetadata(name);
    assert.equal(metaFor, name);
    assert.equal(metadata.maxCount, 5);
    assert.equal(metadata.custom, "value");
    // the client reports the metadata event's commit position as metastreamRevision
    assert.equal(metastreamRevision, position.commit);
  });

  test("a stream without metadata reads no metadata", async () => {
    const name = streamName();
    await client.appendToStream(name, event("A"));
    assert.deepEqual(await client.getStreamMetadata(name), { streamName: name });
  });

  test("$maxCount set through metadata limits what a read returns", async () => {
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B"), event("C")]);
    await client.setStreamMetadata(name, { maxCount: 2 });
    assert.deepEqual(types(await collect(client.readStream(name))), ["B", "C"]);
  });

  test("setting metadata with a wrong expected revision is a wrong expected version",
    async () => {
      const name = streamName();
      await client.setStreamMetadata(name, { maxCount: 1 });
      await assert.rejects(
        client.setStreamMetadata(name, { maxCount: 2 }, { streamState: 7n }),
        WrongExpectedVersionError);
      await client.setStreamMetadata(name, { maxCount: 2 }, { streamState: 0n });
      assert.equal((await client.getStreamMetadata(name)).metadata.maxCount, 2);
    });
});
