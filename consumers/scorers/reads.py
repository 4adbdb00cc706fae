"""Named warehouse reads for scorers that keep state there (drift baselines).

A scorer never opens the warehouse itself: it gets a ``WarehouseReads`` and asks for a read by name with
JSON-ready arguments, and gets a JSON-ready answer. Two implementations, one contract:

- ``LocalReads``: runs the read on a client of the worker's own warehouse (in the worker, or in the scorer
  child with a ClickHouse server DSN), off the event loop;
- ``consumers.child.reads.ParentReads``: the scorer child with an embedded (chdb) warehouse, which it
  cannot open (one process per data directory), sends the read to the worker over the channel, and the
  worker answers it with ``LocalReads``.

Every failure is a ``TransientError`` (the pipeline pauses and retries the batch, nothing is committed):
a scorer that cannot read its state must not go on without it, and nothing in a read is the events' fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from consumers.contracts import TransientError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

ReadFn = Callable[["Client", dict[str, Any]], Any]


class WarehouseReads(Protocol):
    async def read(self, name: str, args: dict[str, Any]) -> Any: ...  # raises TransientError


def read_function(name: str) -> ReadFn:
    """The read called ``name`` (its module imported on first use); KeyError when there is none."""
    if name.startswith("drift."):
        from consumers.scorers.drift_store import READS

        return READS[name]
    raise KeyError(name)


class LocalReads:
    """Reads on one client of the warehouse (made on first use), one at a time, in a thread."""

    def __init__(self, client_factory: Callable[[], Client]) -> None:
        self._factory = client_factory
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def read(self, name: str, args: dict[str, Any]) -> Any:
        try:
            fn = read_function(name)
        except KeyError:
            raise TransientError(f"no warehouse read named {name!r}") from None
        async with self._lock:
            try:
                if self._client is None:
                    self._client = self._factory()
                return await asyncio.to_thread(fn, self._client, args)
            except Exception as exc:
                raise TransientError(f"warehouse read {name}: {type(exc).__name__}: {exc}") from exc
