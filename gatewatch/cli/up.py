"""``gatewatch up``: the embedded default (broker, mock upstream, worker, gateway) under one supervisor."""

from __future__ import annotations

import argparse
import asyncio

from gatewatch.cli.common import CliError, settings_of
from gatewatch.config import config_path


def cmd_up(args: argparse.Namespace) -> int:
    from gatewatch.slim import slim_gateway_imports

    slim_gateway_imports()  # before anything imports the gateway
    from gatewatch.procs import RestartPolicy
    from gatewatch.up import run_up

    settings = settings_of(args)
    try:
        policy = RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not 0 <= args.status_port <= 65535:
        raise CliError(f"--status-port: {args.status_port} is not a port (0 turns the status server off)")
    return asyncio.run(run_up(settings, config_path(path=args.config), with_worker=not args.no_worker,
                              status_port=args.status_port, drain_timeout=args.drain_timeout, policy=policy,
                              log_level=args.log_level))


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    up = sub.add_parser("up", help="run the embedded default: broker, mock upstream, worker, gateway")
    up.add_argument("--no-worker", action="store_true", help="do not start the worker")
    up.add_argument("--status-port", type=int, default=8082, metavar="PORT",
                    help="supervisor /healthz and /metrics on 127.0.0.1:PORT (default 8082; 0: off)")
    up.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="on stop, how long to wait for the worker to consume what the memory broker holds")
    up.add_argument("--max-restarts", type=int, default=5, metavar="N",
                    help="a child that fails more than N times within --restart-window stops everything (5)")
    up.add_argument("--restart-window", type=float, default=60.0, metavar="SECONDS", help="(default 60)")
    up.set_defaults(func=cmd_up)
