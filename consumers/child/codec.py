"""Rows crossing the process boundary as typed columns: orjson only, no pickle, exact round trip.

A sink write is ``table -> rows``; it travels column-oriented, exactly as ``ClickHouseSink`` inserts it
(``to_columns``: column names in order of first appearance, a missing key is None). Each column has a kind:

- ``j``: only None, str, bool, 64-bit int and finite float: plain JSON (orjson round-trips them exactly);
- ``t``: only None and ``datetime``: ISO-8601 text (naive stays naive, an aware value keeps its UTC offset
  and microseconds; a zoneinfo zone arrives as the same instant with a fixed offset);
- ``x``: anything else, value by value with tags: tuples, dicts (Map), UUID, date, Decimal, bytes, big
  ints, NaN/±inf, nested lists, numpy scalars and arrays (as their Python values).

A value of another type raises ``TypeError`` (the sink maps it to ``PermanentError``, as the driver's own
type errors are).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from consumers.contracts import Row
from consumers.sinks.clickhouse import to_columns

NoneType = type(None)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes as a JSON integer
_PLAIN = frozenset({str, bool, int, float})


def column_kind(values: Sequence[Any]) -> str:
    types = {type(v) for v in values}
    types.discard(NoneType)
    if types and types <= {datetime}:
        return "t"
    if not types <= _PLAIN:
        return "x"
    if float in types and not all(math.isfinite(v) for v in values if type(v) is float):
        return "x"
    if int in types and not all(_INT_MIN <= v <= _INT_MAX for v in values if type(v) is int):
        return "x"
    return "j"


def encode_value(v: Any) -> Any:
    """One value, tagged where JSON alone would lose its type (a dict is always a tag: Maps go as pairs)."""
    t = type(v)
    if v is None or t is str or t is bool:
        return v
    if t is int:
        return v if _INT_MIN <= v <= _INT_MAX else {"i": str(v)}
    if t is float:
        return v if math.isfinite(v) else {"f": repr(v)}
    if t is list:
        return [encode_value(x) for x in v]
    if t is tuple:
        return {"tu": [encode_value(x) for x in v]}
    if t is dict:
        return {"m": [[encode_value(k), encode_value(x)] for k, x in v.items()]}
    return _encode_other(v)


def _encode_other(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"dt": datetime.isoformat(v)}
    if isinstance(v, date):
        return {"d": date.isoformat(v)}
    if isinstance(v, UUID):
        return {"u": str(v)}
    if isinstance(v, Decimal):
        return {"dec": str(v)}
    if isinstance(v, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(bytes(v)).decode()}
    for kind in (int, float, str):  # IntEnum, StrEnum, ...: the driver sees their plain value too
        if isinstance(v, kind):
            return encode_value(kind(v))
    if type(v).__module__ == "numpy":  # numpy scalars and arrays: their Python values
        if hasattr(v, "tolist"):
            return encode_value(v.tolist())
    raise TypeError(f"cannot send a {type(v).__name__} value to the parent process")


_TAGS: dict[str, Callable[[Any], Any]] = {
    "i": int, "f": float, "dt": datetime.fromisoformat, "d": date.fromisoformat, "u": UUID, "dec": Decimal,
    "b": base64.b64decode,
    "tu": lambda items: tuple(decode_value(x) for x in items),
    "m": lambda pairs: {decode_value(k): decode_value(x) for k, x in pairs},
}


def decode_value(v: Any) -> Any:
    if type(v) is list:
        return [decode_value(x) for x in v]
    if type(v) is dict:
        ((tag, payload),) = v.items()
        return _TAGS[tag](payload)
    return v


def encode_column(values: list[Any]) -> tuple[str, list[Any]]:
    kind = column_kind(values)
    if kind == "t":
        return kind, [None if v is None else v.isoformat() for v in values]
    if kind == "x":
        return kind, [encode_value(v) for v in values]
    return kind, values


def decode_column(kind: str, values: list[Any]) -> list[Any]:
    if kind == "j":
        return values
    if kind == "t":
        parse = datetime.fromisoformat
        return [None if v is None else parse(v) for v in values]
    if kind == "x":
        return [decode_value(v) for v in values]
    raise ValueError(f"unknown column kind {kind!r}")


def encode_table(table: str, rows: Sequence[Row]) -> dict[str, Any]:
    """One insert's worth of rows as a JSON-ready mapping (``decode_table`` is its inverse)."""
    columns, data = to_columns(rows)
    kinds, encoded = [], []
    for values in data:
        kind, out = encode_column(values)
        kinds.append(kind)
        encoded.append(out)
    return {"table": table, "columns": columns, "kinds": "".join(kinds), "data": encoded}


def decode_table(msg: dict[str, Any]) -> tuple[str, list[str], list[list[Any]]]:
    columns, kinds, data = msg["columns"], msg["kinds"], msg["data"]
    if not (len(columns) == len(kinds) == len(data)) or len({len(c) for c in data}) > 1:
        raise ValueError("malformed table: columns, kinds and data differ in length")
    return str(msg["table"]), list(columns), [decode_column(k, v) for k, v in zip(kinds, data, strict=True)]
