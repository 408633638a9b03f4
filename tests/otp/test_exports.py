"""The public names of ``otp`` and ``otp.gen_server``: a change here is an API change."""

from __future__ import annotations

import otp
from otp import gen_server

OTP_NAMES = [
    "AlreadyStarted", "Atom", "CallTimeout", "ChildSpec", "Continue", "Down", "Exit",
    "GenServer", "Ignore", "InitError", "KILL", "KILLED", "NOPROC", "NORMAL", "Name",
    "NoProc", "NoReply", "Node", "NotInProcess", "OTPError", "Pid", "ProcessExited",
    "ReceiveTimeout", "Ref", "Reply", "SHUTDOWN", "ServerExited", "Shutdown", "Stop",
    "Supervisor", "TIMEOUT", "Via", "application", "demonitor", "dynamic_supervisor",
    "exit", "gen_server", "is_alive", "is_normal_exit", "link", "make_ref", "monitor",
    "node", "partition_supervisor", "pubsub", "receive", "register", "registry", "run",
    "self", "send", "shutdown", "spawn", "spawn_link", "spawn_monitor", "supervisor",
    "trap_exits", "unlink", "unregister", "whereis",
]

GEN_SERVER_NAMES = [
    "Continue", "From", "GenServer", "Ignore", "NoReply", "Reply", "Stop", "call", "cast",
    "forward", "reply", "start", "start_link", "stop",
]


def test_otp_exports_exactly_its_public_names():
    assert sorted(otp.__all__) == sorted(OTP_NAMES)


def test_every_name_otp_exports_exists():
    for name in otp.__all__:
        assert hasattr(otp, name), name


def test_otp_exports_have_no_duplicates():
    assert len(set(otp.__all__)) == len(otp.__all__)


def test_gen_server_exports_exactly_its_public_names():
    assert sorted(gen_server.__all__) == sorted(GEN_SERVER_NAMES)


def test_every_name_gen_server_exports_exists():
    for name in gen_server.__all__:
        assert hasattr(gen_server, name), name


def test_gen_server_directives_are_the_same_objects_at_top_level():
    for name in ("Continue", "GenServer", "Ignore", "NoReply", "Reply", "Stop"):
        assert getattr(otp, name) is getattr(gen_server, name)
