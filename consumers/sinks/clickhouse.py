"""ClickHouse sink: one insert per table per batch (chunked), through ``asyncio.to_thread``.

``insert_columns`` inserts one chunk that is already column-oriented: the worker uses it for the rows its
scorer child process forwards (``consumers/child``), so both paths send the driver the same call.

Idempotent by construction: every table is a ReplacingMergeTree keyed by the fact's id, so writing a
batch twice (redelivery after a crash between write and commit) leaves one row per fact under FINAL.

Write time: the columns in ``write_time_columns`` (``scores.scored_at``) get the time of the insert,
stamped just before each insert call (on both paths, so also for the scorer child's forwarded rows),
whatever the scorer put there: a score's ``scored_at`` says when it reached the warehouse, not when its
batch began (which understated freshness by the scorer's batch time). It is also the table's
ReplacingMergeTree version, so the last write of a fact wins.

Driver exceptions are mapped by class (and, for server errors, by numeric code) at this boundary:
- ``TransientError`` (retry, do not commit): network/operational errors, server overload, timeouts,
  and unknown server errors such as a missing table — better to stall and page than to dead-letter.
- ``PermanentError`` (dead-letter): the data cannot be written (type, range, parse errors).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)

from consumers.contracts import PermanentError, Row, TableRows, TransientError
from consumers.warehouse import DATABASE

log = logging.getLogger(__name__)

# server error codes that mean "this data can never be inserted as is"
_BAD_DATA_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    16,  # NO_SUCH_COLUMN_IN_TABLE
    26, 27, 38, 41, 72,  # CANNOT_PARSE_* (quoted string, assertion, date, datetime, number)
    43,  # ILLEGAL_TYPE_OF_ARGUMENT
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    117,  # INCORRECT_DATA
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
})
WRITE_TIME_COLUMNS: Mapping[str, str] = {"scores": "scored_at"}  # table -> column stamped at insert time


def classify(exc: BaseException) -> type[TransientError] | type[PermanentError]:
    """The contract error a driver exception maps to."""
    if isinstance(exc, DataError | IntegrityError | NotSupportedError | ValueError | TypeError | struct.error):
        return PermanentError
    if isinstance(exc, OperationalError | InterfaceError | InternalError | OSError | TimeoutError):
        return TransientError
    if isinstance(exc, ProgrammingError):
        return PermanentError if getattr(exc, "code", None) in _BAD_DATA_CODES else TransientError
    if isinstance(exc, DatabaseError):
        return PermanentError if exc.code in _BAD_DATA_CODES else TransientError
    return TransientError


def columns_of(rows: Sequence[Row]) -> list[str]:
    """Column names in order of first appearance; a row without a column inserts NULL/default there."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def to_columns(rows: Sequence[Row]) -> tuple[list[str], list[list[Any]]]:
    """Column names and one value list per column (column-oriented inserts are ~1.4x faster here)."""
    columns = columns_of(rows)
    return columns, [[row.get(c) for row in rows] for c in columns]


def chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class ClickHouseSink:
    def __init__(self, client_factory: Callable[[], Client], *, database: str = DATABASE,
                 max_rows_per_insert: int = 50_000,
                 write_time_columns: Mapping[str, str] = WRITE_TIME_COLUMNS) -> None:
        if max_rows_per_insert <= 0:
            raise ValueError("max_rows_per_insert must be positive")
        self.client_factory = client_factory
        self.write_time_columns = dict(write_time_columns)
        self.database = database
        self.max_rows_per_insert = max_rows_per_insert
        self._client: Client | None = None
        self._lock = asyncio.Lock()  # one insert at a time per client

    async def start(self) -> None:
        if self._client is None:
            self._client = self.client_factory()

    async def stop(self) -> None:
        self._client = None  # the Warehouse that made it closes it

    async def write(self, rows: TableRows) -> None:
        client = self._require()
        async with self._lock:
            for table, table_rows in rows.items():
                for chunk in chunks(table_rows, self.max_rows_per_insert):
                    await self._insert(client, table, *to_columns(chunk))

    async def insert_columns(self, table: str, columns: list[str], data: list[list[Any]]) -> None:
        """One insert of column-oriented data (``to_columns`` of at most ``max_rows_per_insert`` rows)."""
        client = self._require()
        async with self._lock:
            await self._insert(client, table, columns, data)

    def _require(self) -> Client:
        if self._client is None:
            raise TransientError("sink not started")
        return self._client

    async def _insert(self, client: Client, table: str, columns: list[str], data: list[list[Any]]) -> None:
        n = len(data[0]) if data else 0
        if not n:
            return
        stamp = self.write_time_columns.get(table)
        if stamp is not None and stamp in columns:
            i = columns.index(stamp)
            data = [*data[:i], [datetime.now(UTC)] * n, *data[i + 1:]]
        try:
            await asyncio.to_thread(client.insert, f"{self.database}.{table}", data, column_names=columns,
                                    column_oriented=True)
        except Exception as exc:
            error = classify(exc)
            raise error(f"insert into {table} ({n} rows): {type(exc).__name__}: {exc}") from exc
