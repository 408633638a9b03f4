"""``GET /health/live`` and ``GET /health/ready``."""

from __future__ import annotations

from exesdb import stop_store
from exesdb.naming import genserver_name
from exesdb.systems.gateway import GatewaySystem, GatewayWorker
from otp import supervisor

from .helpers import running, users_file


async def test_live_answers_200_while_the_node_runs(tmp_path):
    async with running(tmp_path) as console:
        answer = await console.get("/health/live")
    assert (answer.status, answer.json()) == (200, {"status": "live"})


async def test_ready_answers_200_when_every_store_answers(tmp_path):
    async with running(tmp_path, stores=("a", "b")) as console:
        answer = await console.get("/health/ready")
    assert answer.status == 200
    assert answer.json() == {"status": "ready", "stores": {"a": "ready", "b": "ready"}}


async def test_ready_answers_503_naming_a_configured_store_that_does_not_run(tmp_path):
    async with running(tmp_path, stores=("a", "b"), configured=("a", "b")) as console:
        await stop_store("b")
        answer = await console.get("/health/ready")
    assert answer.status == 503
    assert answer.json() == {"status": "not ready",
                             "stores": {"a": "ready", "b": "not running"}}


async def test_ready_answers_503_while_a_store_cannot_answer_and_200_once_it_does(tmp_path):
    async with running(tmp_path, configured=("s",)) as console:
        gateway_system = genserver_name(GatewaySystem, "s")
        workers = [(GatewayWorker, "s", i) for i in range(4)]
        for child_id in workers:  # no gateway worker: every call of the store fails
            await supervisor.terminate_child(gateway_system, child_id)
        answer = await console.get("/health/ready")
        assert answer.status == 503
        assert answer.json()["status"] == "not ready"
        assert answer.json()["stores"]["s"].startswith("not ready: ")
        for child_id in workers:
            await supervisor.restart_child(gateway_system, child_id)
        answer = await console.get("/health/ready")
    assert answer.status == 200


async def test_the_health_checks_need_no_credentials(tmp_path):
    async with running(tmp_path, users=users_file(tmp_path)) as console:
        assert (await console.get("/health/live")).status == 200
        assert (await console.get("/health/ready")).status == 200
        assert (await console.get("/metrics")).status == 401
