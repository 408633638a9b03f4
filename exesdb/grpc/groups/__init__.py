"""Persistent subscription groups (KurrentDB's competing consumers) on exesdb's persistent
subscriptions.

A group ``G`` on stream ``S`` (or on ``$all``) is:

* an exesdb persistent subscription named ``grpc:<S>::<G>``
  (:func:`~exesdb.grpc.groups.config.subscription_name`), of type ``by_stream`` on
  ``$<S>`` (or ``$all``), whose subscriber is the group's process; its stored position is
  the group's checkpoint;
* a :class:`~exesdb.grpc.groups.group.PersistentGroup` process (one per group) that
  receives the subscription's events in order, reads them into its buffer as KurrentDB
  does (:mod:`~exesdb.grpc.groups.buffer`), dispatches them to the connected consumers
  (the ``Read`` calls), tracks each event in flight with its retry count and message
  timeout, handles acks and nacks, parks events, and moves the checkpoint
  (``exesdb.gateway.ack_event``, cumulative) only up to the last event before which
  everything is acked, skipped, filtered out or parked
  (:class:`~exesdb.grpc.groups.ledger.Ledger`);
* its settings, kept durably with every other group's as the last event (type
  ``PersistentConfig1``, JSON) of the system stream ``$persistentSubscriptionConfig``;
  settings that do not read never make the manager remove a group or its checkpoint (see
  :class:`~exesdb.grpc.groups.manager.GroupManager`);
* its parked events: links (type ``$>``, data ``"<number>@<stream>"``) appended to
  ``$persistentsubscription-<S>::<G>-parked``; how far they were replayed is that
  stream's truncate-before (``{"$tb": n}`` in ``$$$persistentsubscription-<S>::<G>-parked``),
  as KurrentDB keeps it. A replayed parked event leaves the parked stream (the
  truncate-before passes it) only once it is acked, skipped or parked again, so a stop
  or a crash during a replay loses none: they are still parked, to be replayed again;
* its filter (``$all`` only): a regex matched in time linear in the subject (RE2, see
  :mod:`exesdb.grpc.patterns`), or prefixes.

Any consumer of a group may ack or nack any event in flight to the group, whichever
consumer it went to, as in KurrentDB; ids not in flight are ignored. Events to retry go
out before new ones. A consumer whose call ends, however it ends, leaves at once: its slot
is free and its events in flight go to the others.

Delivery is at least once: after a crash, what was not checkpointed is delivered again; on
an orderly stop a group checkpoints everything done first (even when it cannot park what
it should: that is logged, and delivered again).

The modules, each with one job (only the two process modules use the store's API,
:mod:`exesdb.gateway`):

* :mod:`~exesdb.grpc.groups.config`: a group's configuration (:class:`GroupConfig`,
  :class:`GroupSettings`, :class:`GroupFilter`), its JSON as stored, and the names a group
  has in the store;
* :mod:`~exesdb.grpc.groups.ledger`: the pure ack, retry and checkpoint bookkeeping;
* :mod:`~exesdb.grpc.groups.buffer`: the pure stream buffer in front of the ledger
  (KurrentDB's history and live buffers, its reads of ``read_batch_size``);
* :mod:`~exesdb.grpc.groups.messages`: the requests and replies of the processes, and what
  a group reports (:class:`GroupInfo`, :class:`ConsumerInfo`, :class:`Connection`);
* :mod:`~exesdb.grpc.groups.rpc_errors`: the protocol errors the groups answer with;
* :mod:`~exesdb.grpc.groups.group`: the process of one group;
* :mod:`~exesdb.grpc.groups.manager`: the group manager and the store's groups
  supervisor (:class:`PersistentGroups`);
* :mod:`~exesdb.grpc.groups.client`: what the gRPC service calls.

This package's ``__init__`` imports none of them, so that importing the values (config,
ledger, messages) never loads the processes: import each name from the module that
holds it.
"""
