"""gen_server: a process that serves calls, casts and messages through callbacks.

Client API first (:func:`start_link`, :func:`start`, :func:`call`, :func:`cast`,
:func:`reply`, :func:`stop`, and the asynchronous requests :func:`send_request`,
:func:`wait_response`, :func:`receive_response`, :func:`check_response` with their
collections), then the callbacks a server implements by subclassing :class:`GenServer`,
then the values callbacks return.

Guarantees:

* :func:`start_link` and :func:`start` return once ``init`` has returned. A taken name
  raises :class:`otp.AlreadyStarted`; an ``init`` that raises, raises
  :class:`otp.ProcessExited` or returns :class:`Stop` raises :class:`otp.InitError` after
  the name is free, without ``terminate`` and without an exit signal to the caller;
  ``init`` returning :class:`Ignore` makes them return None.
* :func:`call` waits at most ``timeout`` seconds (5 by default). It raises
  :class:`otp.NoProc` when no server is there, :class:`otp.ServerExited` when the server
  ends before replying and :class:`otp.CallTimeout` when time runs out. A reply that
  arrives after the caller gave up is dropped: it never reaches a later receive.
* :func:`send_request` sends a call without waiting; its reply (or the server's exit)
  arrives in the caller's mailbox, where :func:`wait_response`, :func:`receive_response`
  and :func:`check_response` find it. A request abandoned by :func:`receive_response`'s
  timeout never reaches the mailbox.
* :func:`cast` never blocks and never fails.
* Every timeout is a number of seconds ``>= 0``, or None or ``"infinity"`` for no limit.
  Any other value raises ``TypeError`` or ``ValueError`` before anything is sent.
* ``terminate`` runs when a callback returns :class:`Stop` or raises, when :func:`stop` is
  called, and when the parent sends an exit signal while the server traps exits. It does
  not run after a kill, nor after an exit signal the server does not trap.
* Every server answers the system messages of :mod:`otp.sys` (state, status, suspend,
  resume, trace) in its loop, between two callbacks and without calling any.

The return protocol: ``init``, ``handle_cast``, ``handle_info`` and ``handle_continue``
return None to carry on; ``handle_call`` returns the reply. Any of them may instead return
:class:`NoReply` (with ``continue_`` and/or an idle ``timeout``), ``handle_call`` may
return :class:`Reply` to reply with those options, every callback may return
:class:`Stop`, and ``init`` may also return :class:`Continue` or :class:`Ignore`. An idle
timeout delivers :data:`otp.TIMEOUT` to ``handle_info`` when no message arrives in time.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, ClassVar, Final, Literal, TypeAlias, overload

import attrs
import outcome
import trio
from trio.lowlevel import wait_task_rescheduled

from ._child_spec import ChildSpec
from ._errors import (
    CallTimeout,
    InitError,
    NoProc,
    ProcessExited,
    ReceiveTimeout,
    ServerExited,
)
from ._messages import Exit
from ._names import Name, lookup, register_name, resolve
from ._node import await_exit
from ._primitives import receive
from ._process import (
    RUNNING,
    Pid,
    _Expired,
    _Process,
    _Waiter,
    current,
    current_or_none,
    spawn_process,
)
from ._terms import NORMAL, TIMEOUT, Timeout, check_timeout, same_reason

__all__ = [
    "Continue",
    "From",
    "GenServer",
    "Ignore",
    "NoReply",
    "Reply",
    "ReqId",
    "ReqIdCollection",
    "Stop",
    "call",
    "cast",
    "check_response",
    "forward",
    "receive_response",
    "reply",
    "reqids_add",
    "reqids_new",
    "reqids_size",
    "reqids_to_list",
    "send_request",
    "start",
    "start_link",
    "stop",
    "wait_response",
]

log: Final = logging.getLogger("otp.gen_server")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# -- return values -------------------------------------------------------------------------


def _idle_timeout(timeout: Timeout) -> float | None:
    """The ``timeout`` of :class:`NoReply` and :class:`Reply`, checked: seconds or None."""
    return check_timeout(timeout, "timeout")


@attrs.frozen
class NoReply:
    """Carry on without replying now; optionally run ``handle_continue(continue_)`` first,
    or deliver :data:`otp.TIMEOUT` after ``timeout`` idle seconds.

    ``timeout`` is checked when the value is built: ``"infinity"`` is stored as None (no
    idle timeout), and anything but seconds ``>= 0`` raises ``TypeError``/``ValueError``
    in the callback that built it, which then crashes the server."""

    continue_: Any = UNSET
    timeout: float | None = attrs.field(default=None, converter=_idle_timeout)


@attrs.frozen
class Reply:
    """Reply ``value`` from ``handle_call``, with the options of :class:`NoReply`."""

    value: Any
    continue_: Any = UNSET
    timeout: float | None = attrs.field(default=None, converter=_idle_timeout)


@attrs.frozen
class Stop:
    """Stop the server with ``reason`` after ``terminate``; from ``handle_call``, also reply
    ``reply`` if given, once ``terminate`` has run (even if it raised), as OTP does. From
    ``init`` it makes the start fail with ``InitError``.

    ``Stop("normal")`` and ``Stop("shutdown")`` are normal exits, as ``Stop(otp.NORMAL)``
    and ``Stop(otp.SHUTDOWN)`` are: not logged, and links and monitors see the very
    reason given."""

    reason: Any
    reply: Any = UNSET


@attrs.frozen
class Continue:
    """From ``init``: run ``handle_continue(arg)`` before the first message."""

    arg: Any


@attrs.frozen
class Ignore:
    """From ``init``: do not start; ``start``/``start_link`` return None."""


_DIRECTIVES: Final = frozenset({NoReply, Reply, Stop, Continue, Ignore})


class From(_Waiter):
    """Who a call came from: pass it to :func:`reply` to answer, from any process.

    A request sent with :func:`send_request` has a From too; answering it puts the reply
    in the requester's mailbox instead of waking a waiting caller.
    """

    __slots__ = ("holder", "server")
    server: Any
    holder: _Process  # the server the call is with: the one whose exit fails it

    def target_exited(self, pid: Pid, reason: Any) -> None:
        self.resolve(outcome.Error(ServerExited(self.server, reason)))

    def __repr__(self) -> str:
        return f"<From call to {self.server!r}>"


class _RequestFrom(From):
    """The From of a :func:`send_request`: the answer goes to the requester's mailbox as a
    :class:`_Response`, once. ``task`` is not None while the request is outstanding."""

    __slots__ = ("caller", "req_id")
    caller: _Process
    req_id: ReqId

    def resolve(self, result: outcome.Outcome[Any]) -> bool:
        if self.task is None:  # answered already, or abandoned by receive_response
            return False
        self.task = None
        monitors = self.holder.monitors  # no longer watching the server
        if monitors is not None:
            monitors.pop(self, None)
        answer: tuple[str, Any]
        if isinstance(result, outcome.Value):
            answer = ("reply", result.value)
        elif isinstance(result, outcome.Error):
            answer = ("error", result.error)
        else:  # pragma: no cover - an Outcome is one or the other
            raise TypeError(result)
        self.caller.deliver(_Response(self.req_id, answer))
        return True


class _StartWaiter(_Waiter):
    """The starter's slot. A successful ``init`` answers it with the pid; an ``init`` that
    ignores or fails leaves it to the process's exit steps (:meth:`_Process.finish`), which
    wake it only after the name is released, so the name is free when the start returns."""

    __slots__ = ("ignored",)

    def __init__(self) -> None:
        super().__init__()
        self.ignored = False

    def target_exited(self, pid: Pid, reason: Any) -> None:
        self.resolve(outcome.Value(None) if self.ignored else outcome.Error(InitError(reason)))


class _Call:
    __slots__ = ("from_", "request")

    def __init__(self, from_: From, request: Any) -> None:
        self.from_ = from_
        self.request = request


class _Cast:
    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg


class _SystemStop:
    __slots__ = ("reason", "waiter")

    def __init__(self, reason: Any, waiter: _Waiter) -> None:
        self.reason = reason
        self.waiter = waiter


class _System:
    """A system message (OTP's ``{system, From, Msg}``): a request of :mod:`otp.sys`. The
    server loop serves it between callbacks, without calling any, also while suspended;
    the answer goes to ``from_``."""

    __slots__ = ("from_", "request")

    def __init__(self, from_: From, request: SystemRequest) -> None:
        self.from_ = from_
        self.request = request


@attrs.frozen
class _GetState:
    """Answered with the server's state (see :func:`_state_of`)."""


@attrs.frozen
class _ReplaceState:
    """Apply ``fn(state)`` as the new state; answered with it (or fn's exception)."""

    fn: Callable[[dict[str, Any]], Any]


@attrs.frozen
class _GetStatus:
    """Answered with a :class:`_StatusReply`."""


@attrs.frozen
class _Suspend:
    """Serve nothing but system messages (and a stop, or the parent's exit) until
    :class:`_Resume`."""


@attrs.frozen
class _Resume:
    """End a suspension (nothing to do when the server runs)."""


@attrs.frozen
class _Trace:
    """Log every message the server takes and every reply it sends, or stop doing so."""

    flag: bool


SystemRequest: TypeAlias = _GetState | _ReplaceState | _GetStatus | _Suspend | _Resume | _Trace
"""What a :class:`_System` message asks for."""


@attrs.frozen
class _StatusReply:
    """The answer to :class:`_GetStatus`, read in the server between two callbacks."""

    status: Literal["running", "suspended"]
    trace: bool
    state: dict[str, Any]
    behaviour: type


class _ParentExit(ProcessExited):
    """Ends a server because its parent did: not the server's own crash, so not reported."""

    report = False


# -- the callbacks -------------------------------------------------------------------------


class GenServer:
    """Base class of a server. The class is instantiated with no arguments inside the new
    process; keep the state on ``self``. Override the callbacks you need (all async)."""

    child_shutdown: ClassVar[float | str] = 5.0
    """The ``shutdown`` that :meth:`child_spec` gives by default."""

    _otp_behaviour: type | None = None
    """The class introspection reports for this server (:func:`otp.process_info`'s
    ``behaviour``), when not its own class: a supervisor's :class:`otp.Supervisor`
    subclass."""

    async def init(self, *args: Any) -> Any:
        """Set up the state from the arguments given to ``start``/``start_link``."""
        return None

    async def handle_call(self, request: Any, from_: From) -> Any:
        """Answer a :func:`call`: return the reply (or a directive). Default: crash."""
        raise RuntimeError(f"{type(self).__qualname__} got call {request!r} but has no handle_call")

    async def handle_cast(self, msg: Any) -> Any:
        """Handle a :func:`cast`. Default: crash."""
        raise RuntimeError(f"{type(self).__qualname__} got cast {msg!r} but has no handle_cast")

    async def handle_info(self, msg: Any) -> Any:
        """Handle any other message (and :data:`otp.TIMEOUT`). Default: log and ignore."""
        log.warning("%s %r received an unexpected message: %r", type(self).__qualname__,
                    current().pid, msg)
        return None

    async def handle_continue(self, arg: Any) -> Any:
        """Continue work asked for by a ``continue_``. Default: crash."""
        raise RuntimeError(
            f"{type(self).__qualname__} asked to continue with {arg!r} but has no handle_continue"
        )

    async def terminate(self, reason: Any) -> None:
        """Clean up before the server exits with ``reason`` (see the module docstring)."""
        return None

    def _process_context(self) -> AbstractAsyncContextManager[Any]:
        """What the server's whole life runs inside (supervisors open their nursery here)."""
        return nullcontext()

    @classmethod
    def child_spec(
        cls, *args: Any, id: Any = None, name: Any = None, **overrides: Any
    ) -> ChildSpec:
        """A supervisor child spec that starts this server with ``start_link(cls, *args)``.

        The id defaults to the class; ``overrides`` set any other :class:`ChildSpec` field
        (``restart``, ``shutdown``, ``type``). Extra positional arguments a supervisor
        passes to ``start`` come before ``args``.
        """
        async def start(*extra: Any) -> Pid | None:
            return await start_link(cls, *extra, *args, name=name)

        overrides.setdefault("shutdown", cls.child_shutdown)
        return ChildSpec(id=cls if id is None else id, start=start, **overrides)


# -- the client API ------------------------------------------------------------------------


async def start_link(
    cls: type[GenServer], *args: Any, name: Any = None, timeout: Timeout = None
) -> Pid | None:
    """Start a server linked to the caller; return its pid once ``init`` has returned.

    ``name`` is a local name (str) or a via name. ``timeout`` (seconds, or None or
    ``"infinity"``) bounds ``init``: the server is killed and :class:`otp.InitError`
    raised with ``otp.TIMEOUT``. Returns None when ``init`` returns :class:`Ignore`.
    Raises :class:`otp.AlreadyStarted` for a taken name, :class:`otp.InitError` when
    ``init`` fails, and ``TypeError``/``ValueError`` for an invalid ``timeout`` before
    anything starts.
    """
    return await _start(cls, args, name, True, timeout)


async def start(
    cls: type[GenServer], *args: Any, name: Any = None, timeout: Timeout = None
) -> Pid | None:
    """Like :func:`start_link`, without the link."""
    return await _start(cls, args, name, False, timeout)


async def _start(
    cls: type[GenServer], args: tuple[Any, ...], name: Any, link: bool, timeout: Timeout
) -> Pid | None:
    timeout = check_timeout(timeout)
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"cls must be a GenServer subclass, got {cls!r}")
    waiter = _StartWaiter()
    proc = spawn_process(_serve, (cls, args, name, waiter), link=link)
    proc.monitors = {waiter: waiter}
    done, result = await waiter.wait(timeout)
    if proc.monitors is not None:
        proc.monitors.pop(waiter, None)
        if not proc.monitors:
            proc.monitors = None  # an idle server keeps no empty table
    if not done:
        _unlink_parent(proc)  # no exit signal for the caller, as for a failed init
        proc.kill()
        await await_exit(proc, None)  # so the name is free, as for a failed init
        raise InitError(TIMEOUT)
    return result  # type: ignore[no-any-return]


