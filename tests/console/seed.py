"""Deterministic demo traffic for the console: events, scores, drift windows and alerts relative to ``now``.

Used by the console tests (expected figures are computed from ``Seed``) and by
``scripts/console_screenshot.py``. Everything lies in the 5.5 hours before ``now`` (at least a minute back),
written through the same row builder the archiver uses.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consumers.archiver import event_to_row
from consumers.sinks.clickhouse import columns_of
from schemas.events import Event

TENANTS = {"acme": 0.5, "globex": 0.3, "initech": 0.2}  # share of the traffic
MODELS = {"gpt-4o-mini": (0.15, 0.60, 350.0), "gpt-4o": (2.50, 10.0, 900.0), "llama-3.1-8b": (0.0, 0.0, 500.0)}
DEPLOYMENTS = {"gpt-4o-mini": ("vllm-a", "vllm-b"), "gpt-4o": ("openai",), "llama-3.1-8b": ("vllm-a",)}
ERRORS = (("upstream_timeout", 504), ("upstream_error", 502), ("rate_limit_exceeded", 429))
DENY_RULES = ("prompt-injection", "pii-ssn-block", "model-not-allowed")
SPAN = timedelta(hours=5, minutes=30)  # inside the page's default range (6 h) for a while


@dataclass
class Seed:
    now: datetime
    events: list[Event] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def requests(self, tenant: str | None = None, since: datetime | None = None) -> int:
        """Events of ``tenant`` (all if None) whose minute is at or after ``since``'s minute (the rollup's
        grain, as the dashboard counts them)."""
        floor = since.replace(second=0, microsecond=0) if since else None
        return sum(1 for e in self.events if (tenant is None or e.tenant == tenant)
                   and (floor is None or e.ts_start.replace(second=0, microsecond=0) >= floor))


def _start(rng: random.Random, now: datetime) -> datetime:
    """Traffic with a slow wave, so the charts have a shape."""
    while True:
        back = rng.uniform(60, SPAN.total_seconds())
        if rng.random() < 0.55 + 0.45 * math.sin(back / 5400):
            return now - timedelta(seconds=back)


def _event(rng: random.Random, i: int, now: datetime) -> Event:
    tenant, model = rng.choices(list(TENANTS), list(TENANTS.values()))[0], rng.choice(list(MODELS))
    price_in, price_out, base_ms = MODELS[model]
    start, roll = _start(rng, now), rng.random()
    outcome = "denied" if roll < 0.05 else "failed" if roll < 0.10 else "completed"
    error, status = rng.choice(ERRORS) if outcome == "failed" else (None, 200)
    stream = rng.random() < 0.6
    latency = base_ms * rng.lognormvariate(0, 0.45) if outcome != "denied" else rng.uniform(2, 8)
    tin, tout = rng.randint(40, 900), (rng.randint(20, 600) if outcome == "completed" else 0)
    pii = {k: rng.randint(1, 3) for k, p in (("EMAIL_ADDRESS", 0.15), ("PHONE_NUMBER", 0.08), ("US_SSN", 0.03),
                                              ("CREDIT_CARD", 0.02)) if rng.random() < p}
    if outcome == "denied":
        policy = {"decision": "deny", "rule_ids": [rng.choice(DENY_RULES)], "reason": "blocked by policy"}
    elif "EMAIL_ADDRESS" in pii:
        policy = {"decision": "flag", "rule_ids": ["pii-email"], "reason": "email redacted"}
    else:
        policy = {"decision": "allow", "rule_ids": []}
    return Event.model_validate(dict(
        event_id=f"ev-{uuid.UUID(int=rng.getrandbits(128))}", request_id=f"req-{i:05d}", gateway_instance="gw-1",
        sequence=i, ts_start=start, ts_end=start + timedelta(milliseconds=latency),
        ts_first_token=start + timedelta(milliseconds=latency * 0.3) if stream and outcome == "completed" else None,
        tenant=tenant, key_id=f"key_{tenant}_{rng.randint(1, 2)}", end_user=f"user-{rng.randint(1, 40)}",
        metadata={"purpose": rng.choice(["support", "search", "summaries"])}, endpoint="chat.completions",
        operation="chat", request_model=model, response_model=model,
        deployment=None if outcome == "denied" else rng.choice(DEPLOYMENTS[model]), provider="openai",
        stream=stream, attempts=1 if outcome != "failed" else 3, status=403 if outcome == "denied" else status,
        outcome=outcome, error_type="policy_denied" if outcome == "denied" else error,
        latency_ms=round(latency, 2), ttft_ms=round(latency * 0.3, 2) if stream and outcome == "completed" else None,
        usage={"input_tokens": tin, "output_tokens": tout, "total_tokens": tin + tout},
        cost_usd=round((tin * price_in + tout * price_out) / 1e6, 8), capture="full",
        request={"messages": [{"role": "system", "content": "You are a helpful assistant."},
                              {"role": "user", "content": f"Question {i}: how do I reset my password?"}],
                 "context": [{"role": "document", "content": "Passwords are reset from the account page."}]
                 if i % 2 else [], "params": {"temperature": 0.2}},
        response={"text": f"Answer {i}: open the account page and choose reset." if tout else None,
                  "finish_reasons": ["stop"] if tout else []},
        policy={**policy, "policy_version": "2026-11-27.1"}, pii_counts=pii,
    ))


def _score(ev: Event, scorer: str, metric: str, target: str, value: float | None, label: str) -> dict[str, Any]:
    return {"event_id": ev.event_id, "ts": ev.ts_end, "tenant": ev.tenant, "request_model": ev.request_model or "",
            "scorer": scorer, "metric": metric, "target": target, "value": value, "label": label,
            "backend": "seed", "model": "seed", "model_version": "1"}


def _scores(rng: random.Random, ev: Event, i: int) -> list[dict[str, Any]]:
    out = []
    for target in ("prompt", "response"):
        tox = round(rng.random() ** 6, 4)
        out.append(_score(ev, "toxicity", "toxicity", target, tox, "toxic" if tox >= 0.5 else "ok"))
        out.append(_score(ev, "drift", "centroid_distance", target, round(rng.uniform(0.05, 0.3), 4), "ok"))
    if i % 2 == 0:
        out.append(_score(ev, "factuality", "support", "response", None, "not_applicable"))
    else:
        sup, con = round(1 - rng.random() ** 3, 4), round(rng.random() ** 5, 4)
        out.append(_score(ev, "factuality", "support", "response", sup, "supported" if sup >= .5 else "unsupported"))
        out.append(_score(ev, "factuality", "contradiction", "response", con, "contradicted" if con >= .5 else "ok"))
    return out


def _drift(now: datetime) -> list[dict[str, Any]]:
    out = []
    for w in range(11):
        start = now - timedelta(minutes=30 * (w + 1) + 5)
        for t, tenant in enumerate(TENANTS):
            for m, model in enumerate(("gpt-4o-mini", "gpt-4o")):
                base = 0.015 + 0.006 * t + 0.004 * m
                for fld in ("prompt", "response"):
                    drifted = int(tenant == "globex" and model == "gpt-4o" and w in (1, 2))
                    for metric, value in (("centroid_cosine", base + 0.002 * (w % 4) + 0.08 * drifted),
                                          ("mmd2", base / 20 + 0.0003 * (w % 3) + 0.01 * drifted),
                                          ("mmd2_pvalue", 0.002 if drifted else 0.3 + 0.05 * (w % 5))):
                        out.append({"window_start": start, "window_end": start + timedelta(minutes=5),
                                    "tenant": tenant, "model": model, "field": fld, "metric": metric,
                                    "value": value, "baseline_size": 500, "window_size": 200, "drifted": drifted,
                                    "backend": "seed", "embed_model": "all-MiniLM-L6-v2"})
    return out


def _alerts(now: datetime) -> list[dict[str, Any]]:
    spec = [("high-error-rate", "error_rate", "globex", "firing", "critical", 25, 0.12, 0.05),
            ("toxic-answers", "toxicity_rate", "acme", "resolved", "warning", 140, 0.031, 0.02),
            ("latency-p99", "latency_p99_ms", "initech", "resolved", "warning", 300, 2450.0, 2000.0),
            ("monthly-budget", "budget_consumption", "", "firing", "critical", 50, 0.93, 0.9)]
    return [{"alert_id": f"al-{rule}", "rule_id": rule, "metric": metric,
             "group_key": f"tenant={tenant}" if tenant else "", "group_labels": {"tenant": tenant} if tenant else {},
             "state": state, "value": value, "op": ">", "threshold": thr, "severity": sev,
             "started_at": now - timedelta(minutes=ago), "resolved_at": None if state == "firing"
             else now - timedelta(minutes=ago - 15), "notified_at": now - timedelta(minutes=ago), "labels": {},
             "summary": f"{metric} {value} > {thr}" + (f" for tenant {tenant}" if tenant else "")}
            for rule, metric, tenant, state, sev, ago, value, thr in spec]


def build(now: datetime, n_events: int = 900, seed: int = 7) -> Seed:
    rng = random.Random(seed)
    out = Seed(now.replace(microsecond=0))
    out.events = sorted((_event(rng, i, out.now) for i in range(n_events)), key=lambda e: e.ts_start)
    for i, ev in enumerate(out.events):
        if ev.outcome == "completed":
            out.scores += _scores(rng, ev, i)
    out.drift, out.alerts = _drift(out.now), _alerts(out.now)
    return out


def _insert(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    cols = columns_of(rows)
    client.insert(f"gatewatch.{table}", [[r.get(c) for c in cols] for r in rows], column_names=cols)


def insert(client: Any, seed: Seed) -> None:
    """Write the seed into a migrated warehouse (events first: the rollups fill from their inserts)."""
    _insert(client, "events", [event_to_row(e) for e in seed.events])
    _insert(client, "scores", seed.scores)
    _insert(client, "drift", seed.drift)
    _insert(client, "alerts", seed.alerts)
