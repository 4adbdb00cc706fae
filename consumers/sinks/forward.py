"""The scorer child's sink for an embedded (chdb) warehouse: each write goes to the worker process, which
owns the chdb directory, and returns once the worker has inserted it (``consumers/child``).

One ``write`` message per sink write (every table, chunked at ``max_rows_per_insert`` like
``ClickHouseSink``), answered by one ``ack``. The parent's insert errors come back classified as the
parent's ``ClickHouseSink`` classified them; a lost parent, a closed channel or no answer within
``timeout_s`` is a ``TransientError``: the pipeline pauses, retries and commits nothing, as with a
failing warehouse.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from consumers.child.channel import Channel, ChannelError
from consumers.child.codec import encode_table
from consumers.contracts import PermanentError, TableRows, TransientError
from consumers.sinks.clickhouse import chunks

log = logging.getLogger(__name__)


class ParentLink:
    """The child's end of the channel: numbered requests, answers routed back by ``run()``."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.lost = asyncio.Event()  # the parent closed the channel (or died)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def run(self) -> None:
        """Read answers until the channel ends; then every waiting request fails (transiently)."""
        try:
            while (msg := await self.channel.recv()) is not None:
                fut = self._pending.get(msg.get("id", -1))
                if msg.get("t") == "ack" and fut is not None and not fut.done():
                    fut.set_result(msg)
        except ChannelError as exc:
            log.error("the worker process broke the channel protocol (%s)", exc)
        finally:
            self.lost.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(TransientError("lost the worker process"))

    async def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.lost.is_set():
            raise TransientError("lost the worker process")
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            try:
                await self.channel.send({**msg, "id": rid})
            except OSError as exc:
                raise TransientError(f"cannot reach the worker process: {exc!r}") from exc
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise TransientError(f"no answer from the worker process within {timeout:.0f}s") from None
        finally:
            self._pending.pop(rid, None)

    async def send(self, msg: dict[str, Any]) -> None:
        """One-way (status); raises ``OSError`` when the parent is gone."""
        await self.channel.send(msg)


class ForwardingSink:
    def __init__(self, link: ParentLink, pipeline: str, *, max_rows_per_insert: int = 50_000,
                 timeout_s: float = 120.0) -> None:
        if max_rows_per_insert <= 0:
            raise ValueError("max_rows_per_insert must be positive")
        self.link = link
        self.pipeline = pipeline
        self.max_rows_per_insert = max_rows_per_insert
        self.timeout_s = timeout_s

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def write(self, rows: TableRows) -> None:
        try:
            tables = [encode_table(table, chunk) for table, table_rows in rows.items()
                      for chunk in chunks(table_rows, self.max_rows_per_insert) if chunk]
        except (TypeError, ValueError) as exc:  # a value the warehouse could not take either
            raise PermanentError(f"cannot encode rows: {exc}") from exc
        if not tables:
            return
        reply = await self.link.request({"t": "write", "pipeline": self.pipeline, "tables": tables},
                                        self.timeout_s)
        if not reply.get("ok"):
            error = PermanentError if reply.get("kind") == "permanent" else TransientError
            raise error(str(reply.get("error", "insert failed in the worker process")))
