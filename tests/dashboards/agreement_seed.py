"""Known traffic for the metric agreement test: a 30-minute window on whole minutes with every event strictly
inside a minute (no rendering can disagree on a boundary row), plus rows just outside it that every
rendering must leave out. Streams and non-streams both carry a ``ttft_ms`` (as the gateway writes them),
answers without context have NULL factuality scores, some denials are PII blocks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.archiver import event_to_row
from schemas.events import Event

TENANTS = ("acme", "globex", "initech")
MODELS = ("gpt-4o-mini", "llama-3.1-8b")
OUTCOMES = ("completed", "completed", "failed", "completed", "denied", "completed", "failed")
SCORE_COLUMNS = ("event_id", "ts", "tenant", "request_model", "scorer", "metric", "target", "value", "label",
                 "backend", "model", "model_version")


@dataclass(frozen=True)
class Span:
    start: datetime  # whole minutes
    end: datetime


def span() -> Span:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    return Span(end - timedelta(minutes=30), end)


def _event(i: int, ts: datetime) -> Event:
    outcome = OUTCOMES[i % len(OUTCOMES)]
    failed, denied = outcome == "failed", outcome == "denied"
    rules = ["pii.input.block.US_SSN"] if denied and i % 2 else ["injection"] if denied else []
    return Event.model_validate(dict(
        event_id=f"ev-{uuid.uuid4()}", request_id=f"req-{i}", gateway_instance="gw-1", sequence=i,
        ts_start=ts, ts_first_token=ts + timedelta(milliseconds=50 + i), ts_end=ts + timedelta(seconds=1),
        tenant=TENANTS[i % 3], key_id=f"key-{i % 4}", end_user="u", metadata={}, endpoint="chat.completions",
        operation="chat", request_model=MODELS[(i // 3) % 2], response_model="m",
        deployment=None if denied else ("vllm-a", "vllm-b")[i % 2], provider="openai", response_id=f"r-{i}",
        stream=i % 4 != 0, attempts=1, status=403 if denied else 502 if failed else 200, outcome=outcome,
        error_type="policy_denied" if denied else ("upstream_timeout", "budget_exceeded")[i % 2] if failed else None,
        latency_ms=100.0 + (37 * i) % 900, ttft_ms=50.0 + i,
        usage={"input_tokens": 10 + i, "output_tokens": 20 + 2 * i, "total_tokens": 30 + 3 * i},
        cost_usd=0.0001 * (i % 13 + 1), capture="full",
        request={"messages": [{"role": "user", "content": f"q{i}"}], "context": [], "params": {}},
        response={"text": f"a{i}", "finish_reasons": ["stop"]},
        policy={"decision": "deny" if denied else ("allow", "flag")[i % 5 == 0], "rule_ids": rules,
                "reason": None, "policy_version": "v3"},
        pii_counts={"EMAIL_ADDRESS": 1 + i % 2, "PHONE_NUMBER": 1} if i % 3 == 0 else {},
    ))


def events(s: Span) -> list[Event]:
    inside = [_event(i, s.start + timedelta(minutes=i % 30, seconds=7 + i % 40)) for i in range(180)]
    outside = [_event(200 + i, (s.start - timedelta(minutes=3)) if i % 2 else (s.end + timedelta(minutes=2)))
               for i in range(12)]
    return inside + outside


def _score(ev: Event, scorer: str, metric: str, target: str, value: float | None, label: str) -> dict[str, Any]:
    return {"event_id": ev.event_id, "ts": ev.ts_end, "tenant": ev.tenant, "request_model": ev.request_model or "",
            "scorer": scorer, "metric": metric, "target": target, "value": value, "label": label,
            "backend": "test", "model": "test", "model_version": "1"}


def scores(evs: list[Event]) -> list[dict[str, Any]]:
    rows = []
    for i, ev in enumerate(evs):
        for target in ("prompt", "response"):
            tox, insult = (i * 37 % 100) / 100, (i * 11 % 100) / 100
            rows.append(_score(ev, "toxicity", "toxicity", target, tox, "toxic" if tox >= 0.5 else "ok"))
            rows.append(_score(ev, "toxicity", "insult", target, insult, "toxic" if insult >= 0.8 else "ok"))
            rows.append(_score(ev, "drift", "centroid_distance", target, 0.01 * (i % 9), "window"))
        if i % 6 == 0:  # no context: not applicable
            rows.append(_score(ev, "factuality", "support", "response", None, "not_applicable"))
            rows.append(_score(ev, "factuality", "contradiction", "response", None, "not_applicable"))
            continue
        sup, con = (i * 53 % 100) / 100, (i * 29 % 100) / 100
        rows.append(_score(ev, "factuality", "support", "response", sup, "supported" if sup >= .5 else "unsupported"))
        rows.append(_score(ev, "factuality", "contradiction", "response", con, "contradicted" if con >= .5 else "ok"))
    return rows


def drift(s: Span) -> list[dict[str, Any]]:
    rows = []
    for w in range(7):  # the last one closes outside the window
        end = s.start + timedelta(minutes=5 * w + 2, seconds=30)
        for tenant in TENANTS:
            for field in ("prompt", "response"):
                drifted = int((w + len(tenant)) % 3 == 0)
                for metric, value in (("centroid_cosine", 0.02 * w), ("mmd2", 0.001 * w),
                                      ("mmd2_pvalue", 0.005 if drifted else 0.4)):
                    rows.append({"window_start": end - timedelta(minutes=5), "window_end": end, "tenant": tenant,
                                 "model": MODELS[w % 2], "field": field, "metric": metric, "value": value,
                                 "baseline_size": 500, "window_size": 200, "drifted": drifted, "backend": "test",
                                 "embed_model": "minilm"})
    return rows


def insert(client: Any, s: Span) -> None:
    evs = events(s)
    rows = [event_to_row(e) for e in evs]
    client.insert("gatewatch.events", [list(r.values()) for r in rows], column_names=list(rows[0]))
    sc = scores(evs)
    client.insert("gatewatch.scores", [[r[c] for c in SCORE_COLUMNS] for r in sc], column_names=SCORE_COLUMNS)
    dr = drift(s)
    client.insert("gatewatch.drift", [list(r.values()) for r in dr], column_names=list(dr[0]))
