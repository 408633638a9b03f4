"""Which modules of :mod:`exesdb.grpc.groups` may use the store: only the two process
modules (``group`` and ``manager``) import the store's API, :mod:`exesdb.gateway`; the
configuration, the ledger, the stream buffer, the messages, the protocol errors and the
client API reach it by no chain of imports, nor the processes; and the ledger and the
stream buffer are pure (no ``otp``, no ``trio``, nothing of exesdb).

Read from the source with :mod:`ast`, as :mod:`tests.test_layers` reads it (nothing is
imported; a delayed import counts).
"""

from __future__ import annotations

import pytest

from ...test_layers import import_graph, imports_of, module_files

PACKAGE = "exesdb.grpc.groups"
PROCESSES = {f"{PACKAGE}.group", f"{PACKAGE}.manager"}
NOT_PROCESSES = [f"{PACKAGE}.{name}"
                 for name in ("config", "ledger", "buffer", "messages", "rpc_errors", "client")]
STORE_API = "exesdb.gateway"


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through other modules."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_package_holds_the_modules_this_test_knows():
    assert {m for m in module_files() if m.startswith(f"{PACKAGE}.")} == (
        PROCESSES | set(NOT_PROCESSES))


def test_only_the_process_modules_import_the_store_api():
    graph = import_graph()
    importers = {m for m, targets in graph.items()
                 if m.startswith(f"{PACKAGE}.") and STORE_API in targets}
    assert importers == PROCESSES


@pytest.mark.parametrize("module", NOT_PROCESSES)
def test_no_other_module_reaches_the_store_api_or_a_process(module):
    reached = reachable(import_graph(), module)
    assert STORE_API not in reached
    assert not reached & PROCESSES


@pytest.mark.parametrize("module", ["ledger", "buffer"])
def test_the_ledger_and_the_stream_buffer_import_no_process_and_no_io(module):
    files = module_files()
    name = f"{PACKAGE}.{module}"
    top_level = {imported.split(".")[0] for imported in imports_of(name, files[name], files)}
    assert not top_level & {"otp", "trio", "exesdb"}
