"""The warehouse: ClickHouse through clickhouse-connect, embedded (chdb) or a server, one code path.

DSNs:
- ``chdb:///abs/dir`` — embedded chdb on disk (the default is ``<home>/warehouse``); one process per dir.
- ``chdb://memory`` — embedded, in memory (tests).
- ``http(s)://user:pass@host:8123/db`` — a ClickHouse server.

chdb is sync-only and allows one data directory per process: open it once (``Warehouse``), hand out
clients on that same path, and call them through ``asyncio.to_thread``. ``import chdb`` happens in
``open_client`` (main thread, before any worker thread); never fork after opening.

Migrations are the numbered files ``schemas/clickhouse/NNNN_name.sql``; ``apply_migrations`` runs those
not yet recorded in ``gatewatch.schema_migrations`` (every statement is ``IF NOT EXISTS``, so a run cut
short is safe to repeat).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from consumers.dsn import DEFAULT_RETENTION_DAYS, is_embedded, redact_dsn, validate_dsn  # noqa: F401 -- re-exported

log = logging.getLogger(__name__)

DATABASE = "gatewatch"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "clickhouse"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)", re.DOTALL)


def open_client(dsn: str, **settings: Any) -> Client:
    """A clickhouse-connect client for ``dsn`` (sync; call it through ``asyncio.to_thread``)."""
    validate_dsn(dsn)
    if is_embedded(dsn):
        import chdb  # noqa: F401  -- load the engine in the calling (main) thread, before any worker thread

        path = urlsplit(dsn).path
        if path:
            Path(path).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=dsn, settings=settings or None)
    # one client per sink, no shared session: concurrent queries on one HTTP session are refused
    return clickhouse_connect.get_client(dsn=dsn, settings=settings or None, autogenerate_session_id=False)


class Warehouse:
    """Owns the connection(s) to one warehouse. ``client`` is for setup and reads; ``new_client()`` gives
    each sink its own client on the same DSN (same chdb engine in-process)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = validate_dsn(dsn)
        self._clients: list[Client] = []

    @property
    def client(self) -> Client:
        if not self._clients:
            self._clients.append(open_client(self.dsn))
        return self._clients[0]

    def new_client(self) -> Client:
        self.client  # noqa: B018  -- the first client opens the engine
        client = open_client(self.dsn)
        self._clients.append(client)
        return client

    def close(self) -> None:
        clients, self._clients = self._clients, []
        for client in reversed(clients):
            client.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    """Split a migration file at ``;`` ending a line; full-line ``--`` comments are dropped."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [stmt.strip() for stmt in _STATEMENT_END.split(body) if stmt.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        out.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return out


def _bootstrap(client: Client) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )


def applied_migrations(client: Client) -> dict[int, str]:
    """version -> name of the migrations recorded as applied."""
    _bootstrap(client)
    rows = client.query(f"SELECT version, name FROM {DATABASE}.schema_migrations FINAL").result_rows
    return {int(version): str(name) for version, name in rows}


def apply_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations in order; return the names applied (empty when up to date)."""
    done = applied_migrations(client)
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            f"{DATABASE}.schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        log.info("applied migration %s", migration.name)
        applied.append(migration.name)
    return applied


def events_retention_days(client: Client) -> int | None:
    """The TTL of ``gatewatch.events`` in days, None if it has none."""
    rows = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = 'events'",
        parameters={"db": DATABASE},
    ).result_rows
    match = _TTL_DAYS.search(rows[0][0]) if rows else None
    return int(match.group(1)) if match else None


def set_events_retention(client: Client, days: int) -> bool:
    """Set the audit-log TTL (``ALTER TABLE gatewatch.events MODIFY TTL ...``); False if already so."""
    if days <= 0:
        raise ValueError("retention days must be positive")
    if events_retention_days(client) == days:
        return False
    client.command(f"ALTER TABLE {DATABASE}.events MODIFY TTL toDateTime(ts_start) + toIntervalDay({int(days)})")
    log.info("events retention set to %d days", days)
    return True
