"""``gatewatch drift baselines|reset``: the drift baselines, through the worker's console (``/api/drift``)."""

from __future__ import annotations

import argparse

from gatewatch.cli.common import CliError, console_args, console_client, orjson_dumps

BASELINE_COLUMNS = ("tenant", "model", "field", "state", "baseline_id", "baseline_size", "embed_model",
                    "collected_from", "collected_to", "created_at")


def cmd_drift(args: argparse.Namespace) -> int:
    """Drift baselines through the worker's console (``/api/drift``): list them, or reset some on purpose."""
    from consumers.audit.client import ConsoleError, format_table

    client = console_client(args)
    wanted = {k: v for k in ("tenant", "model", "field") if (v := getattr(args, k, None))}
    try:
        if args.drift_cmd == "reset":
            result = client.drift_reset(wanted)
        else:
            result = client.drift_baselines({**wanted, "state": args.state})
    except ConsoleError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(orjson_dumps(result))
    elif args.drift_cmd == "baselines":
        rows = [[r.get(c) for c in BASELINE_COLUMNS] for r in result["baselines"]]
        print(format_table({"columns": list(BASELINE_COLUMNS), "rows": rows, "truncated": False}))
    elif not result["count"]:
        print("no active drift baseline matches " + " ".join(f"{k}={v}" for k, v in wanted.items()))
    else:
        print(f"reset {result['count']} drift baseline(s):")
        for r in result["reset"]:
            print(f"  {r['tenant']} {r['model'] or '-'} {r['field']}: {r['baseline_id']} ({r['baseline_size']} events, "
                  f"{r['collected_from']} .. {r['collected_to']})")
        print("running drift scorers collect a new baseline from the next events of each "
              "(within drift.baseline_refresh)")
    return 0


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    drift = sub.add_parser("drift", help="drift baselines through the console: list, reset (admin token)")
    dsub = drift.add_subparsers(dest="drift_cmd", required=True)
    dr = dsub.add_parser("reset", help="reset baselines on purpose: scorers collect new ones from the next events")
    dr.add_argument("--tenant", required=True)
    db = dsub.add_parser("baselines", help="list the persisted baselines (without their vectors)")
    db.add_argument("--tenant")
    db.add_argument("--state", choices=["active", "reset", "all"], default="active")
    for leaf in (dr, db):
        leaf.add_argument("--model", help="request model (default: every model of the tenant)")
        leaf.add_argument("--field", choices=["prompt", "response"], help="default: both")
        leaf.add_argument("--json", action="store_true")
        console_args(leaf)
    drift.set_defaults(func=cmd_drift)
