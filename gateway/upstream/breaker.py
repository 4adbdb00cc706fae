"""Per-deployment circuit breaker: closed -> open after N consecutive failures -> half-open after a
cooldown (one trial request at a time) -> closed on success, open again on failure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int
    cooldown_s: float
    failures: int = 0
    opened_at: float = 0.0
    state: State = "closed"
    trial_in_flight: bool = False
    clock: object = field(default=time.monotonic, repr=False)

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator,no-any-return]

    def allow(self) -> bool:
        """May a request go to this deployment now? (Reserves the half-open trial slot.)"""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._now() - self.opened_at < self.cooldown_s:
                return False
            self.state = "half_open"
            self.trial_in_flight = False
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def available(self) -> bool:
        """Like allow() but without reserving anything (for listing/ordering)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            return self._now() - self.opened_at >= self.cooldown_s
        return not self.trial_in_flight

    def record_success(self) -> None:
        self.failures = 0
        self.state = "closed"
        self.trial_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self.trial_in_flight = False
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            self.state = "open"
            self.opened_at = self._now()
