"""Token and cost counters per key and per tenant, per UTC day and calendar month (for budgets).

Per process, in memory; written to ``$GATEWATCH_HOME/usage.json`` every few seconds when it changed and
at stop, and read back at start, so a restart does not reset budgets. Only the current day and month
are kept. With several replicas each enforces its own share (see README).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

log = logging.getLogger(__name__)


def periods(now: datetime) -> tuple[str, str]:
    return _periods(now.year, now.month, now.day)  # called per request: no strftime


@functools.lru_cache(maxsize=4)
def _periods(year: int, month: int, day: int) -> tuple[str, str]:
    return f"d:{year:04d}-{month:02d}-{day:02d}", f"m:{year:04d}-{month:02d}"


def seconds_to_reset(period: str, now: datetime) -> int:
    if period.startswith("d:"):
        end = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (first + timedelta(days=32)).replace(day=1)
    return max(1, int((end - now).total_seconds()) + 1)


class UsageTracker:
    def __init__(self, path: Path | None, flush_s: float = 5.0) -> None:
        self.path = path
        self.flush_s = flush_s
        # "key:<id>" / "tenant:<name>" -> period -> [tokens, cost_usd]
        self._data: dict[str, dict[str, list[float]]] = {}
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    def used(self, scope: str, period: str) -> tuple[float, float]:
        v = self._data.get(scope, {}).get(period)
        return (v[0], v[1]) if v else (0.0, 0.0)

    def add(self, scopes: list[str], tokens: int, cost: float, now: datetime | None = None) -> None:
        if not tokens and not cost:
            return
        for p in periods(now or datetime.now(UTC)):
            for s in scopes:
                v = self._data.setdefault(s, {}).setdefault(p, [0.0, 0.0])
                v[0] += tokens
                v[1] += cost
        self._dirty = True

    # ---- persistence ---------------------------------------------------------------------
    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            raw = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("could not read usage from %s (budgets start from zero): %s", self.path, exc)
            return
        keep = set(periods(datetime.now(UTC)))
        for scope, per in (raw.get("usage") or {}).items():
            for p, (tokens, cost) in per.items():
                if p in keep:
                    self._data.setdefault(scope, {})[p] = [float(tokens), float(cost)]

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        keep = set(periods(datetime.now(UTC)))
        self._data = {s: {p: v for p, v in per.items() if p in keep} for s, per in self._data.items()}
        self._data = {s: per for s, per in self._data.items() if per}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".usage-")
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps({"usage": self._data}))
        os.replace(tmp, self.path)
        self._dirty = False

    async def start(self) -> None:
        self.load()
        self._task = asyncio.create_task(self._flush_loop(), name="usage-flush")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                self.save()
            except OSError as exc:
                log.error("could not write usage to %s: %s", self.path, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            self.save()
        except OSError as exc:
            log.error("could not write usage to %s: %s", self.path, exc)
