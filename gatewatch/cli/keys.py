"""``gatewatch keys create|list|revoke``: the API keys (stored only as hashes in the keys file)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from gatewatch.cli.common import CliError, settings_of


def _key_limits(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from gateway.governance.policy import Budgets, RateLimits

    try:
        return (RateLimits(requests_per_minute=args.rpm, tokens_per_minute=args.tpm),
                Budgets(tokens_per_day=args.daily_tokens, tokens_per_month=args.monthly_tokens,
                        cost_per_day_usd=args.daily_cost, cost_per_month_usd=args.monthly_cost))
    except ValidationError as exc:
        raise CliError("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None


def _meta(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or ():
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise CliError(f"--meta: expected NAME=VALUE, got {pair!r}")
        out[k] = v
    return out


def cmd_keys(args: argparse.Namespace) -> int:
    from gateway.auth.keys import create_key, read_keys, revoke_key

    settings = settings_of(args)
    path = settings.keys_file
    if args.keys_cmd == "create":
        expires = None
        if args.expires:
            try:
                expires = datetime.fromisoformat(args.expires)
            except ValueError:
                raise CliError(f"--expires: not an ISO-8601 date/time: {args.expires!r}") from None
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        limits, budgets = _key_limits(args)
        try:
            secret, rec = create_key(path, args.tenant, args.name or "", models, expires, _meta(args.meta),
                                     limits, budgets)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        print(secret)
        print(f"created {rec.id} for tenant {rec.tenant} (stored only as a hash in {path}; "
              "this is the only time the key is shown)", file=sys.stderr)
    elif args.keys_cmd == "list":
        rows = read_keys(path)
        print(f"{'ID':<18} {'TENANT':<16} {'STATUS':<9} {'CREATED':<26} {'NAME':<16} LIMITS")
        for r in rows:
            status = "revoked" if r.disabled else ("expired" if r.usable() else "active")
            lim = {**r.rate_limits.model_dump(exclude_none=True), **r.budgets.model_dump(exclude_none=True)}
            shown = " ".join(f"{k}={v}" for k, v in lim.items()) or "-"
            print(f"{r.id:<18} {r.tenant:<16} {status:<9} {r.created_at:<26} {r.name:<16} {shown}")
    elif args.keys_cmd == "revoke":
        try:
            rec = revoke_key(path, args.key_id)
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from None
        print(f"revoked {rec.id} (tenant {rec.tenant})")
    return 0


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    keys = sub.add_parser("keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    kc = ksub.add_parser("create", help="create a key and print it once")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--name")
    kc.add_argument("--models", help="comma-separated model aliases this key may use (default: all)")
    kc.add_argument("--expires", help="ISO-8601 expiry, e.g. 2027-01-31T00:00:00+00:00")
    kc.add_argument("--rpm", type=int, help="requests per minute for this key")
    kc.add_argument("--tpm", type=int, help="tokens per minute for this key")
    kc.add_argument("--daily-tokens", type=int, help="token budget per UTC day")
    kc.add_argument("--monthly-tokens", type=int, help="token budget per calendar month")
    kc.add_argument("--daily-cost", type=float, help="cost budget per UTC day (USD)")
    kc.add_argument("--monthly-cost", type=float, help="cost budget per calendar month (USD)")
    kc.add_argument("--meta", action="append", metavar="NAME=VALUE", help="free-form metadata (repeatable)")
    ksub.add_parser("list", help="list keys (ids and tenants, never secrets)")
    kr = ksub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)
