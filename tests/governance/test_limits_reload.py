"""Rate limits (429 + Retry-After), budgets (429 with a clear message), hot reload, invalid file kept out,
and fail closed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from gateway.auth.keys import create_key
from gateway.governance.policy import Budgets, RateLimits
from gateway.redaction import RedactionFailed, Redactor

from .conftest import GatewayFactory, deployment, upstream_bodies, write_policy

pytestmark = pytest.mark.timeout(60)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello, mail me at ann@example.com"}]}


async def post(url: str, key: str, body: dict | None = None) -> tuple[int, dict, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as s, s.post(url + "/chat/completions", json=body or BODY,
                                                    headers={"authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(), dict(r.headers)


async def test_key_rate_limit_429_retry_after(make_gateway: GatewayFactory, mock) -> None:  # type: ignore[no-untyped-def]
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    secret, _rec = create_key(g.settings.keys_file, "acme", rate_limits=RateLimits(requests_per_minute=2))
    await asyncio.sleep(1.2)  # the key file reloader picks up the new key
    got = [await post(g.base_url, secret) for _ in range(3)]
    assert [s for s, _, _ in got] == [200, 200, 429]
    _status, body, headers = got[2]
    assert body["error"]["code"] == "rate_limit_exceeded" and "2 requests per minute" in body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
    ev = g.emitter.events[-1]
    assert ev["policy"]["decision"] == "deny"
    assert ev["policy"]["rule_ids"] == ["rate_limits.key.requests_per_minute"]


async def test_tenant_budget_429(make_gateway: GatewayFactory, mock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_policy(tmp_path / "home", "acme", {"version": "b1", "budgets": {"tokens_per_day": 10}})
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    s1, _, _ = await post(g.base_url, g.key)  # uses more than 10 tokens
    s2, body, headers = await post(g.base_url, g.key)
    assert (s1, s2) == (200, 429)
    assert body["error"]["code"] == "budget_exceeded"
    assert "daily token budget of this tenant (10 tokens) is used up" in body["error"]["message"]
    assert int(headers["Retry-After"]) > 0
    ev = g.emitter.events[-1]
    assert ev["policy"]["rule_ids"] == ["budgets.tenant.tokens_per_day"] and ev["policy"]["policy_version"] == "b1"


async def test_key_budget_survives_restart(make_gateway: GatewayFactory, mock) -> None:  # type: ignore[no-untyped-def]
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    secret, _ = create_key(g.settings.keys_file, "acme", budgets=Budgets(tokens_per_month=5))
    await asyncio.sleep(1.2)
    assert (await post(g.base_url, secret))[0] == 200
    await g.runner.cleanup()  # writes usage.json
    assert g.settings.usage_file.exists()
    g2 = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    status, body, _ = await post(g2.base_url, secret)
    assert status == 429 and "monthly token budget of this API key" in body["error"]["message"]


async def test_reload_on_change_and_invalid_file_keeps_old(make_gateway: GatewayFactory, mock,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    path = write_policy(tmp_path / "home", "acme", {"version": "v1"})
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    assert (await post(g.base_url, g.key))[0] == 200
    write_policy(tmp_path / "home", "acme", {"version": "v2", "models": {"deny": ["m"]}})
    os.utime(path, (1e9, 2e9))
    for _ in range(40):
        await asyncio.sleep(0.1)
        if (await post(g.base_url, g.key))[0] == 403:
            break
    assert g.emitter.events[-1]["policy"]["policy_version"] == "v2"
    # an invalid file: rejected, v2 stays, counted
    from gateway.governance.metrics import POLICY_RELOAD_FAILURES

    before = POLICY_RELOAD_FAILURES._value.get()
    path.write_text("version: v3\nmodels: {deny: 5}\nlimits: {max_tokens: -1}\nbogus: 1\n")
    os.utime(path, (1e9, 3e9))
    for _ in range(40):
        await asyncio.sleep(0.1)
        if POLICY_RELOAD_FAILURES._value.get() > before:
            break
    assert POLICY_RELOAD_FAILURES._value.get() == before + 1
    from gateway.app import POLICIES

    store = g.runner.app[POLICIES]
    assert store.last_error is not None and len(store.last_error.errors) >= 3  # every error at once
    status, _body, _ = await post(g.base_url, g.key)
    assert status == 403 and g.emitter.events[-1]["policy"]["policy_version"] == "v2"


async def test_sighup_reloads(make_gateway: GatewayFactory, mock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_policy(tmp_path / "home", "acme", {"version": "v1"})
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}}, governance={"reload_poll_s": 3600})
    write_policy(tmp_path / "home", "acme", {"version": "v2"})
    import signal

    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(40):
        await asyncio.sleep(0.05)
        await post(g.base_url, g.key)
        if g.emitter.events[-1]["policy"]["policy_version"] == "v2":
            break
    assert g.emitter.events[-1]["policy"]["policy_version"] == "v2"


async def test_fail_closed_when_redaction_breaks(make_gateway: GatewayFactory, mock,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})

    async def boom(self: Redactor, *a: object, **kw: object) -> object:
        raise RedactionFailed("PII redaction failed (engine error)")

    monkeypatch.setattr(Redactor, "redact_many", boom)
    status, body, _ = await post(g.base_url, g.key)
    assert status == 503 and body["error"]["code"] == "redaction_failed"
    assert upstream_bodies(mock) == []
    ev = g.emitter.events[-1]
    assert "ann@example.com" not in str(ev) and ev["request"]["messages"] == []


async def test_fail_closed_on_unexpected_error(make_gateway: GatewayFactory, mock,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})

    async def boom(self: Redactor, *a: object, **kw: object) -> object:
        raise KeyError("surprise")

    monkeypatch.setattr(Redactor, "redact_many", boom)
    status, _body, _ = await post(g.base_url, g.key)
    assert status == 503 and upstream_bodies(mock) == []
    assert "ann@example.com" not in str(g.emitter.events[-1])


async def test_events_redaction_failure_after_the_answer(make_gateway: GatewayFactory, mock,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The event's copy of a non-streamed answer is redacted after the answer is written: if that fails,
    the client keeps its 200, and the event is still emitted, without response text."""
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    import gateway.chain.redaction as stage

    async def boom(*a: object, **kw: object) -> object:
        raise RedactionFailed("PII redaction failed (engine error)")

    monkeypatch.setattr(stage, "events_texts", boom)
    status, body, _ = await post(g.base_url, g.key)
    assert status == 200 and body["choices"][0]["message"]["content"]
    for _ in range(50):
        if g.emitter.events:
            break
        await asyncio.sleep(0.02)
    ev = g.emitter.events[-1]
    assert ev["outcome"] == "completed" and ev["status"] == 200
    assert ev["response"]["text"] == "" and ev["usage"]["total_tokens"]
    assert "ann@example.com" not in str(ev)
