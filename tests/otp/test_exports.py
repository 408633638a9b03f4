"""The public names of ``otp``, ``otp.gen_server``, ``otp.lowlevel``, ``otp.registry``,
``otp.partition_supervisor``, ``otp.sys`` and ``otp.observer``: a change here is an API
change. And what they export reports the public module it is exported from."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from typing import Any

import pytest

import otp
import otp.testing
from otp import gen_server, lowlevel

OTP_NAMES = [
    "AlreadyStarted", "Atom", "CallTimeout", "ChildSpec", "Continue", "Down", "Exit",
    "GenServer", "Ignore", "InitError", "KILL", "KILLED", "NOPROC", "NORMAL", "Name",
    "NoProc", "NoReply", "Node", "NotInProcess", "OTPError", "Pid", "ProcessExited",
    "ReceiveTimeout", "Ref", "Reply", "SHUTDOWN", "ServerExited", "Shutdown", "Stop",
    "Supervisor", "TIMEOUT", "Via", "application", "demonitor", "dynamic_supervisor",
    "exit", "gen_server", "is_alive", "is_normal_exit", "link", "lowlevel", "make_ref", "monitor",
    "node", "observer", "partition_supervisor", "process_info", "pubsub", "receive",
    "register", "registry", "run", "self", "send", "shutdown", "spawn", "spawn_link",
    "spawn_monitor", "supervisor", "sys", "trap_exits", "unlink", "unregister", "whereis",
]

GEN_SERVER_NAMES = [
    "Continue", "From", "GenServer", "Ignore", "NoReply", "Reply", "ReqId", "ReqIdCollection",
    "Stop", "call", "cast", "check_response", "forward", "receive_response", "reply",
    "reqids_add", "reqids_new", "reqids_size", "reqids_to_list", "send_request", "start",
    "start_link", "stop", "wait_response",
]

LOWLEVEL_NAMES = ["NodeVar", "current_node", "on_exit"]

REGISTRY_NAMES = [
    "AlreadyRegistered", "Keys", "NotRegistered", "RegistryName", "UnknownRegistry",
    "child_spec", "count", "count_match", "count_select", "delete_meta", "dispatch", "keys",
    "lock", "lookup", "match", "meta", "put_meta", "register", "select", "start",
    "start_link", "unregister", "unregister_match", "update_value", "values", "via",
]

SYS_NAMES = [
    "Status", "get_state", "get_status", "replace_state", "resume", "suspend", "trace",
]

OBSERVER_NAMES = ["Entry", "Kind", "ProcessInfo", "snapshot"]

PARTITION_SUPERVISOR_NAMES = [
    "count_children", "partition_for", "partitions", "start_child", "start_link", "stop",
    "which_children",
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


def test_lowlevel_exports_exactly_its_public_names():
    assert sorted(lowlevel.__all__) == sorted(LOWLEVEL_NAMES)


def test_every_name_lowlevel_exports_exists():
    for name in lowlevel.__all__:
        assert hasattr(lowlevel, name), name


def test_registry_exports_exactly_its_public_names():
    assert sorted(otp.registry.__all__) == sorted(REGISTRY_NAMES)


def test_every_name_registry_exports_exists():
    for name in otp.registry.__all__:
        assert hasattr(otp.registry, name), name


def test_partition_supervisor_exports_exactly_its_public_names():
    assert sorted(otp.partition_supervisor.__all__) == sorted(PARTITION_SUPERVISOR_NAMES)


def test_every_name_partition_supervisor_exports_exists():
    for name in otp.partition_supervisor.__all__:
        assert hasattr(otp.partition_supervisor, name), name


def test_sys_exports_exactly_its_public_names():
    assert sorted(otp.sys.__all__) == sorted(SYS_NAMES)


def test_every_name_sys_exports_exists():
    for name in otp.sys.__all__:
        assert hasattr(otp.sys, name), name


def test_observer_exports_exactly_its_public_names():
    assert sorted(otp.observer.__all__) == sorted(OBSERVER_NAMES)


def test_every_name_observer_exports_exists():
    for name in otp.observer.__all__:
        assert hasattr(otp.observer, name), name


def test_otp_sys_leaves_the_standard_librarys_sys_alone():
    assert otp.sys.__name__ == "otp.sys"
    assert sys.modules["sys"] is sys and sys is not otp.sys


# -- the module each export reports ----------------------------------------------------------


def _public_modules() -> list[Any]:
    names = ["otp"] + [
        info.name for info in pkgutil.walk_packages(otp.__path__, "otp.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return [importlib.import_module(name) for name in names]


def _exports() -> list[tuple[str, str, Any]]:
    return [
        (module.__name__, name, getattr(module, name))
        for module in _public_modules()
        for name in module.__all__
        if inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name))
    ]


def test_the_public_modules_are_found():
    names = {module.__name__ for module in _public_modules()}
    assert {"otp", "otp.lowlevel", "otp.supervisor", "otp.testing"} <= names


@pytest.mark.parametrize(("module", "name", "obj"), _exports(), ids=lambda v: str(v)[:40])
def test_every_exported_class_and_function_reports_a_public_module(module, name, obj):
    assert not any(part.startswith("_") for part in obj.__module__.split(".")), obj.__module__


@pytest.mark.parametrize(("module", "name", "obj"), _exports(), ids=lambda v: str(v)[:40])
def test_every_exported_class_and_function_is_found_where_it_says_it_is(module, name, obj):
    home = importlib.import_module(obj.__module__)
    assert getattr(home, obj.__qualname__) is obj


def test_what_otp_exports_from_a_private_module_reports_otp():
    assert otp.CallTimeout.__module__ == "otp"
    assert otp.Pid.__module__ == "otp"
    assert otp.spawn.__module__ == "otp"
    assert otp.ChildSpec.__module__ == "otp"


def test_what_only_a_submodule_exports_reports_that_submodule():
    assert otp.supervisor.StartChildError.__module__ == "otp.supervisor"
    assert lowlevel.NodeVar.__module__ == "otp.lowlevel"
    assert lowlevel.on_exit.__module__ == "otp.lowlevel"
    assert otp.testing.NodeDriver.__module__ == "otp.testing"
    assert otp.observer.ProcessInfo.__module__ == "otp.observer"
    assert otp.process_info.__module__ == "otp"


def test_what_otp_and_a_submodule_both_export_reports_otp():
    assert otp.supervisor.ChildSpec is otp.ChildSpec
    assert otp.supervisor.ChildSpec.__module__ == "otp"


def test_what_a_public_module_defines_keeps_that_module():
    assert otp.GenServer.__module__ == "otp.gen_server"
    assert otp.registry.RegistryName.__module__ == "otp.registry"


def test_an_exception_shows_its_public_name_in_a_traceback():
    assert repr(otp.NoProc) == "<class 'otp.NoProc'>"


def test_importing_otp_and_all_its_modules_never_imports_exesdb():
    code = (
        "import pkgutil, sys, otp\n"
        "for info in pkgutil.walk_packages(otp.__path__, 'otp.'):\n"
        "    __import__(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'exesdb'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
