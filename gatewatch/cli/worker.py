"""``gatewatch worker`` (the consumer pipelines, warehouse and console) and ``gatewatch migrate``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gatewatch.cli.common import CliError, consumers_worker, settings_of


def cmd_worker(args: argparse.Namespace) -> int:
    worker = consumers_worker("the worker")
    from gatewatch.runtime import install_uvloop

    settings = settings_of(args)
    install_uvloop()
    asyncio.run(worker.run_worker(settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    worker = consumers_worker("migrate")
    settings = settings_of(args)
    dsn = args.dsn or settings.worker.dsn(Path(settings.home))
    try:
        applied = worker.migrate(dsn)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none (up to date)'}")
    return 0


def add_worker_parser(sub) -> None:  # type: ignore[no-untyped-def]
    sub.add_parser("worker", help="run the consumer pipelines, warehouse and console").set_defaults(func=cmd_worker)


def add_migrate_parser(sub) -> None:  # type: ignore[no-untyped-def]
    mig = sub.add_parser("migrate", help="apply warehouse migrations")
    mig.add_argument("--dsn", help="warehouse DSN (default from config)")
    mig.set_defaults(func=cmd_migrate)
