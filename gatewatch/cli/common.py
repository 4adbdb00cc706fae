"""What the command modules share: the one-line error, the settings of ``--config``, the console client."""

from __future__ import annotations

import argparse

from gatewatch.config import Settings, load_settings


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit 2."""


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def orjson_dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def consumers_worker(what: str):  # type: ignore[no-untyped-def]
    """consumers.worker, with chdb imported first (in the main thread, before any other thread exists)."""
    try:
        import chdb  # noqa: F401

        from consumers import worker
    except ImportError as exc:
        raise CliError(f"{what} needs the consumers extra: pip install 'gatewatch[consumers]' ({exc})") from None
    return worker


def console_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--console", help="console URL (default from worker.console_host/port)")
    p.add_argument("--token", help="console token (default: the file <home>/console-token)")


def console_client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A client for the worker's console: --console/--token, else the config and <home>/console-token."""
    from consumers.audit.client import ConsoleClient

    settings = settings_of(args)
    url = args.console
    if not url:
        worker = settings.worker
        host = "127.0.0.1" if worker.console_host in ("0.0.0.0", "::", "") else worker.console_host
        url = f"http://{host}:{worker.console_port}"
    token = args.token
    if not token:
        path = settings.home / "console-token"
        try:
            token = path.read_text().strip()
        except OSError:
            raise CliError(f"no console token: pass --token or create {path} (`gatewatch worker` does)") from None
    return ConsoleClient(url, token)
