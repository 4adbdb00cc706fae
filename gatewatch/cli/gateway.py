"""``gatewatch gateway`` (production: an external Kafka and configured models) and ``gatewatch
mock-upstream`` (the OpenAI-compatible mock server, ``mock_upstream``)."""

from __future__ import annotations

import argparse
import asyncio

from gatewatch.cli.common import settings_of
from gatewatch.config import config_path
from schemas.config import ConfigError


def cmd_gateway(args: argparse.Namespace) -> int:
    from gatewatch.slim import slim_gateway_imports

    slim_gateway_imports()  # before anything imports the gateway
    from gatewatch.runtime import install_uvloop, serve_gateway, stop_on_signals
    from gateway.upstream.router import resolve_key_errors

    settings = settings_of(args)
    errors = []
    if not settings.kafka.bootstrap_servers:
        errors.append("kafka.bootstrap_servers: not set (use `gatewatch up` for the embedded broker)")
    if not settings.models:
        errors.append("models: no model aliases configured (use `gatewatch up` for the mock upstream)")
    errors += resolve_key_errors(settings.models)
    if errors:
        raise ConfigError(str(config_path(path=args.config)), errors)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        gw = settings.gateway
        await serve_gateway(settings, stop, on_ready=lambda: print(f"gateway on http://{gw.host}:{gw.port}/v1",
                                                                   flush=True))

    install_uvloop()
    asyncio.run(main())
    return 0


def cmd_mock(args: argparse.Namespace) -> int:
    from mock_upstream import run_from_args

    run_from_args(args)
    return 0


def add_gateway_parser(sub) -> None:  # type: ignore[no-untyped-def]
    sub.add_parser("gateway", help="run the gateway only (production)").set_defaults(func=cmd_gateway)


def add_mock_parser(sub) -> None:  # type: ignore[no-untyped-def]
    from mock_upstream import add_cli_arguments

    mock = sub.add_parser("mock-upstream", help="run the OpenAI-compatible mock server")
    add_cli_arguments(mock)
    mock.set_defaults(func=cmd_mock)
