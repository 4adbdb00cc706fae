"""Through the gateway: a tenant's repeated texts (system prompt, history) are answered from the PII
detection cache; another tenant's identical texts are analysed afresh (no cross-tenant timing signal)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from gateway.auth.keys import create_key

from .conftest import GatewayFactory, deployment, upstream_bodies
from .test_limits_reload import post

pytestmark = pytest.mark.timeout(60)
SYSTEM = "You are the support bot of ACME. Escalations go to ops@acme.com or +1 212-555-0199."
USER = "My order 4411-22 arrived broken, mail me at ann@example.com"
BODY = {"model": "m", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]}


def _lookups(result: str) -> float:
    return REGISTRY.get_sample_value("gatewatch_pii_cache_lookups_total", {"result": result}) or 0.0


async def test_repeated_texts_hit_within_a_tenant_only(make_gateway: GatewayFactory, mock) -> None:  # type: ignore[no-untyped-def]
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}})
    other, _ = create_key(g.settings.keys_file, "globex")
    await asyncio.sleep(1.2)  # the key file reloader picks up the new key
    h0 = _lookups("hit")
    status, _, _ = await post(g.base_url, g.key, BODY)
    assert status == 200
    h1 = _lookups("hit")
    status, _, _ = await post(g.base_url, g.key, BODY)
    assert status == 200
    h2 = _lookups("hit")
    assert h2 - h1 >= 2  # the system prompt and the user message, as they were analysed the first time
    status, _, _ = await post(g.base_url, other, BODY)
    assert status == 200
    assert _lookups("hit") == h2  # the same texts from another tenant: no hit
    assert h1 - h0 == 0  # nothing was cached before the first request
    bodies = upstream_bodies(mock)
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]  # cached or not, redacted alike
    assert "ops@acme.com" not in str(bodies) and "ann@example.com" not in str(bodies)
    assert "<EMAIL_ADDRESS>" in str(bodies[1]) or "EMAIL_ADDRESS" in str(bodies[1])
    for ev in g.emitter.events:
        assert "ann@example.com" not in str(ev) and "212-555-0199" not in str(ev)


def test_policy_can_turn_the_cache_off() -> None:
    from gateway.governance.compiled import redaction_config
    from gateway.governance.policy import PIIPolicy

    assert redaction_config(PIIPolicy()).cache_entries == 8192
    assert redaction_config(PIIPolicy(cache_entries=0)).cache_entries == 0
    with pytest.raises(ValueError):
        PIIPolicy(cache_entries=-1)
