"""What every scorer shares: which text of an event is scored, and the ``scores`` row shape."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from consumers.contracts import Row
from schemas.events import Event

Target = Literal["prompt", "response", "exchange"]
NOT_APPLICABLE = "not_applicable"
_CONTEXT_ROLES = frozenset({"system", "developer", "tool", "function"})
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"')\]]*|\n|$)")


def prompt_text(event: Event) -> str | None:
    """The newest end-user input: the last ``user`` message (else the last non-context message)."""
    msgs = [m for m in event.request.messages if m.content]
    for m in reversed(msgs):
        if m.role == "user":
            return m.content
    for m in reversed(msgs):
        if m.role not in _CONTEXT_ROLES and m.role != "assistant":
            return m.content
    return None


def response_text(event: Event) -> str | None:
    return event.response.text or None


def field_text(event: Event, field: str) -> str | None:
    return prompt_text(event) if field == "prompt" else response_text(event)


def context_texts(event: Event) -> list[str]:
    """Grounding the request carried: system/developer/tool messages and retrieved documents."""
    texts = [m.content for m in event.request.messages if m.role in _CONTEXT_ROLES and m.content]
    texts += [m.content for m in event.request.context if m.content]
    return texts


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the sentences of ``text`` (whitespace-trimmed, non-empty)."""
    spans = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end - start >= 3:
            spans.append((start, end))
    return spans


def utcnow() -> datetime:
    return datetime.now(UTC)


class RowMaker:
    """Builds ``scores`` rows for one scorer/backend/model (one ``scored_at`` per batch).

    ``scored_at`` here is the batch's start; ``ClickHouseSink`` replaces it with the insert's time.

    Rows are copies of a per-event template with four fields set (a dict copy is ~3x cheaper than a
    13-key literal per row; a batch of 2,048 events gives ~25k toxicity rows).
    """

    __slots__ = ("_template", "backend", "model", "model_version", "scored_at", "scorer")

    def __init__(self, scorer: str, backend: str, model: str, model_version: str) -> None:
        self.scorer, self.backend, self.model, self.model_version = scorer, backend, model, model_version
        self.scored_at = utcnow()
        self._template: Row = {
            "event_id": None, "ts": None, "tenant": None, "request_model": None, "scorer": scorer,
            "metric": None, "target": None, "value": None, "label": None, "backend": backend, "model": model,
            "model_version": model_version, "scored_at": self.scored_at,
        }

    def event_template(self, event: Event) -> Row:
        r = self._template.copy()
        r["event_id"], r["ts"], r["tenant"] = event.event_id, event.ts_end, event.tenant
        r["request_model"] = event.request_model or ""
        return r

    def row(self, event: Event, metric: str, target: Target, value: float | None, label: str) -> Row:
        r = self.event_template(event)
        r["metric"], r["target"], r["label"] = metric, target, label
        r["value"] = None if value is None else float(value)
        return r

    def rows(
        self, event: Event, target: Target, metrics: Sequence[str], values: Sequence[float | None],
        labels: Sequence[str],
    ) -> list[Row]:
        """One row per metric for one (event, target); ``values`` are Python floats or None."""
        base = self.event_template(event)
        base["target"] = target
        out = []
        for metric, value, label in zip(metrics, values, labels, strict=True):
            r = base.copy()
            r["metric"], r["value"], r["label"] = metric, value, label
            out.append(r)
        return out

    def not_applicable(self, event: Event, metrics: Sequence[str], target: Target, why: str) -> list[Row]:
        return self.rows(event, target, metrics, [None] * len(metrics), [why] * len(metrics))
