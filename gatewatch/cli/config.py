"""``gatewatch config check|show`` (every error at once, the worker's section included) and ``gatewatch
policy check`` (a policy directory)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatewatch.cli.common import settings_of
from gatewatch.config import config_path


def cmd_config(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.config_cmd == "show":
        import yaml

        print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    else:
        print(f"{config_path(path=args.config)}: OK")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    from gateway.governance.loader import PolicyError
    from gateway.governance.store import PolicyStore

    directory = Path(args.dir) if args.dir else settings_of(args).policy_dir
    store = PolicyStore(directory)
    try:
        policies = store.load()
    except PolicyError as exc:
        print(f"{directory}: {exc}", file=sys.stderr)
        return 2
    print(f"{directory}: OK (default version {policies.default.version}"
          + "".join(f", {t} {p.version}" for t, p in policies.tenants.items()) + ")")
    return 0


def add_policy_parser(sub) -> None:  # type: ignore[no-untyped-def]
    pol = sub.add_parser("policy", help="validate a policy directory (every error at once)")
    pol.add_argument("policy_cmd", choices=["check"])
    pol.add_argument("dir", nargs="?", help="policy directory (default governance.policy_dir)")
    pol.set_defaults(func=cmd_policy)


def add_config_parser(sub) -> None:  # type: ignore[no-untyped-def]
    cfg = sub.add_parser("config", help="validate or show the configuration")
    cfg.add_argument("config_cmd", choices=["check", "show"])
    cfg.set_defaults(func=cmd_config)
