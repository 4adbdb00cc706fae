"""The CLI side of the audit API: a small stdlib HTTP client for the console (no chdb, no aiohttp), paging
through ``/api/audit`` and writing JSONL/CSV/Parquet locally, printing verify reports and query tables."""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from consumers.audit.export import to_csv, to_jsonl, to_parquet

PAGE = 1000


class ConsoleError(Exception):
    """One line for the user."""


class ConsoleClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _call(self, path: str, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = orjson.dumps(body) if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET", headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = orjson.loads(exc.read())["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = exc.reason
            raise ConsoleError(f"console answered {exc.code}: {message}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise ConsoleError(f"cannot reach the console at {self.url} ({getattr(exc, 'reason', exc)}); "
                               "is `gatewatch worker` running?") from None

    def audit_pages(self, params: Mapping[str, Any]):  # type: ignore[no-untyped-def]
        cursor = None
        while True:
            body = self._call("/api/audit", {**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})})
            yield body["rows"]
            cursor = body["next_cursor"]
            if not cursor:
                return

    def verify(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("/api/audit/verify", params)  # type: ignore[no-any-return]

    def drift_baselines(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("/api/drift/baselines", params)  # type: ignore[no-any-return]

    def drift_reset(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("/api/drift/reset", body=dict(body))  # type: ignore[no-any-return]

    def query(self, sql: str, limit: int) -> dict[str, Any]:
        return self._call("/api/query", body={"sql": sql, "limit": limit})  # type: ignore[no-any-return]


def export_audit(client: ConsoleClient, params: Mapping[str, Any], fmt: str, output: Path | None,
                 progress: IO[str] | None = None) -> int:
    """Write every matching row to ``output`` (stdout for jsonl/csv when None); returns the row count."""
    if fmt == "parquet" and output is None:
        raise ConsoleError("--format parquet needs --output FILE")
    progress = progress or sys.stderr
    out = output.open("wb") if output is not None else sys.stdout.buffer
    total, columns, kept = 0, None, []
    try:
        for rows in client.audit_pages(params):
            if rows and columns is None:
                columns = list(rows[0])
                if fmt == "csv":
                    out.write(to_csv(columns, [], header=True))
            total += len(rows)
            if fmt == "jsonl":
                out.write(to_jsonl(rows))
            elif fmt == "csv":
                out.write(to_csv(columns or [], rows, header=False))
            else:
                kept += rows  # parquet: one file, one schema
            print(f"\r{total} rows", end="", file=progress, flush=True)
        if fmt == "parquet":
            out.write(to_parquet(columns or ["event_id"], kept))
    finally:
        if output is not None:
            out.close()
        else:
            out.flush()
    print(f"\r{total} rows" + (f" written to {output}" if output else ""), file=progress)
    return total


def format_verify(report: dict[str, Any]) -> str:
    lines = [f"checked {report['checked']} events ({report['unhashed']} without a hash): "
             + ("OK" if report["ok"] else "PROBLEMS FOUND")]
    if report["altered_count"]:
        lines.append(f"altered rows: {report['altered_count']}")
        lines += [f"  {a['event_id']} tenant={a['tenant']} {a['gateway_instance']}#{a['sequence']} "
                  f"{a['ts_start']}: {a['reason']}" for a in report["altered"]]
    for name, inst in report["instances"].items():
        lines.append(f"instance {name}: sequence {inst['min_sequence']}..{inst['max_sequence']}, "
                     f"{inst['events']} events, {inst['missing_count']} missing, {inst['duplicate_count']} duplicated")
        lines += [f"  missing {a}" + (f"..{b}" if b != a else "") for a, b in inst["missing_ranges"]]
        lines += [f"  duplicate #{d['sequence']}: {', '.join(d['event_ids'])}" for d in inst["duplicates"]]
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    def cell(v: Any) -> str:
        return "NULL" if v is None else (orjson.dumps(v).decode() if isinstance(v, list | dict) else str(v))

    rows = [[cell(v) for v in r] for r in result["rows"]]
    cols = result["columns"]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip()  # noqa: E731
    out = [line(cols), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    out.append(f"({len(rows)} rows{', truncated' if result['truncated'] else ''})")
    return "\n".join(out)
