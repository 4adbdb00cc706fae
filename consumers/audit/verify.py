"""``verify``: recompute each row's content hash and check the per-instance sequence numbers.

Reads ``events FINAL`` in the time window in keyset pages. Reports
- ``altered``: rows whose stored ``content_hash`` differs from the hash of their stored columns
  (or that no longer parse as an Event);
- ``unhashed``: rows with no hash (written before migration 0006, or the hash was blanked);
- per ``gateway_instance``: the missing sequence numbers between the lowest and highest seen in the window
  (as ranges), and sequence numbers held by more than one event (duplicates with different content).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise
from typing import Any

from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from consumers.archiver import event_from_row
from consumers.audit.integrity import _ts, content_hash
from consumers.audit.search import _DT, _utc_text
from consumers.warehouse import DATABASE

PAGE_ROWS = 10_000
MAX_LISTED = 1000  # altered rows / gap ranges / duplicates listed per report (counts are always exact)


def _gaps(seqs: list[int]) -> tuple[list[list[int]], int]:
    ranges, missing = [], 0
    for prev, cur in pairwise(seqs):
        if cur > prev + 1:
            missing += cur - prev - 1
            if len(ranges) < MAX_LISTED:
                ranges.append([prev + 1, cur - 1])
    return ranges, missing


def _check_row(row: dict[str, Any]) -> str | None:
    """None if intact, else why not."""
    stored = row.pop("content_hash", "")
    row.pop("ingested_at", None)
    try:
        actual = content_hash(event_from_row(row))
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        return f"row does not parse as an event: {type(exc).__name__}"
    return None if actual == stored else "content hash mismatch"


def verify(client: Client, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    conds, params = [], {}
    if since is not None:
        conds.append(f"ts_start >= {{since:{_DT}}}")
        params["since"] = _utc_text(since)
    if until is not None:
        conds.append(f"ts_start < {{until:{_DT}}}")
        params["until"] = _utc_text(until)
    checked = unhashed = altered_count = 0
    altered: list[dict[str, Any]] = []
    by_instance: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    cursor: tuple[str, str] | None = None
    while True:
        where = list(conds)
        page_params = dict(params)
        if cursor is not None:
            where.append(f"(ts_start, event_id) > ({{c_ts:{_DT}}}, {{c_id:String}})")
            page_params.update(c_ts=cursor[0], c_id=cursor[1])
        result = client.query(
            f"SELECT * FROM {DATABASE}.events FINAL WHERE {' AND '.join(where) or '1'} "
            f"ORDER BY ts_start, event_id LIMIT {PAGE_ROWS}", parameters=page_params)
        rows = list(result.named_results())
        for row in rows:
            checked += 1
            by_instance[row["gateway_instance"]][int(row["sequence"])].add(row["event_id"])
            if not row.get("content_hash"):
                unhashed += 1
                continue
            ident = {k: row[k] for k in ("event_id", "tenant", "gateway_instance", "sequence")}
            ident["ts_start"] = _ts(row["ts_start"])
            reason = _check_row(row)
            if reason is not None:
                altered_count += 1
                if len(altered) < MAX_LISTED:
                    altered.append({**ident, "reason": reason})
        if len(rows) < PAGE_ROWS:
            break
        last = rows[-1]
        cursor = (_utc_text(last["ts_start"]), last["event_id"])
    instances: dict[str, Any] = {}
    for name, seqs in sorted(by_instance.items()):
        ordered = sorted(seqs)
        gaps, missing = _gaps(ordered)
        dups = [{"sequence": s, "event_ids": sorted(ids)} for s in ordered if len(ids := seqs[s]) > 1]
        instances[name] = {"min_sequence": ordered[0], "max_sequence": ordered[-1], "events": len(ordered),
                           "missing_count": missing, "missing_ranges": gaps,
                           "duplicate_count": len(dups), "duplicates": dups[:MAX_LISTED]}
    ok = altered_count == 0 and all(i["missing_count"] == 0 and i["duplicate_count"] == 0
                                    for i in instances.values())
    return {"ok": ok, "checked": checked, "unhashed": unhashed, "altered_count": altered_count,
            "altered": altered, "instances": instances,
            "window": {"since": _ts(since) if since else None, "until": _ts(until) if until else None}}
