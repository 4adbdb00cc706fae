"""The console's dashboard API on a seeded chdb warehouse, in process: every view's figures against the seed,
tenant scoping, parameter validation, and the page's static files (public, strict CSP, packaged)."""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from consumers.console.dashboard import VIEWS
from consumers.console.dashboard.window import choose_step
from consumers.console.page import STATIC_DIR
from consumers.warehouse import Warehouse
from tests.console.conftest import Tokens, bearer
from tests.console.seed import TENANTS, Seed

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]
Demo = tuple[Warehouse, Seed, Tokens]


def window(data: Seed) -> dict[str, str]:
    return {"from": (data.now - timedelta(hours=6)).isoformat(), "to": data.now.isoformat()}


async def view(console: TestClient, token: str, name: str, **params: str) -> dict[str, Any]:
    resp = await console.get(f"/api/dashboard/{name}", params=params, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def panel(body: dict[str, Any], pid: str) -> dict[str, Any]:
    return next(p for p in body["panels"] if p["id"] == pid)


def total(p: dict[str, Any]) -> float:
    return sum(v or 0 for s in p["series"] for v in s["values"])


async def test_auth_and_whoami(console: TestClient, demo: Demo) -> None:
    _, _, tokens = demo
    for path in ("/api/dashboard/traffic", "/api/dashboard/filters", "/api/whoami"):
        assert (await console.get(path)).status == 401
        resp = await console.get(path, headers=bearer("gwc-wrong"))
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    me = await (await console.get("/api/whoami", headers=bearer(tokens.acme))).json()
    assert me["scope"] == ["acme"] and me["admin"] is False and me["token_id"].startswith("ctk_")
    assert (await (await console.get("/api/whoami", headers=bearer(tokens.admin))).json())["admin"] is True


@pytest.mark.parametrize("name", list(VIEWS))
async def test_every_view_is_well_formed(console: TestClient, demo: Demo, name: str) -> None:
    _, data, tokens = demo
    body = await view(console, tokens.admin, name, **window(data))
    assert body["view"] == name and body["window"]["step_s"] == 300
    assert body["panels"] and len({p["id"] for p in body["panels"]}) == len(body["panels"])
    for p in body["panels"]:
        assert p["kind"] in ("stat", "timeseries", "histogram", "bars", "table") and 1 <= p["w"] <= 12
        if p["kind"] == "timeseries":
            assert p["series"], f"{name}/{p['id']} has no series on the seed"
            assert all(len(s["values"]) == len(p["time"]) for s in p["series"])
            assert p["time"] == sorted(p["time"])
        elif p["kind"] == "table":
            assert all(len(r) == len(p["columns"]) for r in p["rows"])
        elif p["kind"] == "stat":
            assert p["value"] is None or math.isfinite(p["value"])


async def test_traffic_figures_match_the_seed(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    body = await view(console, tokens.admin, "traffic", **window(data))
    ev = data.events
    assert panel(body, "requests")["value"] == len(ev)
    assert panel(body, "error_rate")["value"] == pytest.approx(sum(e.outcome == "failed" for e in ev) / len(ev))
    rps = panel(body, "rps_by_tenant")
    assert {s["name"] for s in rps["series"]} == set(TENANTS)
    assert total(rps) * body["window"]["step_s"] == pytest.approx(len(ev))
    outcomes = {s["name"]: sum(s["values"]) for s in panel(body, "outcomes")["series"]}
    assert outcomes == dict(Counter(e.outcome for e in ev))
    errors = {s["name"]: sum(s["values"]) for s in panel(body, "errors_by_type")["series"]}
    assert errors == dict(Counter(e.error_type for e in ev if e.outcome == "failed"))
    latencies = sorted(e.latency_ms for e in ev)
    assert latencies[int(0.9 * len(ev))] < panel(body, "latency_p95")["value"] < latencies[int(0.99 * len(ev))]
    breakdown = panel(body, "breakdown")
    assert sum(r[3] for r in breakdown["rows"]) == len(ev)


async def test_tenant_and_model_filters(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    acme = [e for e in data.events if e.tenant == "acme"]
    body = await view(console, tokens.admin, "traffic", tenant="acme", **window(data))
    assert panel(body, "requests")["value"] == len(acme)
    assert [s["name"] for s in panel(body, "rps_by_tenant")["series"]] == ["acme"]
    body = await view(console, tokens.admin, "usage", tenant="acme", model="gpt-4o", **window(data))
    chosen = [e for e in acme if e.request_model == "gpt-4o"]
    assert panel(body, "cost")["value"] == pytest.approx(sum(e.cost_usd or 0 for e in chosen))
    assert panel(body, "input_tokens")["value"] == sum(e.usage.input_tokens or 0 for e in chosen)
    assert {r[0] for r in panel(body, "budgets")["rows"]} == {"acme"}
    # the time range re-scopes every figure: the last 30 minutes only (the rollup counts whole minutes)
    since = data.now - timedelta(minutes=30)
    body = await view(console, tokens.admin, "traffic", **{"from": since.isoformat(), "to": data.now.isoformat()})
    assert panel(body, "requests")["value"] == data.requests(since=since) < len(data.events)
    first = int(since.timestamp()) // 60 * 60  # buckets on whole minutes, the partial first one included
    assert body["window"]["step_s"] == 60
    assert panel(body, "rps_by_tenant")["time"] == list(range(first, int(data.now.timestamp()), 60))


async def test_governance_and_quality_figures(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    body = await view(console, tokens.admin, "governance", **window(data))
    denials = Counter(r for e in data.events if e.policy.decision == "deny" for r in e.policy.rule_ids)
    assert {i["label"]: i["value"] for i in panel(body, "denials_by_rule")["items"]} == dict(denials)
    pii: Counter[str] = Counter()
    for e in data.events:
        pii.update(e.pii_counts)
    assert {i["label"]: i["value"] for i in panel(body, "pii_by_entity")["items"]} == dict(pii)
    tox = [s for s in data.scores if s["scorer"] == "toxicity"]
    body = await view(console, tokens.admin, "quality", threshold="0.5", **window(data))
    dist = {s["name"]: sum(s["values"]) for s in panel(body, "toxicity_distribution")["series"]}
    assert dist == dict(Counter(s["target"] for s in tox))
    responses = [s["value"] for s in tox if s["target"] == "response"]
    assert panel(body, "toxic_responses")["value"] == pytest.approx(sum(v >= 0.5 for v in responses) / len(responses))
    worst = panel(body, "worst")
    cols = [c["key"] for c in worst["columns"]]
    toxic = [r for r in worst["rows"] if r[cols.index("problem")] == "toxic"]
    assert toxic and all(r[cols.index("score")] >= 0.5 for r in toxic)
    assert {r[cols.index("event_id")] for r in worst["rows"]} <= {e.event_id for e in data.events}
    assert next(c for c in worst["columns"] if c["key"] == "event_id")["link"] == "audit"
    strict = await view(console, tokens.admin, "quality", threshold="0.9", **window(data))
    assert panel(strict, "toxic_responses")["value"] < panel(body, "toxic_responses")["value"]


async def test_drift_and_alerts(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    body = await view(console, tokens.admin, "drift", field="response", metric="mmd2_pvalue", **window(data))
    per_window = panel(body, "drift_metric")
    assert len(per_window["series"]) == 6 and "mmd2_pvalue" in per_window["title"]
    globex = next(s for s in per_window["series"] if s["name"] == "globex / gpt-4o")
    assert min(v for v in globex["values"] if v is not None) == pytest.approx(0.002)
    assert len(panel(body, "drifted_table")["rows"]) == 4  # 2 windows x 2 fields
    body = await view(console, tokens.admin, "alerts", **window(data))
    assert panel(body, "firing")["value"] == 2
    rows = panel(body, "alerts")["rows"]
    assert [r[1] for r in rows] == ["firing", "firing", "resolved", "resolved"]
    # an admin filtering by tenant also sees global alerts; a tenant token only its tenant's
    body = await view(console, tokens.admin, "alerts", tenant="acme", **window(data))
    assert {r[3] for r in panel(body, "alerts")["rows"]} == {"toxic-answers", "monthly-budget"}
    body = await view(console, tokens.acme, "alerts", **window(data))
    assert [r[3] for r in panel(body, "alerts")["rows"]] == ["toxic-answers"] and panel(body, "firing")["value"] == 0


async def test_tenant_scope(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    count = Counter(e.tenant for e in data.events)
    body = await view(console, tokens.acme, "traffic", **window(data))
    assert panel(body, "requests")["value"] == count["acme"]
    assert [s["name"] for s in panel(body, "rps_by_tenant")["series"]] == ["acme"]
    assert {r[0] for r in panel(body, "breakdown")["rows"]} == {"acme"}
    for name in VIEWS:  # no view leaks another tenant's name
        text = str(await view(console, tokens.acme, name, **window(data)))
        assert "globex" not in text and "initech" not in text, name
    for tenant in ("globex", "acme,globex"):
        resp = await console.get("/api/dashboard/traffic", params={"tenant": tenant}, headers=bearer(tokens.acme))
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    resp = await console.get("/api/dashboard/filters", params={"tenant": "globex"}, headers=bearer(tokens.acme))
    assert resp.status == 403
    body = await view(console, tokens.multi, "traffic", tenant="globex", **window(data))
    assert panel(body, "requests")["value"] == count["globex"]
    body = await view(console, tokens.multi, "traffic", **window(data))
    assert panel(body, "requests")["value"] == count["acme"] + count["globex"]


async def test_filter_options(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    get = lambda token, **p: console.get("/api/dashboard/filters", params={**window(data), **p},  # noqa: E731
                                         headers=bearer(token))
    body = await (await get(tokens.admin, model="gpt-4o")).json()
    assert body["tenants"] == sorted(TENANTS) and body["models"] == sorted({e.request_model for e in data.events})
    assert (await (await get(tokens.acme)).json())["tenants"] == ["acme"]
    old = {"from": (data.now - timedelta(days=30)).isoformat(), "to": (data.now - timedelta(days=29)).isoformat()}
    assert (await (await get(tokens.admin, **old)).json())["tenants"] == []


async def test_values_are_parameters_not_sql(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    for evil in ("acme' OR '1'='1", "acme') OR 1=1 --", "x}{start:String}"):
        body = await view(console, tokens.admin, "traffic", tenant=evil, **window(data))
        assert panel(body, "requests")["value"] == 0
        body = await view(console, tokens.admin, "governance", model=evil, **window(data))
        assert all(not p.get("series") and not p.get("items") and not p.get("rows") for p in body["panels"])


async def test_bad_parameters_are_400(console: TestClient, demo: Demo) -> None:
    _, data, tokens = demo
    bad = [{"from": "yesterday"}, {"from": data.now.isoformat(), "to": (data.now - timedelta(hours=1)).isoformat()},
           {"from": (data.now - timedelta(days=500)).isoformat()}, {"threshold": "2"}, {"threshold": "x"},
           {"field": "both"}, {"metric": "DROP"}, {"bogus": "1"}, {"start": data.now.isoformat()},
           {"tenant": ",".join(f"t{i}" for i in range(60))}]
    for params in bad:
        resp = await console.get("/api/dashboard/quality", params=params, headers=bearer(tokens.admin))
        assert resp.status == 400, params
        assert (await resp.json())["error"]["code"] == "invalid_request"
    resp = await console.get("/api/dashboard/nope", headers=bearer(tokens.admin))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


def test_step_follows_the_range() -> None:
    steps = {k: choose_step(timedelta(seconds=s)) for k, s in
             {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "90d": 90 * 86400}.items()}
    assert steps == {"15m": 60, "1h": 60, "6h": 300, "24h": 900, "7d": 7200, "90d": 86400}


async def test_page_and_static_files(console: TestClient) -> None:
    resp = await console.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert '<script type="module" src="/static/js/main.js">' in await resp.text()
    for path in ("/static/js/main.js", "/static/vendor/uplot/uPlot.esm.js"):
        resp = await console.get(path)
        assert resp.status == 200 and "javascript" in resp.content_type, path  # ES modules need a JS MIME type
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/../api.py", "/static/%2e%2e/api.py", "/static/vendor/../../page.py"):
        assert (await console.get(path)).status in (403, 404), path


def test_static_files_are_packaged() -> None:
    """A non-editable install must carry every file the page loads (pyproject package-data)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "consumers"
    globs = [p for p in patterns.get("consumers", [])]
    matched = {f for g in globs for f in package.glob(g) if f.is_file()}
    files = {f for f in STATIC_DIR.rglob("*") if f.is_file()}
    assert files and files <= matched, sorted(str(f.relative_to(STATIC_DIR)) for f in files - matched)
    assert (STATIC_DIR / "vendor" / "uplot" / "LICENSE").is_file()
