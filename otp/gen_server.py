"""gen_server: a process that serves calls, casts and messages through callbacks.

Client API first (:func:`start_link`, :func:`start`, :func:`call`, :func:`cast`,
:func:`reply`, :func:`stop`), then the callbacks a server implements by subclassing
:class:`GenServer`, then the values callbacks return.

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
* :func:`cast` never blocks and never fails.
* Every timeout is a number of seconds ``>= 0``, or None or ``"infinity"`` for no limit.
  Any other value raises ``TypeError`` or ``ValueError`` before anything is sent.
* ``terminate`` runs when a callback returns :class:`Stop` or raises, when :func:`stop` is
  called, and when the parent sends an exit signal while the server traps exits. It does
  not run after a kill, nor after an exit signal the server does not trap.

The return protocol: ``init``, ``handle_cast``, ``handle_info`` and ``handle_continue``
return None to carry on; ``handle_call`` returns the reply. Any of them may instead return
:class:`NoReply` (with ``continue_`` and/or an idle ``timeout``), ``handle_call`` may
return :class:`Reply` to reply with those options, every callback may return
:class:`Stop`, and ``init`` may also return :class:`Continue` or :class:`Ignore`. An idle
timeout delivers :data:`otp.TIMEOUT` to ``handle_info`` when no message arrives in time.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, ClassVar, Final

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
    "Stop",
    "call",
    "cast",
    "forward",
    "reply",
    "start",
    "start_link",
    "stop",
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
    """Who a call came from: pass it to :func:`reply` to answer, from any process."""

    __slots__ = ("holder", "server")
    server: Any
    holder: _Process  # the server the call is with: the one whose exit fails it

    def target_exited(self, pid: Pid, reason: Any) -> None:
        self.resolve(outcome.Error(ServerExited(self.server, reason)))

    def __repr__(self) -> str:
        return f"<From call to {self.server!r}>"


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


class _ParentExit(ProcessExited):
    """Ends a server because its parent did: not the server's own crash, so not reported."""

    report = False


# -- the callbacks -------------------------------------------------------------------------


class GenServer:
    """Base class of a server. The class is instantiated with no arguments inside the new
    process; keep the state on ``self``. Override the callbacks you need (all async)."""

    child_shutdown: ClassVar[float | str] = 5.0
    """The ``shutdown`` that :meth:`child_spec` gives by default."""

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
    if type(from_) is not From:
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

    Does nothing if the caller has already given up (timed out or died).
    """
    if type(from_) is not From:
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
                if kind is _Call:
                    result = await server.handle_call(msg.request, msg.from_)
                    kind = type(result)
                    if kind not in _DIRECTIVES:
                        msg.from_.resolve(outcome.Value(result))
                        timeout = None
                    elif kind is NoReply:  # replied to later, or by another process
                        timeout, cont = result.timeout, result.continue_
                    elif kind is Reply:
                        msg.from_.resolve(outcome.Value(result.value))
                        timeout, cont = result.timeout, result.continue_
                    elif kind is Stop and result.reply is not UNSET:
                        raise _StopRequested(result.reason, msg.from_, result.reply)
                    else:
                        timeout, cont = _directive(server, result, "handle_call")
                elif kind is _Cast:
                    result = await server.handle_cast(msg.msg)
                    timeout, cont = _directive(server, result, "handle_cast")
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
