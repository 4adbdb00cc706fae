"""The `gatewatch` command: the parser (one module per command group registers its commands) and ``main``.

Errors the user can fix are printed as one line (or one line per config error) with a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gatewatch.cli import audit, bench, config, console, drift, gateway, keys, up, worker
from gatewatch.cli.common import CliError
from schemas import logsafe
from schemas.config import ConfigError

SERVICES = frozenset({"up", "gateway", "worker", "mock-upstream"})

# in the order `gatewatch --help` lists them
_COMMANDS = (up.add_parser, gateway.add_gateway_parser, worker.add_worker_parser, gateway.add_mock_parser,
             worker.add_migrate_parser, keys.add_parser, config.add_policy_parser, config.add_config_parser,
             bench.add_parser, audit.add_audit_parser, audit.add_query_parser, console.add_parser, drift.add_parser)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatewatch", description="Open LLM gateway with streaming observability.")
    p.add_argument("--config", "-c", default=None, help="config file (default $GATEWATCH_CONFIG or ./gatewatch.yaml)")
    p.add_argument("--log-level", default=None, help="default INFO for services, WARNING for other commands")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)  # so `gatewatch gateway -c FILE` works as well
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file")
    _add = sub.add_parser

    def add_parser(name: str, **kw):  # type: ignore[no-untyped-def]
        return _add(name, parents=[common, *kw.pop("parents", [])], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    for add in _COMMANDS:
        add(sub)
    return p


def quiet_presidio() -> None:
    """presidio logs every recognizer it loads (INFO) and warns about each non-English one it skips: 60
    lines before the banner. Keep its real warnings; say which engine loaded in our own log line."""
    logger = logging.getLogger("presidio-analyzer")
    logger.setLevel(max(logging.WARNING, logging.getLogger().level))
    logger.addFilter(lambda r: "language is not supported by registry" not in r.getMessage())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level or ("INFO" if args.cmd in SERVICES else "WARNING")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafe.install()  # credentials are scrubbed from every line and traceback this process writes
    quiet_presidio()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"gatewatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
