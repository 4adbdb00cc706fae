"""Rate limits: token buckets per (scope, id) for requests/min and tokens/min.

``LimiterStore`` is the extension point: the in-memory store enforces per gateway process; a shared
store (Redis + a Lua script doing the same arithmetic) can implement the same two async calls to
enforce across replicas. Buckets refill continuously at ``rate_per_min / 60`` per second up to
``rate_per_min`` (so a full minute's allowance may burst).

Tokens are only known after the answer: a request is admitted while the token bucket is positive and
charged its real usage afterwards (the bucket may go negative; the next requests wait it off).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class LimiterStore(Protocol):
    async def take(self, key: str, rate_per_min: float, amount: float, now: float | None = None) -> float:
        """Take ``amount`` if the bucket holds that much (0 returned) else take nothing and return the
        seconds until it would. ``amount`` 0 means "admit while the bucket is positive"."""
        ...

    async def charge(self, key: str, rate_per_min: float, amount: float, now: float | None = None) -> None:
        """Take ``amount`` unconditionally (may go negative)."""
        ...


@dataclass(slots=True)
class _Bucket:
    level: float
    at: float


class InMemoryLimiter:
    """Per-process buckets; buckets idle for over a minute are dropped (they would be full anyway)."""

    def __init__(self, clock: callable = time.monotonic) -> None:  # type: ignore[valid-type]
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._last_sweep = 0.0

    def _bucket(self, key: str, rate: float, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(rate, now)
        else:
            b.level = min(rate, b.level + (now - b.at) * rate / 60.0)
            b.at = now
        if now - self._last_sweep > 60.0:
            self._sweep(now)
        return b

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for k in [k for k, b in self._buckets.items() if now - b.at > 60.0]:
            del self._buckets[k]

    async def take(self, key: str, rate_per_min: float, amount: float, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        b = self._bucket(key, rate_per_min, now)
        need = amount if amount > 0 else 1e-9
        if b.level >= need:
            b.level -= amount
            return 0.0
        return (need - b.level) * 60.0 / rate_per_min

    async def charge(self, key: str, rate_per_min: float, amount: float, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._bucket(key, rate_per_min, now).level -= amount
