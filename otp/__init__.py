"""otp: Erlang/OTP's process model on trio.

Processes with mailboxes, links, monitors and exit signals; gen_server; supervisors,
dynamic and partitioned supervisors; a registry with via names; pub/sub; applications;
:mod:`otp.testing`, a property-test harness for supervision trees; introspection
(:func:`otp.process_info`, :mod:`otp.sys`, :mod:`otp.observer`); and :mod:`otp.lowlevel`,
the hooks for libraries built on otp (exit hooks, per-node state).

Run a node with :func:`otp.run` (a program) or ``async with otp.node():`` (a test, or a
trio program that embeds ``otp``). The behaviour follows Erlang/OTP and Elixir; where they
differ, Elixir's choice.
"""

from . import (
    application,
    dynamic_supervisor,
    gen_server,
    lowlevel,
    observer,
    partition_supervisor,
    pubsub,
    registry,
    supervisor,
    sys,
)
from ._child_spec import ChildSpec
from ._errors import (
    AlreadyStarted,
    CallTimeout,
    InitError,
    NoProc,
    NotInProcess,
    OTPError,
    ProcessExited,
    ReceiveTimeout,
    ServerExited,
)
from ._introspection import process_info
from ._messages import Down, Exit
from ._names import Name, Via, register, unregister, whereis
from ._node import node, run
from ._primitives import (
    demonitor,
    exit,
    is_alive,
    link,
    monitor,
    receive,
    self,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exits,
    unlink,
)
from ._process import Node, Pid
from ._terms import (
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    Atom,
    Ref,
    Shutdown,
    is_normal_exit,
    make_ref,
    shutdown,
)
from ._util import fixup_module_metadata
from .gen_server import Continue, GenServer, Ignore, NoReply, Reply, Stop
from .supervisor import Supervisor

__all__ = [
    "KILL",
    "KILLED",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "TIMEOUT",
    "AlreadyStarted",
    "Atom",
    "CallTimeout",
    "ChildSpec",
    "Continue",
    "Down",
    "Exit",
    "GenServer",
    "Ignore",
    "InitError",
    "Name",
    "NoProc",
    "NoReply",
    "Node",
    "NotInProcess",
    "OTPError",
    "Pid",
    "ProcessExited",
    "ReceiveTimeout",
    "Ref",
    "Reply",
    "ServerExited",
    "Shutdown",
    "Stop",
    "Supervisor",
    "Via",
    "application",
    "demonitor",
    "dynamic_supervisor",
    "exit",
    "gen_server",
    "is_alive",
    "is_normal_exit",
    "link",
    "lowlevel",
    "make_ref",
    "monitor",
    "node",
    "observer",
    "partition_supervisor",
    "process_info",
    "pubsub",
    "receive",
    "register",
    "registry",
    "run",
    "self",
    "send",
    "shutdown",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "supervisor",
    "sys",
    "trap_exits",
    "unlink",
    "unregister",
    "whereis",
]

# What the public modules export reports them as its module (otp first: it wins for what
# it shares with a submodule), as trio does.
fixup_module_metadata(__name__, globals())
for _module in (
    application,
    dynamic_supervisor,
    gen_server,
    lowlevel,
    observer,
    partition_supervisor,
    pubsub,
    registry,
    supervisor,
    sys,
):
    fixup_module_metadata(_module.__name__, vars(_module))
del _module, fixup_module_metadata
