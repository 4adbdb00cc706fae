"""Audit rows (as ``search.jsonable`` renders them) -> JSONL, CSV or Parquet bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from consumers.audit.search import TS_COLUMNS

FORMATS = ("json", "jsonl", "csv", "parquet")
CONTENT_TYPES = {"json": "application/json", "jsonl": "application/x-ndjson", "csv": "text/csv",
                 "parquet": "application/vnd.apache.parquet"}


def to_jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _flat(value: Any) -> Any:
    """Lists, maps and messages become JSON text (CSV cells, Parquet string columns)."""
    return orjson.dumps(value).decode() if isinstance(value, list | dict) else value


def to_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]], header: bool = True) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _flat(row.get(c)) for c in columns])
    return buf.getvalue().encode()


def _parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def to_arrow(columns: Sequence[str], rows: Sequence[dict[str, Any]]):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    arrays = {}
    for c in columns:
        values = [row.get(c) for row in rows]
        if c in TS_COLUMNS:
            arrays[c] = pa.array([_parse_ts(v) for v in values], pa.timestamp("ms", tz="UTC"))
        else:
            flat = [_flat(v) for v in values]
            arrays[c] = pa.array(flat) if any(v is not None for v in flat) else pa.array(flat, pa.string())
    return pa.table(arrays)


def to_parquet(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(to_arrow(columns, rows), buf)
    return buf.getvalue()


def render(fmt: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    if fmt == "jsonl":
        return to_jsonl(rows)
    if fmt == "csv":
        return to_csv(columns, rows)
    if fmt == "parquet":
        return to_parquet(columns, rows)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
