"""Contracts between pipeline parts (source -> scorers -> sink). Shared by the framework and the scorers.

A scorer is pure with respect to I/O: it turns a batch of validated events into rows for warehouse
tables. It may hold models (loaded in ``start``, never at import time) and must run inference off the
event loop (``asyncio.to_thread``) so consumer-group heartbeats keep flowing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from schemas.events import Event

Row = dict[str, Any]
# table name ("scores", "drift", ...) -> rows for that table
TableRows = dict[str, list[Row]]


class Scorer(Protocol):
    name: str  # e.g. "toxicity", "factuality", "drift"

    async def start(self) -> None: ...  # load models (idempotent)

    async def score(self, events: Sequence[Event]) -> TableRows: ...

    async def stop(self) -> None: ...  # idempotent, safe before start


class TransientError(Exception):
    """Retry with backoff; do not commit."""

    retriable = True


class PermanentError(Exception):
    """Dead-letter the input with the reason; commit it."""

    retriable = False
