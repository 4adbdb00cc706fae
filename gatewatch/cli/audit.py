"""``gatewatch audit [verify]`` (export or verify the audit log) and ``gatewatch query`` (read-only SQL),
both through the worker's console."""

from __future__ import annotations

import argparse
from pathlib import Path

from gatewatch.cli.common import CliError, console_args, console_client, orjson_dumps

AUDIT_FILTERS = ("tenant", "event_id", "request_id", "key_id", "end_user", "model", "since", "until", "decision",
                 "rule_id", "pii_entity", "outcome", "scorer", "metric", "min_score", "max_score")


def cmd_audit(args: argparse.Namespace) -> int:
    from consumers.audit.client import ConsoleError, export_audit, format_verify

    client = console_client(args)
    try:
        if args.audit_cmd == "verify":
            params = {k: v for k in ("since", "until") if (v := getattr(args, k))}
            report = client.verify(params)
            print(orjson_dumps(report) if args.json else format_verify(report))
            return 0 if report["ok"] else 1
        params = {k: v for k in AUDIT_FILTERS if (v := getattr(args, k)) is not None}
        params["order"] = args.order
        export_audit(client, params, args.format, Path(args.output) if args.output else None)
    except ConsoleError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from consumers.audit.client import ConsoleError, format_table

    try:
        result = console_client(args).query(args.sql, args.limit)
    except ConsoleError as exc:
        raise CliError(str(exc)) from None
    print(orjson_dumps(result) if args.json else format_table(result))
    return 0


def add_audit_parser(sub) -> None:  # type: ignore[no-untyped-def]
    audit = sub.add_parser("audit", help="export the audit log through the console (filters, formats)")
    console_args(audit)
    for name in AUDIT_FILTERS:
        audit.add_argument(f"--{name.replace('_', '-')}", dest=name,
                           help="ISO-8601 time" if name in ("since", "until") else None)
    audit.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    audit.add_argument("--order", choices=["asc", "desc"], default="asc", help="oldest (default) or newest first")
    audit.add_argument("--output", "-o", help="file to write (default stdout; required for parquet)")
    asub = audit.add_subparsers(dest="audit_cmd")
    av = asub.add_parser("verify", help="check content hashes and sequence numbers; exit 1 if anything is wrong")
    av.add_argument("--since")
    av.add_argument("--until")
    av.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit, audit_cmd=None)


def add_query_parser(sub) -> None:  # type: ignore[no-untyped-def]
    query = sub.add_parser("query", help="read-only SQL against the warehouse through the console (admin token)")
    console_args(query)
    query.add_argument("sql")
    query.add_argument("--limit", type=int, default=1000)
    query.add_argument("--json", action="store_true")
    query.set_defaults(func=cmd_query)