async def call(server: Name, request: Any, timeout: Timeout = 5.0) -> Any:
    """Send ``request`` to ``server`` and wait for its reply; return the reply.

    Waits at most ``timeout`` seconds (None or ``"infinity"``: for ever). Raises
    :class:`otp.NoProc` if no server is there, :class:`otp.ServerExited` (``.reason``) if
    it ends before replying, :class:`otp.CallTimeout` when time runs out (a reply that
    comes later is dropped, never reaching the mailbox), ``ValueError`` when ``server``
    is the calling process, and ``TypeError``/``ValueError`` for an invalid ``timeout``,
    before anything is sent.
    """
    if timeout is not None and (type(timeout) is not float or not timeout >= 0):
        timeout = check_timeout(timeout)
    proc = resolve(server)
    if proc is current_or_none():
        raise ValueError(f"server: {server!r} is the calling process, which cannot call itself")
    from_ = From()
    from_.server = server
    _hand(from_, proc, request)
    if timeout is None:
        try:
            return await wait_task_rescheduled(from_.abort)
        finally:
            monitors = from_.holder.monitors
            if monitors is not None:
                monitors.pop(from_, None)
    timers = proc.node.timers
    timers.add(trio.current_time() + timeout, from_)
    try:
        return await wait_task_rescheduled(from_.abort)
    except _Expired:
        raise CallTimeout(server, timeout) from None
    finally:
        timers.live -= 1
        monitors = from_.holder.monitors
        if monitors is not None:
            monitors.pop(from_, None)


