"""``gatewatch console-token create``: console tokens, scoped to tenants or admin (stored only as hashes)."""

from __future__ import annotations

import argparse
import sys

from gatewatch.cli.common import CliError, settings_of


def cmd_console_token(args: argparse.Namespace) -> int:
    from consumers.console.tokens import TOKENS_FILE, create_token

    path = settings_of(args).home / TOKENS_FILE
    try:
        secret, rec = create_token(path, args.tenants.split(","))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(secret)
    print(f"created {rec.id} scoped to {', '.join(rec.tenants)} (stored only as a hash in {path}; "
          "this is the only time the token is shown)", file=sys.stderr)
    return 0


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    ctok = sub.add_parser("console-token", help="manage console tokens")
    ctsub = ctok.add_subparsers(dest="token_cmd", required=True)
    ctc = ctsub.add_parser("create", help="create a console token and print it once")
    ctc.add_argument("--tenants", required=True, help="comma-separated tenants, or '*' for admin")
    ctok.set_defaults(func=cmd_console_token)
