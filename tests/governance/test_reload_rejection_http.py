"""Rejected policy files through the running gateway (file poller, real HTTP server, openai client): a broken
new tenant file refuses that tenant (never the default), a broken edit keeps the last good policy, another
tenant's valid change still applies, and /readyz and /metrics show it until the file is fixed."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.app import POLICIES
from gateway.auth.keys import create_key
from gateway.governance.loader import PolicyError
from gateway.governance.metrics import POLICY_REJECTED_FILES, POLICY_RELOAD_FAILURES

from .conftest import GatewayFactory, deployment, upstream_bodies, write_policy
from .test_reload_rejection import BAD_RULE, NER_MISSING, block

pytestmark = pytest.mark.timeout(60)
_mtimes = itertools.count(2_000_000_000)  # every write gets a new mtime, whatever the clock's resolution


def put(home: Path, name: str, policy: dict[str, Any]) -> None:
    t = next(_mtimes)
    os.utime(write_policy(home, name, policy), (t, t))


async def until(cond: Callable[[], bool]) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def chat(base: str, key: str, text: str) -> tuple[int, dict[str, Any]]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    async with aiohttp.ClientSession() as s, s.post(base + "/chat/completions", json=body,
                                                    headers={"authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json()


async def get(url: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
        return r.status, text, (await r.json()) if r.content_type == "application/json" else None


async def last_event(g: Any, n: int) -> dict[str, Any]:
    await until(lambda: len(g.emitter.events) >= n)
    return g.emitter.events[-1]  # type: ignore[no-any-return]


async def test_rejected_files_fail_closed_and_do_not_freeze_others(make_gateway: GatewayFactory, mock,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    home = tmp_path / "home"
    put(home, "default", {"version": "d1"})
    put(home, "beta", {"version": "b1"})
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}}, governance={"reload_poll_s": 0.05})
    acme_key = g.key  # tenant acme: no file yet, served by the default
    beta_key, _ = create_key(g.settings.keys_file, "beta")
    await asyncio.sleep(1.2)  # the key file reloader picks up the new key
    store = g.runner.app[POLICIES]
    failures = POLICY_RELOAD_FAILURES._value.get()

    # a new acme file that needs a NER model that is not installed, and a new block rule for beta
    put(home, "acme", NER_MISSING)
    put(home, "beta", block("b2", "apollo"))
    await until(lambda: "acme.yaml" in store.rejected and "no-apollo" in str(store.current.for_tenant("beta")))
    assert POLICY_RELOAD_FAILURES._value.get() > failures and POLICY_REJECTED_FILES._value.get() == 1

    n = len(g.emitter.events)
    status, body = await chat(g.base_url, acme_key, "Hi, I am Ann Lee, mail ann@example.com")
    assert status == 503 and body["error"]["code"] == "policy_unavailable"
    assert body["error"]["type"] == "server_error" and "refused" in body["error"]["message"]
    assert "acme.yaml" not in body["error"]["message"] and "gatewatch_missing_model" not in body["error"]["message"]
    assert upstream_bodies(mock) == []  # not served by the default: nothing reached the upstream
    ev = await last_event(g, n + 1)
    assert ev["tenant"] == "acme" and ev["status"] == 503 and ev["outcome"] == "denied"
    assert ev["policy"]["decision"] == "deny" and ev["policy"]["rule_ids"] == ["policy.rejected"]
    assert ev["capture"] == "none" and ev["request"]["messages"] == [] and "Ann Lee" not in str(ev)
    with pytest.raises(openai.InternalServerError) as exc:
        await g.client(acme_key).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 503 and exc.value.code == "policy_unavailable"

    status, body = await chat(g.base_url, beta_key, "tell me about apollo")
    assert status == 403 and body["error"]["code"] == "pattern_blocked"  # beta's change applied meanwhile
    assert (await last_event(g, n + 3))["policy"]["policy_version"] == "b2"

    status, text, ready = await get(g.url + "/readyz")
    assert status == 200 and ready["status"] == "ready"  # a rejected file is a detail, not unreadiness
    assert ready["policy"]["rejected_files"] == 1 and ready["policy"]["default_version"] == "d1"
    assert ready["policy"]["rejected"]["acme.yaml"]["effect"] == "refused"
    assert "gatewatch_missing_model" not in text and "not installed" not in text
    assert "gatewatch_policy_rejected_files 1.0" in (await get(g.url + "/metrics"))[1]

    # a broken edit of beta: beta keeps b2 (its block rule still applies)
    put(home, "beta", BAD_RULE)
    await until(lambda: "beta.yaml" in store.rejected)
    status, body = await chat(g.base_url, beta_key, "tell me about apollo")
    assert status == 403 and (await last_event(g, n + 4))["policy"]["policy_version"] == "b2"
    ready = (await get(g.url + "/readyz"))[2]["policy"]
    assert ready["rejected_files"] == 2
    assert ready["rejected"]["beta.yaml"] | {"since": None} == {
        "tenant": "beta", "effect": "kept_last_good", "version": "b2", "errors": 1, "since": None}

    # fixing both files clears the rejections
    put(home, "acme", {"version": "a1"})
    put(home, "beta", block("b3", "apollo"))
    await until(lambda: not store.rejected and store.current.for_tenant("beta").version == "b3")
    status, body = await chat(g.base_url, acme_key, "hello")
    assert status == 200 and (await last_event(g, n + 5))["policy"]["policy_version"] == "a1"
    assert len(upstream_bodies(mock)) == 1
    ready = (await get(g.url + "/readyz"))[2]["policy"]
    assert ready["rejected_files"] == 0 and ready["rejected"] == {}
    assert POLICY_REJECTED_FILES._value.get() == 0


async def test_invalid_file_at_startup_still_fails(make_gateway: GatewayFactory, mock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same file at start-up stops the gateway from starting (`gatewatch up` exits 1)."""
    put(tmp_path / "home", "acme", NER_MISSING)
    with pytest.raises(PolicyError, match="gatewatch_missing_model"):
        await make_gateway({"m": {"deployments": [deployment(mock)]}})
