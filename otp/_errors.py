"""The exceptions of ``otp``. Each one carries its subject as an attribute."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyStarted",
    "CallTimeout",
    "InitError",
    "NoProc",
    "NotInProcess",
    "OTPError",
    "ProcessExited",
    "ReceiveTimeout",
    "ServerExited",
]


class OTPError(Exception):
    """Base class of every error ``otp`` raises on purpose."""


class NoProc(OTPError, LookupError):
    """No process is alive under the pid or name given (``.name``).

    Raised by :func:`otp.gen_server.wait_response` or ``receive_response`` for a request
    of a collection, it also carries that request's ``.label`` and ``.reqids``, the
    collection without it (both None otherwise).
    """

    label: Any = None
    reqids: Any = None

    def __init__(self, name: Any) -> None:
        super().__init__(f"no process: {name!r}")
        self.name = name


class NotInProcess(OTPError, RuntimeError):
    """A function that acts on the current process was called outside any process."""


class ReceiveTimeout(OTPError, TimeoutError):
    """:func:`otp.receive` found no matching message within its timeout."""


class CallTimeout(OTPError, TimeoutError):
    """A call or stop was not answered within its timeout (``.server``, ``.timeout``).

    For :func:`otp.gen_server.wait_response` and ``receive_response``, ``.server`` is the
    server of the request, or the collection of requests waited on.
    """

    def __init__(self, server: Any, timeout: float | None) -> None:
        super().__init__(f"no answer from {server!r} within {timeout} s")
        self.server = server
        self.timeout = timeout


class ServerExited(OTPError):
    """The server exited (``.reason``) before it answered a call.

    Raised by :func:`otp.gen_server.wait_response` or ``receive_response`` for a request
    of a collection, it also carries that request's ``.label`` and ``.reqids``, the
    collection without it (both None otherwise).
    """

    label: Any = None
    reqids: Any = None

    def __init__(self, server: Any, reason: Any) -> None:
        super().__init__(f"{server!r} exited before replying: {reason!r}")
        self.server = server
        self.reason = reason


class AlreadyStarted(OTPError):
    """The name (``.name``) is held by another live process (``.pid``)."""

    def __init__(self, name: Any, pid: Any) -> None:
        super().__init__(f"{name!r} is already registered to {pid!r}")
        self.name = name
        self.pid = pid


class InitError(OTPError):
    """A gen_server's ``init`` failed; ``.reason`` says why: the exception it raised, the
    reason of the :class:`Stop` it returned, the ``reason`` of the
    :class:`ProcessExited` it raised (as Erlang's ``exit(Reason)`` in ``init`` gives
    ``{error, Reason}``), or :data:`otp.TIMEOUT` when it took longer than the start's
    ``timeout``."""

    def __init__(self, reason: Any) -> None:
        super().__init__(f"init failed: {reason!r}")
        self.reason = reason


class ProcessExited(OTPError):
    """A process ended with ``.reason``.

    Raised by :func:`otp.run` (and the node context manager) when the main process ends
    with a reason that is neither normal nor an exception. Raising it inside a process
    ends that process with ``.reason``, like Erlang's ``exit(Reason)``.
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(f"process exited: {reason!r}")
        self.reason = reason
