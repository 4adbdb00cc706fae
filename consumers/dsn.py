"""Warehouse DSNs, without the ClickHouse client: the worker's config validates them on every load
(``gatewatch config check`` included), where the consumers extra may not be installed.

- ``chdb:///abs/dir`` — embedded chdb on disk; ``chdb://memory`` — embedded, in memory (tests);
- ``http(s)://user:pass@host:8123/db`` — a ClickHouse server.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_RETENTION_DAYS = 365


def validate_dsn(dsn: str) -> str:
    """Return ``dsn`` if it is one of the supported forms, else raise ValueError."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        if parts.netloc == "memory" or (parts.netloc == "" and parts.path.startswith("/")):
            return dsn
        raise ValueError(f"chdb DSN must be chdb:///<absolute dir> or chdb://memory, got {dsn!r}")
    if parts.scheme in ("http", "https") and parts.hostname:
        return dsn
    raise ValueError(f"unsupported warehouse DSN {redact_dsn(dsn)!r} (chdb:///dir, chdb://memory, http(s)://...)")


def redact_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@", 1)
    return dsn


def is_embedded(dsn: str) -> bool:
    return urlsplit(dsn).scheme == "chdb"
