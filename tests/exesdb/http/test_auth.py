"""HTTP Basic authentication against the users file, and what each user may see and do."""

from __future__ import annotations

import otp
from exesdb import NewEvent, gateway
from exesdb.http.watcher import refresh
from exesdb.systems.gateway import gateway_worker_name

from .helpers import ADMIN, ALICE, running, users_file

CONSOLE = {"X-Exesdb-Console": "1"}


async def test_without_credentials_every_page_asks_for_them_with_basic(tmp_path):
    async with running(tmp_path, users=users_file(tmp_path)) as console:
        for path in ["/", "/metrics", "/api/node", "/api/tree", "/static/console.js",
                     "/api/stores/s/streams"]:
            answer = await console.get(path)
            assert answer.status == 401, path
            assert answer.headers["www-authenticate"].startswith('Basic realm="exesdb"')


async def test_wrong_credentials_are_refused_and_right_ones_let_in(tmp_path):
    async with running(tmp_path, users=users_file(tmp_path)) as console:
        assert (await console.get("/api/node", user=("root", "wrong"))).status == 401
        assert (await console.get("/api/node", user=("nobody", "x"))).status == 401
        answer = await console.get("/api/node", user=ADMIN)
        assert answer.status == 200
        assert (answer.json()["user"], answer.json()["admin"]) == ("root", True)
        assert (await console.get("/", user=ADMIN)).status == 200


async def test_a_user_sees_only_the_stores_its_groups_allow(tmp_path):
    async with running(tmp_path, stores=("s", "other"), users=users_file(tmp_path)) as console:
        await gateway.append_events("other", "secret", [NewEvent("E", {})])
        node = (await console.get("/api/node", user=ALICE)).json()
        assert [s["store_id"] for s in node["stores"]] == ["s"]
        assert node["admin"] is False
        assert (await console.get("/api/stores/other/streams", user=ALICE)).status == 403
        assert (await console.get("/api/stores/s/streams", user=ALICE)).status == 200
        clusters = (await console.get("/api/cluster", user=ALICE)).json()
        assert [c["store_id"] for c in clusters] == ["s"]
        admin = (await console.get("/api/node", user=ADMIN)).json()
        assert sorted(s["store_id"] for s in admin["stores"]) == ["other", "s"]


async def test_only_admins_may_kill_a_process(tmp_path):
    async with running(tmp_path, users=users_file(tmp_path)) as console:
        await refresh()
        pid = repr(otp.whereis(gateway_worker_name("s", 1)))
        path = f"/api/processes/{pid}/kill"
        refused = await console.post(path, user=ALICE, headers=CONSOLE)
        assert refused.status == 403 and "$admins" in refused.json()["error"]
        assert otp.whereis(gateway_worker_name("s", 1)) is not None
        killed = await console.post(path, user=ADMIN, headers=CONSOLE)
        assert killed.status == 200 and killed.json()["killed"] == pid


async def test_a_changing_request_needs_the_console_header(tmp_path):
    async with running(tmp_path) as console:  # no users file: everyone may, but not blindly
        await refresh()
        pid = repr(otp.whereis(gateway_worker_name("s", 1)))
        answer = await console.post(f"/api/processes/{pid}/kill")
        assert answer.status == 403 and "x-exesdb-console" in answer.json()["error"]
        answer = await console.post("/api/stores/s/groups/replay-parked",
                                    {"stream": "a", "group": "g"})
        assert answer.status == 403
        assert repr(otp.whereis(gateway_worker_name("s", 1))) == pid