def forward(server: Name, request: Any, from_: From) -> None:
    """Hand the call ``from_`` on to ``server``: its ``handle_call(request, from_)`` answers
    the original caller directly, as Erlang code does by sending ``{'$gen_call', From,
    Request}`` itself.

    The caller then watches ``server`` instead of the process that forwarded: it gets
    :class:`otp.ServerExited` if ``server`` ends before replying, and :class:`otp.NoProc`
    at once if ``server`` is not running. Its timeout keeps running. Never blocks.
    """
    if type(from_) is not From and not isinstance(from_, From):
        raise TypeError(f"from_ must be the From given to handle_call, got {from_!r}")
    if from_.task is None:  # the caller gave up already
        return
    proc = lookup(server)
    if proc is None:
        from_.resolve(outcome.Error(NoProc(server)))
        return
    held = from_.holder.monitors
    if held is not None:
        held.pop(from_, None)
    _hand(from_, proc, request)


def _hand(from_: From, proc: _Process, request: Any) -> None:
    """Give the call to ``proc``, which the caller then watches until it is answered."""
    from_.holder = proc
    monitors = proc.monitors
    if monitors is None:
        monitors = proc.monitors = {}
    monitors[from_] = from_
    proc.deliver(_Call(from_, request))


def cast(server: Name, msg: Any) -> None:
    """Send ``msg`` to ``server``'s ``handle_cast``; never blocks, never fails."""
    proc = server._proc if type(server) is Pid else lookup(server)
    if proc is not None:
        proc.deliver(_Cast(msg))


