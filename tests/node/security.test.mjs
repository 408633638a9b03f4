// TLS and credentials through the official Node.js client: a server with a certificate
// from a test CA (generated with trustme) and a users file, two stores ("s" and "other").

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  AccessDeniedError, NO_STREAM, START,
  persistentSubscriptionToStreamSettingsFromDefaults,
} from "@kurrent/kurrentdb-client";
import persistentGrpc from
  "@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/persistentsubscriptions_grpc_pb.js";
import streamsGrpc from
  "@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/streams_grpc_pb.js";

import {
  collect, event, makeCertificates, makeUsersFile, startServer, streamName,
} from "./harness.mjs";

const USERS = {
  admin: ["admin-pw", ["$admins"]],
  alice: ["alice-pw", ["s"]],
  bob: ["bob-pw", ["other"]],
};

let server;
let tls;
const clients = [];

before(async () => {
  tls = makeCertificates();
  const usersFile = makeUsersFile(USERS);
  server = await startServer({
    storeIds: ["s", "other"],
    args: ["--tls-cert", tls.certFile, "--tls-key", tls.keyFile, "--users-file", usersFile],
  });
});

after(async () => {
  for (const client of clients) await client.dispose();
  await server?.stop();
});

/** A TLS client of store `storeId` as `user` (none: no credentials), closed at the end. */
function as(user, { password = USERS[user]?.[0], storeId = "s" } = {}) {
  const client = server.client({ storeId, user, password, caFile: tls.caFile });
  clients.push(client);
  return client;
}

const types = (resolved) => resolved.map(({ event: e }) => e.type);

describe("TLS", () => {
  test("the server listens with TLS", () => {
    assert.equal(server.tls, true);
  });

  test("a client trusting the test CA appends and reads over TLS", async () => {
    const client = as("admin");
    const name = streamName();
    await client.appendToStream(name, [event("A"), event("B")], { streamState: NO_STREAM });
    assert.deepEqual(types(await collect(client.readStream(name))), ["A", "B"]);
  });

  test("a client that does not trust the test CA is refused the connection", async () => {
    const client = server.client({ user: "admin", password: "admin-pw", tls: true });
    clients.push(client);
    await assert.rejects(client.appendToStream(streamName(), event("A"), { deadline: 5_000 }),
      (error) => error.code === 14 && /certificate/.test(error.message)); // 14: UNAVAILABLE
  });

  test("a plain-text client gets no answer from the TLS listener", async () => {
    const client = server.client({ user: "admin", password: "admin-pw", tls: false });
    clients.push(client);
    await assert.rejects(client.appendToStream(streamName(), event("A"), { deadline: 5_000 }),
      (error) => error.code === 14); // UNAVAILABLE
  });
});

describe("server features", () => {
  test("are answered without credentials and list the persistent subscription features",
    async () => {
      const anonymous = as(undefined);
      const { supports } = await anonymous.capabilities;
      assert.equal(supports(streamsGrpc.StreamsService.batchAppend), true);
      for (const method of ["create", "update", "delete", "read", "getInfo", "replayParked",
        "list"]) {
        assert.equal(supports(persistentGrpc.PersistentSubscriptionsService[method], "all"), true,
          method);
        assert.equal(supports(persistentGrpc.PersistentSubscriptionsService[method], "stream"),
          true, method);
      }
    });
});

describe("credentials", () => {
  test("a member of the store's group appends and reads", async () => {
    const alice = as("alice");
    const name = streamName();
    await alice.appendToStream(name, event("A"));
    assert.deepEqual(types(await collect(alice.readStream(name))), ["A"]);
  });

  test("a user outside the store's group is denied an append with AccessDeniedError",
    async () => {
      await assert.rejects(as("bob").appendToStream(streamName(), event("A")),
        AccessDeniedError);
    });

  test("a user outside the store's group is denied a read with AccessDeniedError", async () => {
    const name = streamName();
    await as("admin").appendToStream(name, event("A"));
    await assert.rejects(collect(as("bob").readStream(name)), AccessDeniedError);
  });

  test("the same user may use the store whose group it is in", async () => {
    const bob = as("bob", { storeId: "other" });
    const name = streamName();
    await bob.appendToStream(name, event("A"));
    assert.deepEqual(types(await collect(bob.readStream(name))), ["A"]);
  });

  test("a wrong password is an AccessDeniedError", async () => {
    await assert.rejects(
      as("alice", { password: "wrong" }).appendToStream(streamName(), event("A")),
      AccessDeniedError);
  });

  test("no credentials at all is an AccessDeniedError", async () => {
    await assert.rejects(as(undefined).appendToStream(streamName(), event("A")),
      AccessDeniedError);
  });

  test("per-call credentials are used for that call", async () => {
    const anonymous = as(undefined);
    const credentials = { username: "alice", password: "alice-pw" };
    const name = streamName();
    await anonymous.appendToStream(name, event("A"), { credentials });
    assert.deepEqual(types(await collect(anonymous.readStream(name, { credentials }))), ["A"]);
  });

  test("a stream whose $acl reserves reads to $admins is denied to other users", async () => {
    const admin = as("admin");
    const name = streamName();
    await admin.appendToStream(name, event("Secret"));
    await admin.setStreamMetadata(name, { acl: { readRoles: ["$admins"] } });
    assert.deepEqual((await admin.getStreamMetadata(name)).metadata.acl,
      { readRoles: ["$admins"] });
    await assert.rejects(collect(as("alice").readStream(name)), AccessDeniedError);
    assert.deepEqual(types(await collect(admin.readStream(name))), ["Secret"]);
  });

  test("reading $all is for $admins", async () => {
    await assert.rejects(collect(as("alice").readAll({ maxCount: 1 })), AccessDeniedError);
    assert.equal((await collect(as("admin").readAll({ maxCount: 1 }))).length, 1);
  });

  test("creating a persistent subscription group is for $admins and $ops", async () => {
    const name = streamName();
    const settings = persistentSubscriptionToStreamSettingsFromDefaults({ startFrom: START });
    await assert.rejects(as("alice").createPersistentSubscriptionToStream(name, "g", settings),
      AccessDeniedError);
    await as("admin").createPersistentSubscriptionToStream(name, "g", settings);
  });
});
