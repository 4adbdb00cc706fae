"""The query parameters of ``GET /api/dashboard/*``, validated once and resolved against the caller's token.

``from``/``to`` are ISO-8601 times (``...Z``; naive = UTC) or Unix seconds; the default window is the last
hour. The bucket step is chosen from the window (one-minute resolution at most: the rollups have no finer
grain), aiming at about ``TARGET_POINTS`` points per series. ``tenant`` and ``model`` may repeat or be
comma-separated. A tenant-scoped token may only name its own tenants (403 otherwise) and its scope is
always AND-ed into every query, whatever the filter says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumers.console.tokens import TokenRecord

STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TARGET_POINTS = 120
DEFAULT_RANGE = timedelta(hours=1)
MAX_RANGE = timedelta(days=400)
MAX_FILTER_VALUES = 50
DriftMetric = Literal["centroid_cosine", "mmd2", "mmd2_pvalue"]


class BadParams(ValueError):
    """400: a parameter is missing, malformed or out of range."""


class OutOfScope(PermissionError):
    """403: the token is not scoped to a tenant the request names."""


class DashboardParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")  # "from"/"to" only (the aliases)
    start: datetime | None = Field(None, alias="from")
    end: datetime | None = Field(None, alias="to")
    tenant: tuple[str, ...] = Field((), max_length=MAX_FILTER_VALUES)
    model: tuple[str, ...] = Field((), max_length=MAX_FILTER_VALUES)
    threshold: float = Field(0.5, ge=0, le=1)  # quality: toxicity threshold
    field: Literal["prompt", "response"] = "prompt"  # drift: which text
    metric: DriftMetric = "centroid_cosine"  # drift: which window metric

    @classmethod
    def from_query(cls, pairs: Iterable[tuple[str, str]]) -> DashboardParams:
        data: dict[str, Any] = {}
        lists: dict[str, list[str]] = {"tenant": [], "model": []}
        for key, value in pairs:
            if key in lists:
                lists[key] += [v.strip() for v in value.split(",") if v.strip()]
            elif value != "":
                data[key] = value
        try:
            return cls.model_validate({**data, **{k: tuple(v) for k, v in lists.items()}})
        except ValidationError as exc:
            raise BadParams("; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}"
                                      for e in exc.errors())) from None


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def choose_step(span: timedelta) -> int:
    """The smallest step (seconds) that keeps a series at or under ``TARGET_POINTS`` points."""
    seconds = span.total_seconds()
    return next((s for s in STEPS if seconds / s <= TARGET_POINTS), STEPS[-1])


@dataclass(frozen=True, slots=True)
class Window:
    """A resolved request: the time window and step, the filters and the caller's scope."""

    start: datetime
    end: datetime
    step: int
    tenants: tuple[str, ...]  # the tenant filter ("" = all the caller may see)
    models: tuple[str, ...]
    scope: tuple[str, ...] | None  # None = admin (every tenant)
    threshold: float = 0.5
    field: str = "prompt"
    metric: str = "centroid_cosine"

    @property
    def axis(self) -> list[int]:
        """Bucket starts (Unix seconds, multiples of ``step``) covering [start, end)."""
        first = int(self.start.timestamp()) // self.step * self.step
        return list(range(first, int(self.end.timestamp()), self.step)) or [first]

    def describe(self) -> dict[str, Any]:
        return {"from": iso(self.start), "to": iso(self.end), "step_s": self.step, "tenant": list(self.tenants),
                "model": list(self.models), "scope": None if self.scope is None else list(self.scope)}


def resolve(params: DashboardParams, token: TokenRecord, now: datetime | None = None) -> Window:
    end = _utc(params.end) if params.end else (now or datetime.now(UTC))
    start = _utc(params.start) if params.start else end - DEFAULT_RANGE
    if start >= end:
        raise BadParams("from must be before to")
    if end - start > MAX_RANGE:
        raise BadParams(f"the time range may span at most {MAX_RANGE.days} days")
    outside = [t for t in params.tenant if not token.allows(t)]
    if outside:
        raise OutOfScope(f"this token is not scoped to tenant(s) {', '.join(outside)}")
    return Window(start, end, choose_step(end - start), tuple(dict.fromkeys(params.tenant)),
                  tuple(dict.fromkeys(params.model)), None if token.is_admin else token.tenants,
                  params.threshold, params.field, params.metric)


def iso(ts: datetime) -> str:
    ts = _utc(ts)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def ch_time(ts: datetime) -> str:
    """A ``DateTime64(3, 'UTC')`` query-parameter value."""
    ts = _utc(ts)
    return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}"