def reply(from_: From, value: Any) -> None:
    """Answer the call ``from_`` with ``value``, from the server or any other process.

    Does nothing if the caller has already given up (timed out or died), or if the call
    was already answered. Answering a :func:`send_request` puts the reply in the
    requester's mailbox.
    """
    if type(from_) is not From and not isinstance(from_, From):
        raise TypeError(f"from_ must be the From given to handle_call, got {from_!r}")
    from_.resolve(outcome.Value(value))


async def stop(server: Name, reason: Any = NORMAL, timeout: Timeout = None) -> None:
    """Stop ``server`` with ``reason``: it runs ``terminate`` and exits; return once it is gone.

    Raises :class:`otp.NoProc` if no server is there, :class:`otp.CallTimeout` if it is
    not gone within ``timeout`` seconds (None or ``"infinity"``: no limit; the server then
    carries on), :class:`otp.ServerExited` if it exited with another reason than
    ``reason``, and ``TypeError``/``ValueError`` for an invalid ``timeout``, before the
    stop request is sent (the server then keeps running). Returns None.
    """
    timeout = check_timeout(timeout)
    proc = resolve(server)
    if proc is current_or_none():
        raise ValueError(f"server: {server!r} is the calling process, which cannot stop itself")
    waiter = _Waiter()
    if proc.monitors is None:
        proc.monitors = {}
    proc.monitors[waiter] = waiter
    proc.deliver(_SystemStop(reason, waiter))
    done, exit_reason = await waiter.wait(timeout)
    if not done:
        if proc.monitors is not None:
            proc.monitors.pop(waiter, None)
        raise CallTimeout(server, timeout)
    if not same_reason(exit_reason, reason):
        raise ServerExited(server, exit_reason)


# -- asynchronous requests (OTP 25's send_request and friends) ------------------------------


class ReqId:
    """A request sent with :func:`send_request`: pass it to :func:`wait_response`,
    :func:`receive_response` or :func:`check_response` (from the process that sent it), or
    add it to a collection with :func:`reqids_add`. ``.server`` is the server as given.

    Equal only to itself; hashable.
    """

    __slots__ = ("_from", "server")

    def __init__(self, from_: _RequestFrom, server: Any) -> None:
        self._from = from_
        self.server = server

    def __repr__(self) -> str:
        return f"<ReqId to {self.server!r}>"


@attrs.frozen
class _Response:
    """The answer to a :class:`ReqId` in its requester's mailbox: ``("reply", value)`` or
    ``("error", exception)``. Hand it to :func:`check_response`."""

    req_id: ReqId
    result: tuple[str, Any]


