"""What the mock saw, for tests: request counts per endpoint, injected faults, the last requests.

Held in memory only (nothing is logged). The ring buffer keeps references to the parsed bodies and
the (read-only) headers — including ``Authorization``, so a test can check which key the gateway sent.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from aiohttp import web


class MockState:
    """Counters and a bounded ring buffer of recent requests; ``reset()`` clears both."""

    def __init__(self, record_last: int) -> None:
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.recent: deque[tuple[str, str, str, float, Any, Any]] = deque(maxlen=max(record_last, 0))
        self._record = record_last > 0

    def record(self, endpoint: str, request: web.Request, body: Any) -> None:
        self.requests[endpoint] += 1
        if self._record:  # a tuple now, a dict in snapshot(): the hot path stays cheap
            self.recent.append((endpoint, request.method, request.raw_path, time.time(), request.headers, body))

    def record_fault(self, fault: int | str) -> None:
        self.faults[str(fault)] += 1

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.recent.clear()

    def snapshot(self, last: int | None = None) -> dict[str, Any]:
        entries = list(self.recent)
        if last is not None:
            entries = entries[-last:] if last > 0 else []
        recent = [
            {
                "endpoint": endpoint,
                "method": method,
                "path": path,
                "time": at,
                "headers": {str(k): v for k, v in headers.items()},
                "body": body,
            }
            for endpoint, method, path, at, headers, body in entries
        ]
        return {
            "total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "faults": dict(self.faults),
            "recent": recent,
        }
