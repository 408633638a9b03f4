"""The web console in a real browser: Debian's chromium driven by Playwright.

Each test runs a node in a thread of its own (stores and the HTTP listener on a free
port) and looks at the pages as a user would: every page loads (a screenshot of each is
saved in a temporary folder), a stream pages forwards and backwards, the dashboard moves
after appends, a worker killed through the API is marked restarted in the live tree,
Basic authentication lets users in, and event content never runs as script.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import otp
from exesdb import NewEvent, gateway
from exesdb.systems.gateway import gateway_worker_name

from .helpers import ADMIN, ALICE, chromium, users_file
from .node_thread import NodeThread

PAGES = {"dashboard": "#node-processes", "streams": "#stream-list",
         "subscriptions": "#subs-table", "tree": "#tree .node",
         "cluster": "#cluster .card"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    if executable is None:  # as the PostgreSQL tests: never skipped, a missing tool fails
        pytest.fail("the console's browser tests need Debian's chromium at /usr/bin/chromium "
                    "(apt-get install -y chromium; .ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeThread]:
    with NodeThread(tmp_path) as running:
        yield running


def append(node: NodeThread, stream: str, events: list[NewEvent]) -> int:
    version: int = node.call(gateway.append_events, "demo", stream, events)
    return version


def new_page(browser: Browser, **context: object) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}, **context).new_page()
    page.set_default_timeout(10_000)
    return page


def test_every_page_loads_and_is_saved_as_a_screenshot(browser, node, screenshots):
    append(node, "order-1", [NewEvent("OrderPlaced", {"sku": "A-1", "qty": 2})])
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    for name, ready in PAGES.items():
        page.goto(f"{node.url}#/{name}")
        expect(page.locator(f"#page-{name}")).to_be_visible()
        expect(page.locator(ready).first).to_be_visible()
        expect(page.locator(f"nav a[data-page={name}]")).to_have_class("active")
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    assert errors == []
    assert sorted(p.name for p in screenshots.iterdir()) == sorted(f"{n}.png" for n in PAGES)


def test_a_stream_pages_forwards_and_backwards_and_shows_each_events_data(browser, node):
    append(node, "order-1", [NewEvent("OrderPlaced", {"n": n}) for n in range(44)]
           + [NewEvent("Scanned", b"\x00\x01\xfe", metadata={"by": "<b>me</b>"})])
    append(node, "user-1", [NewEvent("Registered", {})])
    page = new_page(browser)
    page.goto(f"{node.url}#/streams")
    page.fill("#streams-prefix", "order-")
    page.click("#stream-search button")
    expect(page.locator("#stream-list li")).to_have_text(["order-1"])
    page.click("#stream-list li >> text=order-1")
    rows = page.locator("#event-table tbody tr td:first-child")

    def shown(first: int, last: int) -> None:
        expect(rows).to_have_text([str(n) for n in range(first, last + 1)])

    shown(0, 19)
    expect(page.locator("#page-prev")).to_be_disabled()
    page.click("#page-next")
    shown(20, 39)
    page.click("#page-next")
    shown(40, 44)
    expect(page.locator("#page-next")).to_be_disabled()
    page.click("#page-prev")
    shown(20, 39)
    page.click("#page-last")
    shown(25, 44)
    page.click("#page-first")
    shown(0, 19)
    page.click("#event-table tbody tr >> nth=3")
    expect(page.locator("#event-data")).to_have_text('{\n  "n": 3\n}')
    expect(page.locator("#event-metadata")).to_have_text("(none)")
    page.click("#page-last")
    page.click("#event-table tbody tr >> text=Scanned")
    expect(page.locator("#event-data")).to_contain_text("00000000  00 01 fe")
    expect(page.locator("#event-metadata")).to_have_text('{\n  "by": "<b>me</b>"\n}')


def test_the_dashboard_moves_after_appends(browser, node):
    page = new_page(browser)
    page.goto(f"{node.url}#/dashboard")
    card = page.locator('#store-cards [data-store="demo"]')
    expect(card.locator(".status")).to_have_text("running")
    expect(card.locator(".appended")).to_have_text("0")
    append(node, "load", [NewEvent("Tick", {"i": i}) for i in range(50)])
    expect(card.locator(".appended")).to_have_text("50")
    expect(card.locator(".head")).to_have_text(re.compile(r"^\d+$"))
    expect(card.locator(".rate-in")).to_have_text(re.compile(r"^\d+\.\d/s$"))
    expect(card.locator(".peak")).to_have_text(re.compile(r"^[1-9]\d*\.\d/s / "))
    expect(card.locator(".streams")).to_have_text(re.compile(r"^[1-9]"), timeout=15_000)
    expect(card.locator(".subs tbody tr")).to_contain_text(["all-events"])
    assert int(page.locator("#node-processes").inner_text().replace(",", "")) > 20


def test_a_worker_killed_through_the_api_is_marked_restarted_in_the_live_tree(browser, node):
    page = new_page(browser)
    page.goto(f"{node.url}#/tree")
    worker = page.locator('#tree .node[data-path$="/GatewayWorker[demo] 1"]')
    expect(worker).to_be_visible()
    old_pid = worker.get_attribute("data-pid")
    assert old_pid == repr(node.call(_whereis_worker))
    expect(worker).not_to_have_class(re.compile("restarted"))
    answer = page.request.post(f"{node.url}api/processes/{old_pid}/kill",
                               headers={"X-Exesdb-Console": "1"})
    assert answer.status == 200
    expect(worker).to_have_class(re.compile("restarted"))
    expect(worker.locator(".badge.restart")).to_have_text("restarted")
    assert worker.get_attribute("data-pid") not in (old_pid, "")
    supervisor = page.locator('#tree .node[data-path$="/GatewaySystem[demo]"]')
    expect(supervisor).to_contain_text("1 restart seen")
    worker.click()
    expect(page.locator("#process-title")).to_contain_text("GatewayWorker[demo] 1")
    expect(page.locator("#process-fields")).to_contain_text("Last restart")
    expect(page.locator("#process-kill")).to_be_visible()  # no users file: everyone may


def test_users_log_in_with_basic_auth_and_only_admins_may_kill(browser, tmp_path):
    with NodeThread(tmp_path / "data", users_file=users_file(tmp_path)) as node:
        anonymous = new_page(browser).request.get(node.url)
        assert anonymous.status == 401
        assert anonymous.headers["www-authenticate"].startswith('Basic realm="exesdb"')
        intruder = new_page(browser, http_credentials={"username": "root",
                                                       "password": "guess"})
        refused = intruder.goto(node.url)
        assert refused is not None and refused.status == 401
        admin = new_page(browser, http_credentials={"username": ADMIN[0],
                                                    "password": ADMIN[1]})
        admin.goto(f"{node.url}#/tree")
        expect(admin.locator("#whoami")).to_have_text("signed in as root")
        admin.locator('#tree .node[data-path$="/GatewayWorker[demo] 0"]').click()
        expect(admin.locator("#process-kill")).to_be_visible()
        alice = new_page(browser, http_credentials={"username": ALICE[0],
                                                    "password": ALICE[1]})
        alice.goto(f"{node.url}#/tree")
        expect(alice.locator("#whoami")).to_have_text("signed in as alice")
        alice.locator('#tree .node[data-path$="/GatewayWorker[demo] 0"]').click()
        expect(alice.locator("#process-title")).to_contain_text("GatewayWorker[demo] 0")
        expect(alice.locator("#process-kill")).to_be_hidden()
        alice.goto(f"{node.url}#/dashboard")  # alice may use "s", not "demo"
        expect(alice.locator("#node-processes")).to_have_text(re.compile(r"^\d"))
        expect(alice.locator("#store-cards [data-store]")).to_have_count(0)


def test_event_content_is_shown_as_text_and_never_runs(browser, node):
    name = "<script>window.__xss = 1; alert('stream')</script>"
    evil_type = "<img src=x onerror=\"window.__xss = 2; alert('type')\">"
    append(node, name, [NewEvent(evil_type, {"html": "<script>alert('data')</script>"})])
    node.call(gateway.save_subscription, "demo", "by_event_type", evil_type,
              "<b onmouseover=alert(1)>sub</b>")
    page = new_page(browser)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{node.url}#/streams")
    stream = page.locator("#stream-list li").first
    expect(stream).to_have_text(name)
    stream.click()
    expect(page.locator("#stream-title")).to_have_text(name)
    expect(page.locator("#event-table tbody tr td:nth-child(2)")).to_have_text([evil_type])
    page.click("#event-table tbody tr")
    expect(page.locator("#event-data")).to_contain_text("<script>alert('data')</script>")
    page.goto(f"{node.url}#/subscriptions")
    expect(page.locator("#subs-table")).to_contain_text("<b onmouseover=alert(1)>sub</b>")
    page.goto(f"{node.url}#/dashboard")
    expect(page.locator('#store-cards [data-store="demo"] .subs')).to_contain_text(evil_type)
    assert page.evaluate("window.__xss") is None
    assert page.locator("script").count() == 1  # the console's own
    assert page.locator("#page-streams img, #page-subscriptions b").count() == 0
    assert dialogs == []


async def _whereis_worker() -> otp.Pid | None:
    return otp.whereis(gateway_worker_name("demo", 1))
