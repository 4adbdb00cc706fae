"""Read-only SQL for admins (``POST /api/query``).

How writes are refused, in layers:
1. the text must be one SELECT (or WITH ... SELECT): leading keyword checked, one trailing ``;`` allowed;
2. it runs wrapped as ``SELECT * FROM (<sql>) LIMIT n SETTINGS readonly = 1, max_execution_time = t``:
   ClickHouse's parser rejects anything but a query expression inside the parentheses (INSERT, ALTER,
   DROP, a second statement), and ``readonly = 1`` on that query refuses writes, DDL and table functions
   (file, url, executable, ...);
3. text that could escape the wrapper or lift the setting is refused up front: a ``)`` closing more than
   was opened (outside quotes and comments), ``/*`` (a comment could swallow the wrapper's SETTINGS) and
   the word ``readonly``.
Why not the ``readonly`` client setting: the chdb backend applies per-call settings with ``SET`` on the
shared session and restores them afterwards, and in readonly mode the restore itself is refused, which
leaves the whole worker's session read-only. A query-level SETTINGS clause works on chdb and servers alike.
"""

from __future__ import annotations

import re
from typing import Any

from clickhouse_connect.driver.client import Client

from consumers.audit.search import jsonable

MAX_ROWS = 10_000
DEFAULT_ROWS = 1000
DEFAULT_TIMEOUT_S = 30
_LEADING = re.compile(r"\A\s*(?:(?:--|#)[^\n]*\n\s*)*\(*\s*(select|with)\b", re.IGNORECASE)
_REFUSED = re.compile(r"/\*|\breadonly\b", re.IGNORECASE)


class ReadOnlyViolation(ValueError):
    """The statement is not a single read-only query."""


def _parens_balanced(text: str) -> bool:
    """Depth never below zero and zero at the end, skipping quoted text and ``--``/``#`` comments."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":
            i += 1
            while i < n and text[i] != ch:
                i += 2 if text[i] == "\\" else 1
        elif ch == "#" or text.startswith("--", i):
            while i < n and text[i] != "\n":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def check_sql(sql: str) -> str:
    """The statement to wrap (trailing ``;`` removed), or ReadOnlyViolation."""
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise ReadOnlyViolation("empty query")
    if not _LEADING.match(text):
        raise ReadOnlyViolation("only a single SELECT (or WITH ... SELECT) statement is allowed")
    if not _parens_balanced(text):
        raise ReadOnlyViolation("unbalanced parentheses")
    if _REFUSED.search(text):
        raise ReadOnlyViolation("block comments (/* */) and the 'readonly' setting are not allowed here")
    return text


def run_readonly(client: Client, sql: str, *, limit: int = DEFAULT_ROWS,
                 timeout_s: int = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    if not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be between 1 and {MAX_ROWS}")
    text = check_sql(sql)
    wrapped = (f"SELECT * FROM (\n{text}\n) LIMIT {int(limit) + 1} "
               f"SETTINGS readonly = 1, max_execution_time = {int(timeout_s)}")
    result = client.query(wrapped)
    columns = list(result.column_names)
    rows = [[jsonable(c, v) for c, v in zip(columns, raw, strict=True)] for raw in result.result_rows]
    return {"columns": columns, "types": [t.name for t in result.column_types], "rows": rows[:limit],
            "truncated": len(rows) > limit}
