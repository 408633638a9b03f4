"""The errors the persistent subscription groups answer with: each an
:class:`exesdb.grpc.rpc.RpcError` with the status, message and trailers KurrentDB's server
sends, so that its clients raise their usual exceptions."""

from __future__ import annotations

from ..rpc import RpcError, StatusCode

__all__ = ["dropped", "exists", "failed", "invalid", "max_subscribers", "not_found",
           "unavailable"]


def invalid(message: str) -> RpcError:
    """``INVALID_ARGUMENT``: ``message`` names the field that is wrong."""
    return RpcError(StatusCode.INVALID_ARGUMENT, message)


def failed(stream: str, group: str, reason: str) -> RpcError:
    """``INTERNAL``: KurrentDB refused to create or update group ``group`` on ``stream``
    (its settings or start position), ``reason`` in KurrentDB's words; the clients raise
    their persistent subscription failed error (the Python client's InternalError)."""
    return RpcError(StatusCode.INTERNAL,
                    f"Subscription group {group} on stream {stream} failed: '{reason}'",
                    {"exception": "persistent-subscription-failed", "stream-name": stream,
                     "group-name": group, "reason": reason})


def not_found(stream: str, group: str) -> RpcError:
    """``NOT_FOUND``: there is no group ``group`` on ``stream``."""
    return RpcError(StatusCode.NOT_FOUND,
                    f"Subscription group {group} on stream {stream} does not exist.",
                    {"exception": "persistent-subscription-does-not-exist",
                     "stream-name": stream, "group-name": group})


def exists(stream: str, group: str) -> RpcError:
    """``ALREADY_EXISTS``: a group ``group`` on ``stream`` exists already."""
    return RpcError(StatusCode.ALREADY_EXISTS,
                    f"Subscription group {group} on stream {stream} exists.",
                    {"exception": "persistent-subscription-exists",
                     "stream-name": stream, "group-name": group})


def max_subscribers(stream: str, group: str) -> RpcError:
    """``FAILED_PRECONDITION``: the group has its maximum of consumers."""
    return RpcError(StatusCode.FAILED_PRECONDITION,
                    f"Maximum subscriptions reached for subscription group {group} on stream "
                    f"{stream}.", {"exception": "maximum-subscribers-reached",
                                   "stream-name": stream, "group-name": group})


def dropped(stream: str, group: str) -> RpcError:
    """``CANCELLED``: the group dropped the consumer (it stopped, or no longer knows the
    consumer that asks), with KurrentDB's ``persistent-subscription-dropped`` trailers."""
    return RpcError(StatusCode.CANCELLED,
                    f"Subscription group {group} on stream {stream} was dropped.",
                    {"exception": "persistent-subscription-dropped",
                     "stream-name": stream, "group-name": group})


def unavailable(detail: str) -> RpcError:
    """``UNAVAILABLE`` "Server Is Not Ready", with ``detail``."""
    return RpcError(StatusCode.UNAVAILABLE, f"Server Is Not Ready: {detail}")
