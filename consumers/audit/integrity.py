"""Tamper evidence: a content hash per event, and the check that recomputes it from stored rows.

``content_hash`` is SHA-256 over a canonical serialisation of the Event: its JSON form with sorted keys,
timestamps in UTC truncated to the millisecond (what DateTime64(3) stores), so the archiver (from the
Event read off Kafka) and ``verify`` (from the row read back through ``event_from_row``) compute the same
bytes. Any column that is part of the Event is covered; ``ingested_at`` and ``content_hash`` are not.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.events import Event

HASH_VERSION = "v1"
_TS_FIELDS = ("ts_start", "ts_first_token", "ts_end")


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def canonical_event(event: Event) -> bytes:
    """The bytes that ``content_hash`` covers (stable across the Kafka -> ClickHouse -> Python round trip)."""
    data: dict[str, Any] = event.model_dump(mode="python")
    for name in _TS_FIELDS:
        data[name] = _ts(getattr(event, name))
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def content_hash(event: Event) -> str:
    """``v1:<sha256 hex>`` of ``canonical_event(event)``; the prefix lets the format change later."""
    return f"{HASH_VERSION}:{hashlib.sha256(canonical_event(event)).hexdigest()}"
