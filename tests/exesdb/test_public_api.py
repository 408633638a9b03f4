"""The public names of exesdb and exesdb.storage are pinned: a change is deliberate."""

import exesdb
import exesdb.storage


def test_exesdb_public_names_are_pinned():
    assert sorted(exesdb.__all__) == [
        "ANY",
        "END",
        "EventRecord",
        "Events",
        "ExESDBError",
        "ExpectedVersion",
        "Filter",
        "InvalidArgument",
        "NO_STREAM",
        "NewEvent",
        "STREAM_EXISTS",
        "Snapshot",
        "StorageError",
        "StoreAlreadyStarted",
        "StoreInfo",
        "StoreLocked",
        "StoreNotFound",
        "StoreOptions",
        "StoreUnavailable",
        "StreamDeleted",
        "Subscription",
        "SubscriptionNotFound",
        "System",
        "WrongExpectedVersion",
        "gateway",
        "start_store",
        "stop_store",
    ]


def test_exesdb_gateway_public_names_are_pinned():
    assert sorted(exesdb.gateway.__all__) == [
        "ack_event", "append_events", "delete_snapshot", "delete_stream", "get_events",
        "get_streams", "get_subscriptions", "get_version", "list_snapshots", "list_stores",
        "pubsub", "read_all", "read_snapshot", "record_snapshot", "remove_subscription",
        "save_subscription", "stream_backward", "stream_forward", "subscribe",
    ]


def test_exesdb_storage_public_names_are_pinned():
    assert sorted(exesdb.storage.__all__) == [
        "Append",
        "Appended",
        "Backend",
        "DeleteCheckpoint",
        "DeleteSnapshot",
        "DeleteStream",
        "DeleteSubscription",
        "RecordSnapshot",
        "SQLiteBackend",
        "SaveCheckpoint",
        "SaveSubscription",
        "SubscriptionDefinition",
        "WriteOp",
        "Writer",
        "writer",
    ]


def test_every_public_name_exists():
    for module in (exesdb, exesdb.storage, exesdb.gateway):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_is_an_exesdb_error():
    for name in ("InvalidArgument", "StorageError", "StreamDeleted", "WrongExpectedVersion",
                 "StoreNotFound", "StoreAlreadyStarted", "StoreLocked", "StoreUnavailable",
                 "SubscriptionNotFound"):
        assert issubclass(getattr(exesdb, name), exesdb.ExESDBError)


def test_exesdb_grpc_public_names_are_pinned():
    import exesdb.grpc
    import exesdb.grpc.rpc
    import exesdb.grpc.server

    assert sorted(exesdb.grpc.__all__) == [
        "ADMINS", "GrpcGateway", "GrpcListenError", "GrpcSystem", "RpcError",
        "SERVER_VERSION", "StatusCode", "User", "Users", "address", "load_users", "may_use",
    ]
    assert sorted(exesdb.grpc.server.__all__) == [
        "ServerCall", "ServerConfig", "TlsConfigError", "TlsFiles", "serve",
    ]
    assert sorted(exesdb.grpc.rpc.__all__) == [
        "Call", "Handler", "Kind", "Method", "RpcError", "Service", "StatusCode", "User",
    ]


def test_importing_exesdb_grpc_leaves_protobufs_default_pool_alone():
    import kurrentdbclient.protos.v1.streams_pb2 as client_streams

    import exesdb.grpc.protos.streams_pb2 as own_streams

    assert own_streams.DESCRIPTOR.pool is not client_streams.DESCRIPTOR.pool