class ReqIdCollection:
    """An immutable collection of outstanding requests, each with a label (Erlang's
    ``request_id_collection()``). Build it with :func:`reqids_new` and :func:`reqids_add`;
    ``len(coll)`` is :func:`reqids_size`."""

    __slots__ = ("_requests",)

    def __init__(self, requests: dict[ReqId, Any] | None = None) -> None:
        self._requests: dict[ReqId, Any] = requests if requests is not None else {}

    def _without(self, req_id: ReqId) -> ReqIdCollection:
        rest = dict(self._requests)
        del rest[req_id]
        return ReqIdCollection(rest)

    def __len__(self) -> int:
        return len(self._requests)

    def __repr__(self) -> str:
        return f"<ReqIdCollection: {len(self._requests)} request(s)>"


def send_request(server: Name, request: Any) -> ReqId:
    """Send ``request`` to ``server``'s ``handle_call`` without waiting; return its
    :class:`ReqId` at once.

    The calling process monitors the server until the request is answered: the reply, or
    the server's exit before replying, arrives in its mailbox as one message, which
    :func:`wait_response`, :func:`receive_response` or :func:`check_response` turns into
    the result. A server that is not there gives the error :class:`otp.NoProc` that way
    (nothing is raised here). A server may send a request to itself and find the answer in
    its ``handle_info``. Raises ``TypeError`` if ``server`` is not a name.
    """
    me = current()
    proc = lookup(server)
    from_ = _RequestFrom()
    from_.server = server
    from_.caller = me
    req_id = from_.req_id = ReqId(from_, server)
    if proc is None:
        from_.task = None
        me.deliver(_Response(req_id, ("error", NoProc(server))))
    else:
        _hand(from_, proc, request)
    return req_id


@overload
async def wait_response(req_id: ReqId, timeout: Timeout = None) -> Any: ...
@overload
async def wait_response(
    req_id: ReqIdCollection, timeout: Timeout = None
) -> tuple[Any, Any, ReqIdCollection]: ...
async def wait_response(
    req_id: ReqId | ReqIdCollection, timeout: Timeout = None
) -> Any:
    """Wait up to ``timeout`` seconds (None or ``"infinity"``: for ever, the default) for
    the answer to ``req_id`` and return the reply.

    Raises :class:`otp.ServerExited` if the server ended before replying and
    :class:`otp.NoProc` if it was not there, as :func:`call` does, and
    :class:`otp.CallTimeout` when time runs out: the request then stays outstanding, and
    its answer can still be waited for or checked. Only the process that sent the
    request can wait for it (``ValueError`` otherwise). As in Erlang, waiting for a
    request whose answer was already taken, or that was abandoned, times out.

    For a :class:`ReqIdCollection`, wait for the first answer to any of its requests and
    return ``(reply, label, rest)``, ``rest`` being the collection without that request;
    an error for one of them is raised with ``.label`` and ``.reqids`` (the rest) set on
    the exception. An empty collection raises ``ValueError``.
    """
    return await _await_response(req_id, timeout, abandon=False)


@overload
async def receive_response(req_id: ReqId, timeout: Timeout = None) -> Any: ...
@overload
async def receive_response(
    req_id: ReqIdCollection, timeout: Timeout = None
) -> tuple[Any, Any, ReqIdCollection]: ...
async def receive_response(
    req_id: ReqId | ReqIdCollection, timeout: Timeout = None
) -> Any:
    """Like :func:`wait_response`, but a timeout abandons the request (every request of
    a collection): the server is no longer watched and its answer, if it ever comes, is
    dropped and never reaches the mailbox. :class:`otp.CallTimeout` is raised then.
    """
    return await _await_response(req_id, timeout, abandon=True)


@overload
def check_response(msg: Any, req_id: ReqId) -> tuple[str, Any] | None: ...
@overload
def check_response(
    msg: Any, req_id: ReqIdCollection
) -> tuple[tuple[str, Any], Any, ReqIdCollection] | None: ...
def check_response(msg: Any, req_id: ReqId | ReqIdCollection) -> Any:
    """Tell whether ``msg``, a message taken from the mailbox, answers ``req_id``.

    Returns ``("reply", value)``, or ``("error", exc)`` with the exception that
    :func:`wait_response` would raise (:class:`otp.ServerExited`, :class:`otp.NoProc`),
    or None when ``msg`` is not the answer to that request. For a
    :class:`ReqIdCollection`: ``(result, label, rest)`` with ``rest`` the collection
    without that request, or None when ``msg`` answers none of its requests. Never waits.
    """
    if isinstance(req_id, ReqIdCollection):
        if type(msg) is not _Response or msg.req_id not in req_id._requests:
            return None
        return msg.result, req_id._requests[msg.req_id], req_id._without(msg.req_id)
    if type(req_id) is not ReqId:
        raise TypeError(f"req_id must be a ReqId or a ReqIdCollection, got {req_id!r}")
    if type(msg) is not _Response or msg.req_id is not req_id:
        return None
    return msg.result


def reqids_new() -> ReqIdCollection:
    """Return a new, empty :class:`ReqIdCollection`."""
    return ReqIdCollection()


