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
        "SubscriptionLost",
        "SubscriptionNotFound",
        "System",
        "WrongExpectedVersion",
        "gateway",
        "start_store",
        "stop_store",
        "store_child_spec",
    ]


def test_exesdb_systems_public_names_are_pinned():
    import exesdb.systems

    assert sorted(exesdb.systems.__all__) == [
        "CoreSystem", "Frontend", "System", "check_startable", "root_cause", "start_system",
        "stop_store", "system_name",
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


def test_every_exception_exesdb_defines_is_in_its_errors_module_and_an_exesdb_error():
    import exesdb.errors
    import exesdb.grpc.listener
    import exesdb.grpc.server

    defined = [cls for cls in vars(exesdb.errors).values()
               if isinstance(cls, type) and issubclass(cls, BaseException)
               and cls.__module__ == "exesdb.errors"]
    assert sorted(c.__name__ for c in defined) == sorted(exesdb.errors.__all__)
    assert all(issubclass(cls, exesdb.ExESDBError) for cls in defined)
    assert exesdb.grpc.server.TlsConfigError is exesdb.errors.TlsConfigError
    assert exesdb.grpc.listener.GrpcListenError is exesdb.errors.GrpcListenError


def test_exesdb_grpc_public_names_are_pinned():
    import exesdb.grpc
    import exesdb.grpc.rpc
    import exesdb.grpc.server

    assert sorted(exesdb.grpc.__all__) == [
        "ADMINS", "GrpcGateway", "GrpcListenError", "GrpcSystem", "RpcError",
        "SERVER_VERSION", "StatusCode", "User", "Users", "address", "load_users", "may_use",
    ]
    assert sorted(exesdb.grpc.server.__all__) == [
        "LIMIT_FIELDS", "ServerCall", "ServerConfig", "TlsConfigError", "TlsFiles",
        "default_max_connections", "parse_limits", "serve",
    ]
    assert sorted(exesdb.grpc.rpc.__all__) == [
        "Call", "Handler", "Kind", "Method", "RpcError", "Service", "StatusCode", "User",
    ]


def test_importing_exesdb_grpc_leaves_protobufs_default_pool_alone():
    import kurrentdbclient.protos.v1.streams_pb2 as client_streams

    import exesdb.grpc.protos.streams_pb2 as own_streams

    assert own_streams.DESCRIPTOR.pool is not client_streams.DESCRIPTOR.pool
