"""The audit of audits: one ``gatewatch.audit_queries`` row per audit/verify/query call (migration 0006)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from consumers.warehouse import DATABASE

COLUMNS = ["query_id", "token_id", "scope", "endpoint", "filter", "rows", "status", "error"]


def record_query(client: Client, *, token_id: str, scope: Sequence[str], endpoint: str, filter: dict[str, Any],
                 rows: int, status: int, error: str | None = None) -> str:
    """Insert one row (synchronously: the answer is not sent before its audit row is written)."""
    query_id = uuid.uuid4().hex
    client.insert(f"{DATABASE}.audit_queries",
                  [[query_id, token_id, list(scope), endpoint, orjson.dumps(filter).decode(), rows, status, error]],
                  column_names=COLUMNS)
    return query_id