def reqids_add(req_id: ReqId, label: Any, coll: ReqIdCollection) -> ReqIdCollection:
    """Return a new collection: ``coll`` with ``req_id`` added under ``label``.

    ``coll`` itself is unchanged. Raises ``ValueError`` if ``req_id`` is already in it
    and ``TypeError`` for arguments of the wrong kind.
    """
    if type(req_id) is not ReqId:
        raise TypeError(f"req_id must be a ReqId, got {req_id!r}")
    if not isinstance(coll, ReqIdCollection):
        raise TypeError(f"coll must be a ReqIdCollection, got {coll!r}")
    if req_id in coll._requests:
        raise ValueError(f"{req_id!r} is already in the collection")
    return ReqIdCollection({**coll._requests, req_id: label})


def reqids_size(coll: ReqIdCollection) -> int:
    """The number of requests in ``coll``."""
    if not isinstance(coll, ReqIdCollection):
        raise TypeError(f"coll must be a ReqIdCollection, got {coll!r}")
    return len(coll._requests)


def reqids_to_list(coll: ReqIdCollection) -> list[tuple[ReqId, Any]]:
    """The ``(req_id, label)`` pairs of ``coll``, in the order they were added."""
    if not isinstance(coll, ReqIdCollection):
        raise TypeError(f"coll must be a ReqIdCollection, got {coll!r}")
    return list(coll._requests.items())


async def _await_response(
    req_id: ReqId | ReqIdCollection, timeout: Timeout, abandon: bool
) -> Any:
    seconds = check_timeout(timeout)
    me = current()
    if isinstance(req_id, ReqIdCollection):
        requests = req_id._requests
        if not requests:
            raise ValueError("the collection holds no request to wait for")
        for one in requests:
            _check_owner(one, me)

        def match(msg: Any) -> bool:
            return type(msg) is _Response and msg.req_id in requests

        waited: list[ReqId] = list(requests)
        server: Any = req_id
    elif type(req_id) is ReqId:
        _check_owner(req_id, me)
        single = req_id

        def match(msg: Any) -> bool:
            return type(msg) is _Response and msg.req_id is single

        waited = [req_id]
        server = req_id.server
    else:
        raise TypeError(f"req_id must be a ReqId or a ReqIdCollection, got {req_id!r}")
    try:
        msg = await receive(seconds, match)
    except ReceiveTimeout:
        if abandon:
            for one in waited:
                _abandon(one)
        raise CallTimeout(server, seconds) from None
    kind, value = msg.result
    if isinstance(req_id, ReqIdCollection):
        label = req_id._requests[msg.req_id]
        rest = req_id._without(msg.req_id)
        if kind == "error":
            value.label = label
            value.reqids = rest
            raise value
        return value, label, rest
    if kind == "error":
        raise value
    return value


def _check_owner(req_id: ReqId, me: _Process) -> None:
    if type(req_id) is not ReqId:
        raise TypeError(f"not a ReqId: {req_id!r}")
    if req_id._from.caller is not me:
        raise ValueError(
            f"{req_id!r} was sent by {req_id._from.caller.pid!r}: only it gets the answer"
        )


def _abandon(req_id: ReqId) -> None:
    """Drop the request: its answer, if it comes, is never delivered."""
    from_ = req_id._from
    if from_.task is None:
        return
    from_.task = None
    monitors = from_.holder.monitors
    if monitors is not None:
        monitors.pop(from_, None)


# -- the server loop -----------------------------------------------------------------------


