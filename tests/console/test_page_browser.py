"""The console page end to end: Debian's Chromium (headless, driven by Playwright) against a running
``gatewatch worker`` (its own process, real Tansu broker, the embedded chdb warehouse seeded beforehand).

Checked: sign-in (no token, wrong token, sign-out), every view renders charts with data (what uPlot drew and
pixels of the series colour on the canvas), filters and the time range re-query with the chosen values and
change the figures, auto-refresh, the audit browser (rows, pagination, detail, filter, export, links from
the worst examples), a tenant-scoped token, and no console errors or page errors along the way.
Skipped only where no ``chromium`` is installed (CI sets GATEWATCH_REQUIRE_CHROMIUM=1: then it fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from consumers.console import TOKENS_FILE, create_token
from gatewatch.procs import TansuBroker, free_port
from tests.console.conftest import seeded_warehouse
from tests.console.seed import TENANTS, Seed
from tests.consumers.conftest import broker  # noqa: F401  -- the session's Tansu broker

CHROMIUM = shutil.which("chromium")
REQUIRED = os.environ.get("GATEWATCH_REQUIRE_CHROMIUM") == "1"
pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="no `chromium` on PATH (Debian: apt-get install chromium; scripts/setup.sh does it as root)")]

CHARTS = {"traffic": ["rps_by_tenant", "outcomes", "latency"], "usage": ["tokens_by_tenant", "cost_by_model"],
          "governance": ["decisions", "pii_over_time"], "quality": ["toxicity_distribution", "factuality"],
          "drift": ["drift_metric", "drifted_windows"], "alerts": ["alerts_started"]}


@dataclass
class Worker:
    url: str
    admin: str
    acme: str
    data: Seed
    log: Path


@pytest.fixture(scope="module")
def worker(broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:  # noqa: F811
    home = tmp_path_factory.mktemp("console-e2e")
    wh, data = seeded_warehouse(home / "warehouse", datetime.now(UTC))
    wh.close()  # the worker process owns the directory from here on
    port, suffix = free_port(), uuid.uuid4().hex[:8]
    cfg = home / "gatewatch.yaml"
    cfg.write_text(json.dumps({
        "kafka": {"bootstrap_servers": broker.bootstrap, "topic": f"console-{suffix}", "dlq_topic": f"dlq-{suffix}",
                  "partitions": 1},
        "worker": {"pipelines": ["archiver"], "console_port": port, "session_timeout_ms": 6000,
                   "heartbeat_interval_ms": 1000}}))
    log = home / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "gatewatch", "-c", str(cfg), "worker"],
                            env={**os.environ, "GATEWATCH_HOME": str(home)}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, home / "console-token", log)
        acme, _ = create_token(home / TOKENS_FILE, ["acme"])
        yield Worker(url, (home / "console-token").read_text().strip(), acme, data, log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, token_file: Path, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as resp:
                if resp.status == 200 and token_file.exists():
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the worker's console did not come up:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.fail("GATEWATCH_REQUIRE_CHROMIUM=1 but no `chromium` on PATH")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A fresh browser context (empty storage) with its console errors and API requests recorded."""

    page: object
    errors: list[str] = field(default_factory=list)
    api: list[str] = field(default_factory=list)

    def unexpected(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture
def tab(browser: object) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    out = Tab(page)
    page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.on("request", lambda r: out.api.append(r.url) if "/api/" in r.url else None)
    page.set_default_timeout(15_000)
    yield out
    context.close()


def ready(page: object, view: str, after: int = 0) -> int:
    """Wait for a finished render of ``view`` (later than render number ``after``); returns its number."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "([view, after]) => document.body.dataset.state === 'ready' && document.body.dataset.view === view "
        "&& Number(document.body.dataset.renders) > after", arg=[view, after])
    return int(page.evaluate("Number(document.body.dataset.renders)"))  # type: ignore[attr-defined]


def stat(page: object, pid: str) -> float:
    return float(page.get_attribute(f'[data-panel="{pid}"]', "data-value"))  # type: ignore[attr-defined]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def since(params: dict[str, str]) -> datetime:
    return datetime.fromisoformat(params["from"].replace("Z", "+00:00"))


PIXELS = """(pid) => {  // per data series: canvas pixels in its legend colour
  const panel = document.querySelector(`[data-panel="${pid}"]`);
  const canvas = panel.querySelector("canvas");
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const markers = [...panel.querySelectorAll(".u-legend .u-series:not(:first-child) .u-marker")];  // not the x
  return markers.map((marker) => {
    const want = getComputedStyle(marker).borderColor.match(/\\d+/g).map(Number);
    let hits = 0;
    for (let i = 0; i < data.length; i += 4) {
      const d = Math.abs(data[i] - want[0]) + Math.abs(data[i + 1] - want[1]) + Math.abs(data[i + 2] - want[2]);
      if (data[i + 3] > 200 && d < 40) hits++;
    }
    return hits;
  });
}"""


def test_sign_in_wrong_token_and_sign_out(tab: Tab, worker: Worker) -> None:
    page = tab.page
    page.goto(worker.url + "/")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.evaluate("document.body.dataset.state") == "signed-out"
    assert page.is_hidden("#toolbar") and page.is_hidden("#main")
    page.fill("#token-input", "gwc-not-a-real-token")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert "invalid or has been revoked" in page.inner_text("#signin-error")
    assert page.evaluate("document.body.dataset.state") == "signed-out" and page.is_hidden("#main")
    assert not [u for u in tab.api if "/api/dashboard" in u], "no data is asked for without a valid token"
    page.fill("#token-input", worker.admin)
    page.click("#signin-form button[type=submit]")
    ready(page, "traffic")
    assert stat(page, "requests") == len(worker.data.events)
    assert "admin" in page.inner_text("#who")
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0
    page.reload()
    page.wait_for_selector("#signin:not([hidden])")
    assert page.inner_text("#view") == ""
    assert tab.unexpected("status of 401") == [] and any("401" in e for e in tab.errors)


def test_every_view_renders_its_charts(tab: Tab, worker: Worker) -> None:
    page = tab.page
    page.goto(f"{worker.url}/#traffic?token={worker.admin}")
    ready(page, "traffic")
    assert "token" not in page.url, "the token leaves the address bar once stored"
    assert stat(page, "requests") == len(worker.data.events)
    rendered = 0
    for view, charts in CHARTS.items():
        if view != "traffic":
            page.click(f'#tabs a[data-view="{view}"]')
            rendered = ready(page, view, rendered)
        for pid in charts:
            el = page.locator(f'[data-panel="{pid}"]')
            assert int(el.get_attribute("data-series")) > 0 and int(el.get_attribute("data-points")) > 0, (view, pid)
            hits = page.evaluate(PIXELS, pid)
            assert len(hits) == int(el.get_attribute("data-series")) and max(hits) > 30, (view, pid, hits)
    assert page.locator('[data-panel="denials_by_rule"] li').count() == 0  # (not on this view)
    page.click('#tabs a[data-view="governance"]')
    ready(page, "governance", rendered)
    assert page.locator('[data-panel="denials_by_rule"] li').count() == 3
    assert tab.unexpected() == []


def test_filters_and_range_requery(tab: Tab, worker: Worker) -> None:
    page, data = tab.page, worker.data
    page.clock.install()  # real time keeps flowing; fast_forward drives the auto-refresh timer
    page.goto(f"{worker.url}/#traffic?token={worker.admin}")
    n = ready(page, "traffic")
    assert page.eval_on_selector_all("#tenant option", "os => os.map(o => o.value)") == ["", *sorted(TENANTS)]
    with page.expect_request(lambda r: "/api/dashboard/traffic" in r.url) as req:
        page.select_option("#tenant", "acme")
    params = query_of(req.value.url)
    n = ready(page, "traffic", n)
    assert params["tenant"] == "acme"
    assert stat(page, "requests") == data.requests("acme", since(params)) < len(data.events)
    assert page.get_attribute('[data-panel="rps_by_tenant"]', "data-series") == "1"
    with page.expect_request(lambda r: "/api/dashboard/traffic" in r.url) as req:
        page.select_option("#range", "15m")
    params = query_of(req.value.url)
    n = ready(page, "traffic", n)
    window = datetime.fromisoformat(params["to"].replace("Z", "+00:00")) - since(params)
    assert window == timedelta(minutes=15) and params["tenant"] == "acme"
    assert stat(page, "requests") == data.requests("acme", since(params))
    models = page.eval_on_selector_all("#model option", "os => os.map(o => o.value).filter(Boolean)")
    assert models and set(models) <= {e.request_model for e in data.events}
    page.select_option("#range", "6h")
    n = ready(page, "traffic", n)
    with page.expect_request(lambda r: "/api/dashboard/traffic" in r.url) as req:
        page.select_option("#model", "gpt-4o")
    params = query_of(req.value.url)
    n = ready(page, "traffic", n)
    floor = since(params).replace(second=0, microsecond=0)
    expected = sum(1 for e in data.events if e.tenant == "acme" and e.request_model == "gpt-4o"
                   and e.ts_start.replace(second=0, microsecond=0) >= floor)
    assert params["model"] == "gpt-4o" and stat(page, "requests") == expected
    assert "tenant=acme" in page.url and "model=gpt-4o" in page.url  # a bookmarkable view
    # a custom range (UTC, whole minutes) is queried as given
    start = (data.now - timedelta(hours=3)).replace(second=0)
    end = start + timedelta(hours=1)
    page.select_option("#range", "custom")
    page.fill("#from", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#to", end.strftime("%Y-%m-%dT%H:%M"))
    with page.expect_request(lambda r: "/api/dashboard/traffic" in r.url) as req:
        page.click("#apply-range")
    params = query_of(req.value.url)
    n = ready(page, "traffic", n)
    assert (since(params), params["to"]) == (start, end.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    assert stat(page, "requests") == sum(1 for e in data.events if e.tenant == "acme"
                                         and e.request_model == "gpt-4o" and start <= e.ts_start < end)
    page.select_option("#range", "6h")
    n = ready(page, "traffic", n)
    # auto-refresh: every 10 s a new query, until switched off
    page.select_option("#refresh", "10")
    n = ready(page, "traffic", n)
    with page.expect_request(lambda r: "/api/dashboard/traffic" in r.url):
        page.clock.fast_forward(11_000)
    n = ready(page, "traffic", n)
    page.select_option("#refresh", "0")
    n = ready(page, "traffic", n)
    before = len(tab.api)
    page.clock.fast_forward(60_000)
    page.wait_for_timeout(300)
    assert len(tab.api) == before
    page.reload()  # the filters come back from the URL, the token from the tab's session storage
    ready(page, "traffic")
    assert page.input_value("#tenant") == "acme" and page.input_value("#model") == "gpt-4o"
    assert tab.unexpected() == []


def _audit_ids(page: object) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        "table.audit-rows tbody tr", "rows => rows.map(r => r.dataset.eventId)")


def test_audit_browser(tab: Tab, worker: Worker) -> None:
    page, data = tab.page, worker.data
    page.goto(f"{worker.url}/#audit?token={worker.admin}")
    n = ready(page, "audit")
    first = _audit_ids(page)
    oldest = sorted(data.events, key=lambda e: (e.ts_start, e.event_id))
    newest = oldest[::-1]
    assert first == [e.event_id for e in newest[:50]]  # newest first by default
    assert "newest first" in page.inner_text("#audit-summary")
    assert page.is_disabled("#audit-prev") and page.is_enabled("#audit-next")
    page.click("#audit-next")
    n = ready(page, "audit", n)
    assert _audit_ids(page) == [e.event_id for e in newest[50:100]]
    page.click("#audit-prev")
    n = ready(page, "audit", n)
    assert _audit_ids(page) == first
    page.select_option('#audit-form select[name="order"]', "asc")
    page.click('#audit-form button[type="submit"]')
    n = ready(page, "audit", n)
    assert _audit_ids(page) == [e.event_id for e in oldest[:50]]
    page.click("#audit-next")
    n = ready(page, "audit", n)
    assert _audit_ids(page) == [e.event_id for e in oldest[50:100]]
    assert "oldest first" in page.inner_text("#audit-summary")
    row = _audit_ids(page)[3]
    page.click(f'tr[data-event-id="{row}"]')
    page.wait_for_selector("#drawer:not([hidden])")
    assert page.inner_text("#drawer-event-id") == row
    assert "how do I reset my password" in page.inner_text("#drawer-body")
    page.keyboard.press("Escape")
    page.wait_for_selector("#drawer", state="hidden")
    page.select_option('#audit-form select[name="outcome"]', "failed")
    page.click('#audit-form button[type="submit"]')
    n = ready(page, "audit", n)
    failed = [e.event_id for e in oldest if e.outcome == "failed"]  # the order chosen above is kept
    assert 0 < len(failed) < 50 and _audit_ids(page) == failed
    with page.expect_download() as dl:
        page.click('button[data-export="csv"]')
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0].startswith("event_id,") and len(lines) == len(failed) + 1
    # a worst example opens its audit entry
    page.click('#tabs a[data-view="quality"]')
    n = ready(page, "quality", n)
    link = page.locator('[data-panel="worst"] a[href^="#audit"]').first
    event_id = parse_qs(link.get_attribute("href").split("?", 1)[1])["event_id"][0]
    link.click()
    ready(page, "audit", n)
    page.wait_for_selector("#drawer:not([hidden])")
    assert page.inner_text("#drawer-event-id") == event_id and _audit_ids(page) == [event_id]
    assert tab.unexpected() == []


def test_tenant_scoped_token(tab: Tab, worker: Worker) -> None:
    page, data = tab.page, worker.data
    page.goto(f"{worker.url}/#traffic?token={worker.acme}")
    n = ready(page, "traffic")
    assert "tenants acme" in page.inner_text("#who")
    assert page.eval_on_selector_all("#tenant option", "os => os.map(o => o.value)") == ["", "acme"]
    params = query_of(next(u for u in reversed(tab.api) if "/api/dashboard/traffic" in u))
    assert stat(page, "requests") == data.requests("acme", since(params))
    assert page.get_attribute('[data-panel="rps_by_tenant"]', "data-series") == "1"
    page.click('#tabs a[data-view="audit"]')
    n = ready(page, "audit", n)
    tenants = page.eval_on_selector_all("table.audit-rows tbody tr td:nth-child(2)", "tds => tds.map(t => t.innerText)")
    assert tenants and set(tenants) == {"acme"}
    # another tenant in the URL: the console refuses (403) and shows why, with no data
    page.goto(f"{worker.url}/#traffic?tenant=globex")
    page.wait_for_function("() => document.body.dataset.state === 'error'")
    assert "not scoped to tenant(s) globex" in page.inner_text("#view")
    assert page.locator("[data-panel]").count() == 0
    assert tab.unexpected("status of 403") == []
