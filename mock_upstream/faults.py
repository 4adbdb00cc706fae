"""Fault injection: configured rates drawn from a seeded PRNG, or the ``x-mock-fault`` header.

Header grammar (comma-separated directives, e.g. ``slow-first-byte:200,503``):

- ``500`` / ``502`` / ``503`` / ``429`` (any 400-599): answer that status with an OpenAI error body
- ``hang``: accept the request and never answer (until the client leaves or the server stops)
- ``disconnect``: streams send 2 events then drop the connection; non-streams close without a response
- ``slow-first-byte:<ms>``: wait that long before the first byte
- ``fail-times:<n>:<status>:<key>``: the first n requests carrying ``key`` get ``status``, later ones succeed

A request with a fault directive in its header draws nothing from the PRNG, so header-driven tests do not
shift the seeded sequence.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from mock_upstream.config import MockConfig

HANG = "hang"
DISCONNECT = "disconnect"
MAX_FAIL_KEYS = 10_000


class FaultHeaderError(ValueError):
    """The ``x-mock-fault`` header does not parse."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: ``fault`` is a status (int), ``"hang"``, ``"disconnect"`` or None."""

    fault: int | str | None = None
    delay_ms: float = 0.0


NO_FAULT = Plan()


def _status(text: str) -> int:
    if not (text.isdigit() and 400 <= int(text) <= 599):
        raise FaultHeaderError(f"not an HTTP error status: {text!r}")
    return int(text)


class FaultInjector:
    """Decides the fault for each request. Keeps the PRNG and the ``fail-times`` counters."""

    def __init__(self, cfg: MockConfig) -> None:
        self._cfg = cfg
        self._active = any(cfg.fault_rates)
        self._rng = random.Random(cfg.seed)
        self._seen: OrderedDict[str, int] = OrderedDict()  # fail-times key -> requests seen (bounded)

    def reset(self) -> None:
        self._rng = random.Random(self._cfg.seed)
        self._seen.clear()

    def plan(self, header: str | None) -> Plan:
        """The plan for one request; raises FaultHeaderError for a malformed header."""
        if header:
            return self._from_header(header)
        if self._active:
            return Plan(self._draw())
        return NO_FAULT

    def _draw(self) -> int | str | None:
        cfg = self._cfg
        x = self._rng.random()
        for rate, fault in zip(cfg.fault_rates, (cfg.error_status, 429, HANG, DISCONNECT), strict=True):
            if x < rate:
                return fault
            x -= rate
        return None

    def _from_header(self, header: str) -> Plan:
        fault: int | str | None = None
        delay = 0.0
        for directive in header.split(","):
            name, _, arg = directive.strip().partition(":")
            if name in (HANG, DISCONNECT) and not arg:
                fault = name
            elif name == "slow-first-byte":
                try:
                    delay += float(arg)
                except ValueError:
                    raise FaultHeaderError(f"slow-first-byte needs milliseconds, got {arg!r}") from None
            elif name == "fail-times":
                fault = self._fail_times(arg) or fault
            else:
                fault = _status(name if not arg else directive)
        return Plan(fault, delay)

    def _fail_times(self, arg: str) -> int | None:
        times, _, rest = arg.partition(":")
        status, _, key = rest.partition(":")
        if not times.isdigit() or not key:
            raise FaultHeaderError(f"expected fail-times:<n>:<status>:<key>, got fail-times:{arg}")
        code = _status(status)
        seen = self._seen.pop(key, 0) + 1
        self._seen[key] = seen
        if len(self._seen) > MAX_FAIL_KEYS:
            self._seen.popitem(last=False)
        return code if seen <= int(times) else None