async def _serve(
    cls: type[GenServer], args: tuple[Any, ...], name: Any, starter: _StartWaiter
) -> None:
    me = current()
    if name is not None:
        try:
            register_name(name, me)
        except Exception as exc:  # a taken name, or not a name: the caller's error
            _unlink_parent(me)
            starter.resolve(outcome.Error(exc))
            return
    try:
        server = cls()
    except Exception as exc:  # part of init: fails the start like init raising
        _unlink_parent(me)
        starter.resolve(outcome.Error(InitError(_init_reason(exc))))
        raise
    me.impl = server
    # One coroutine frame for the whole life of a server: idle servers stay small.
    async with server._process_context():
        try:
            result = await server.init(*args)
            timeout, cont = _init_directive(result)
        # Ignored or failed: the starter is answered by the exit steps, after the name is
        # released (leaving the process context may await, e.g. a supervisor's nursery).
        except _Ignored:
            _unlink_parent(me)
            starter.ignored = True
            return
        except _InitStopped as stopped:
            _unlink_parent(me)
            raise ProcessExited(stopped.reason) from None
        except Exception:
            _unlink_parent(me)
            raise
        starter.resolve(outcome.Value(me.pid))
        parent = me.parent
        traced = False  # otp.sys.trace: log each message taken and each reply sent
        try:
            while True:
                if cont is not UNSET:
                    result = await server.handle_continue(cont)
                    timeout, cont = _directive(server, result, "handle_continue")
                    continue
                try:
                    msg = await receive(timeout)
                except ReceiveTimeout:
                    msg = TIMEOUT
                kind = type(msg)
                if traced:
                    _trace_in(me, msg)
                if kind is _Call:
                    result = await server.handle_call(msg.request, msg.from_)
                    kind = type(result)
                    if kind not in _DIRECTIVES:
                        msg.from_.resolve(outcome.Value(result))
                        if traced:
                            _trace_out(me, msg.from_, result)
                        timeout = None
                    elif kind is NoReply:  # replied to later, or by another process
                        timeout, cont = result.timeout, result.continue_
                    elif kind is Reply:
                        msg.from_.resolve(outcome.Value(result.value))
                        if traced:
                            _trace_out(me, msg.from_, result.value)
                        timeout, cont = result.timeout, result.continue_
                    elif kind is Stop and result.reply is not UNSET:
                        raise _StopRequested(result.reason, msg.from_, result.reply)
                    else:
                        timeout, cont = _directive(server, result, "handle_call")
                elif kind is _Cast:
                    result = await server.handle_cast(msg.msg)
                    timeout, cont = _directive(server, result, "handle_cast")
                elif kind is _System:  # the idle timeout, if any, starts again after it
                    traced = await _system(server, me, msg, traced)
                elif kind is _SystemStop:
                    if msg.waiter.task is not None:  # else the stop timed out: carry on
                        raise _StopRequested(msg.reason)
                elif kind is Exit and msg.pid == parent and me.trap_exit:
                    raise _StopRequested(msg.reason, from_parent=True)
                else:
                    result = await server.handle_info(msg)
                    timeout, cont = _directive(server, result, "handle_info")
        except _StopRequested as request:
            try:
                await server.terminate(request.reason)
            finally:  # the reply goes even if terminate raises (as OTP's try ... after)
                if request.from_ is not None and not _killed(me):
                    request.from_.resolve(outcome.Value(request.reply))
                    if traced:
                        _trace_out(me, request.from_, request.reply)
            exit_class = _ParentExit if request.from_parent else ProcessExited
            raise exit_class(request.reason) from None
        except ProcessExited as exc:
            await server.terminate(exc.reason)
            raise
        except Exception as exc:
            await server.terminate(exc)
            raise


def _init_reason(exc: Exception) -> Any:
    """The reason a failed init reports: ``exit(reason)`` gives the reason, as in Erlang."""
    return exc.reason if isinstance(exc, ProcessExited) else exc


class _Ignored(Exception):
    pass


class _InitStopped(Exception):
    def __init__(self, reason: Any) -> None:
        self.reason = reason


def _init_directive(result: Any) -> tuple[float | None, Any]:
    kind = type(result)
    if result is None:
        return None, UNSET
    if kind is NoReply:
        return result.timeout, result.continue_
    if kind is Continue:
        return None, result.arg
    if kind is Ignore:
        raise _Ignored
    if kind is Stop:
        raise _InitStopped(result.reason)
    raise TypeError(f"init returned {result!r}; expected None, NoReply, Continue, Ignore or Stop")


def _unlink_parent(me: _Process) -> None:
    parent = me.parent._proc if me.parent is not None else None
    if parent is not None and me.links is not None and parent in me.links:
        me.links.discard(parent)
        if parent.links is not None:
            parent.links.discard(me)


def _killed(me: _Process) -> bool:
    """True once the process accepted an exit signal: it must not answer any more."""
    return me.state != RUNNING


def _directive(server: GenServer, result: Any, callback: str) -> tuple[Any, Any]:
    if result is None:
        return None, UNSET
    kind = type(result)
    if kind is NoReply:
        return result.timeout, result.continue_
    if kind is Stop:
        raise _StopRequested(result.reason)
    raise TypeError(
        f"{type(server).__qualname__}.{callback} returned {result!r}; "
        "expected None, NoReply or Stop"
    )


class _StopRequested(Exception):
    def __init__(
        self, reason: Any, from_: From | None = None, reply: Any = None, from_parent: bool = False
    ) -> None:
        self.reason = reason
        self.from_ = from_
        self.reply = reply
        self.from_parent = from_parent


# -- system messages: the server side of otp.sys ----------------------------------------------

_trace_log: Final = logging.getLogger("otp.sys")


def _state_of(server: GenServer) -> dict[str, Any]:
    """A server's state as :mod:`otp.sys` sees it: a new dict of its instance attributes
    whose names do not start with ``_`` (the values themselves are not copied)."""
    attributes = getattr(server, "__dict__", None)
    if attributes is None:
        return {}
    return {key: value for key, value in attributes.items() if not key.startswith("_")}


def _replace_state(server: GenServer, fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Apply ``fn(state)``: the attributes it returns replace the public ones (those it
    leaves out are removed); the ``_`` ones stay. Nothing changes if ``fn`` raises or
    returns something that is not a state (TypeError/ValueError)."""
    new = fn(_state_of(server))
    if inspect.isawaitable(new):
        if inspect.iscoroutine(new):
            new.close()
        raise TypeError("replace_state: fn returned an awaitable; it must be a plain function")
    if not isinstance(new, dict):
        raise TypeError(f"replace_state: fn must return the new state as a dict, got {new!r}")
    for key in new:
        if not isinstance(key, str) or not key or key.startswith("_"):
            raise ValueError(
                f"replace_state: {key!r} cannot be a state attribute (names are non-empty "
                "str not starting with '_')"
            )
    attributes = getattr(server, "__dict__", None)
    if attributes is None:
        if new:
            raise TypeError(f"{type(server).__qualname__} keeps no attributes (__slots__)")
        return new
    for key in [key for key in attributes if not key.startswith("_") and key not in new]:
        del attributes[key]
    attributes.update(new)
    return new


def _behaviour_of(impl: Any) -> Any:
    """What :func:`otp.process_info` reports as ``behaviour`` for a process's ``impl``."""
    if isinstance(impl, GenServer):
        return impl._otp_behaviour or type(impl)
    return impl


def _answer_system(
    server: GenServer, msg: _System, traced: bool, suspended: bool
) -> bool:
    """Answer one system message; return whether the server traces from now on."""
    request = msg.request
    from_ = msg.from_
    kind = type(request)
    if kind is _GetState:
        from_.resolve(outcome.Value(_state_of(server)))
    elif kind is _ReplaceState:
        assert isinstance(request, _ReplaceState)
        try:
            new = _replace_state(server, request.fn)
        except Exception as exc:  # the caller's error: the server carries on unchanged
            from_.resolve(outcome.Error(exc))
        else:
            from_.resolve(outcome.Value(new))
    elif kind is _GetStatus:
        status: Literal["running", "suspended"] = "suspended" if suspended else "running"
        from_.resolve(outcome.Value(
            _StatusReply(status, traced, _state_of(server), _behaviour_of(server))
        ))
    else:
        if kind is _Trace:
            assert isinstance(request, _Trace)
            traced = request.flag
        from_.resolve(outcome.Value(None))
    return traced


async def _system(server: GenServer, me: _Process, msg: _System, traced: bool) -> bool:
    """Serve a system message taken by the loop; after :class:`_Suspend`, serve only
    system messages until :class:`_Resume`. Returns whether the server traces."""
    traced = _answer_system(server, msg, traced, False)
    if type(msg.request) is not _Suspend:
        return traced
    parent = me.parent

    def wanted(m: Any) -> bool:
        kind = type(m)
        return kind is _System or kind is _SystemStop or (
            kind is Exit and m.pid == parent and me.trap_exit
        )

    while True:
        taken = await receive(None, wanted)
        kind = type(taken)
        if kind is _System:
            traced = _answer_system(server, taken, traced, True)
            if type(taken.request) is _Resume:
                return traced
        elif kind is _SystemStop:
            if taken.waiter.task is not None:  # else the stop timed out: stay suspended
                raise _StopRequested(taken.reason)
        else:  # the parent's exit signal, trapped: shut down as when running
            raise _StopRequested(taken.reason, from_parent=True)


def _trace_label(me: _Process) -> Any:
    return me.name if me.name is not None else me.pid


def _trace_in(me: _Process, msg: Any) -> None:
    kind = type(msg)
    if kind is _Call:
        _trace_log.info("%r got call %r", _trace_label(me), msg.request)
    elif kind is _Cast:
        _trace_log.info("%r got cast %r", _trace_label(me), msg.msg)
    elif kind is _SystemStop:
        _trace_log.info("%r got stop %r", _trace_label(me), msg.reason)
    elif kind is not _System:
        _trace_log.info("%r got %r", _trace_label(me), msg)


def _trace_out(me: _Process, from_: From, value: Any) -> None:
    _trace_log.info("%r sent reply %r to %r", _trace_label(me), value, from_)


# -- system messages: the client side -------------------------------------------------------


def _is_server(proc: _Process) -> bool:
    """Whether ``proc`` runs the gen_server loop (or is about to): it answers system
    messages."""
    impl = proc.impl
    return impl is _serve or isinstance(impl, GenServer)


async def _system_call(server: Name, request: SystemRequest, timeout: Timeout) -> Any:
    """Send ``server`` the system message ``request`` and return its answer; raises as
    :func:`call` does, and ``TypeError`` for a process that is not a gen_server (nothing
    is sent to it then)."""
    seconds = check_timeout(timeout)
    proc = resolve(server)
    if proc is current_or_none():
        raise ValueError(f"server: {server!r} is the calling process, which cannot call itself")
    if not _is_server(proc):
        raise TypeError(
            f"server: {server!r} is not a gen_server (it runs {proc.impl!r}): it does "
            "not answer system messages"
        )
    from_ = From()
    from_.server = server
    from_.holder = proc
    monitors = proc.monitors
    if monitors is None:
        monitors = proc.monitors = {}
    monitors[from_] = from_
    proc.deliver(_System(from_, request))
    try:
        done, answer = await from_.wait(seconds)
    finally:
        monitors = from_.holder.monitors
        if monitors is not None:
            monitors.pop(from_, None)
    if not done:
        raise CallTimeout(server, seconds)
    return answer
