"""The `gatewatch` command: the one composition root (up, gateway, worker, mock-upstream, migrate, keys, ...).

Errors the user can fix are printed as one line (or one line per config error) with a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path

from gatewatch import logsafe
from gatewatch.config import ConfigError, Settings, config_path, load_settings


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit 2."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_up(args: argparse.Namespace) -> int:
    from gatewatch.slim import slim_gateway_imports

    slim_gateway_imports()  # before anything imports the gateway
    from gatewatch.procs import RestartPolicy
    from gatewatch.up import run_up

    settings = _settings(args)
    try:
        policy = RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not 0 <= args.status_port <= 65535:
        raise CliError(f"--status-port: {args.status_port} is not a port (0 turns the status server off)")
    return asyncio.run(run_up(settings, config_path(path=args.config), with_worker=not args.no_worker,
                              status_port=args.status_port, drain_timeout=args.drain_timeout, policy=policy,
                              log_level=args.log_level))


def cmd_gateway(args: argparse.Namespace) -> int:
    from gatewatch.slim import slim_gateway_imports

    slim_gateway_imports()  # before anything imports the gateway
    from gatewatch.runtime import install_uvloop, serve_gateway, stop_on_signals
    from gateway.upstream.router import resolve_key_errors

    settings = _settings(args)
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
    from gatewatch.mock_upstream import run_from_args

    run_from_args(args)
    return 0


def _consumers_worker(what: str):  # type: ignore[no-untyped-def]
    """consumers.worker, with chdb imported first (in the main thread, before any other thread exists)."""
    try:
        import chdb  # noqa: F401

        from consumers import worker
    except ImportError as exc:
        raise CliError(f"{what} needs the consumers extra: pip install 'gatewatch[consumers]' ({exc})") from None
    return worker


def cmd_worker(args: argparse.Namespace) -> int:
    worker = _consumers_worker("the worker")
    from gatewatch.runtime import install_uvloop

    settings = _settings(args)
    install_uvloop()
    asyncio.run(worker.run_worker(settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    worker = _consumers_worker("migrate")
    settings = _settings(args)
    dsn = args.dsn or worker.worker_config(settings).dsn(Path(settings.home))
    try:
        applied = worker.migrate(dsn)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none (up to date)'}")
    return 0


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

    settings = _settings(args)
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


def cmd_policy(args: argparse.Namespace) -> int:
    from gateway.governance.loader import PolicyError
    from gateway.governance.store import PolicyStore

    directory = Path(args.dir) if args.dir else _settings(args).policy_dir
    store = PolicyStore(directory)
    try:
        policies = store.load()
    except PolicyError as exc:
        print(f"{directory}: {exc}", file=sys.stderr)
        return 2
    print(f"{directory}: OK (default version {policies.default.version}"
          + "".join(f", {t} {p.version}" for t, p in policies.tenants.items()) + ")")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.config_cmd == "show":
        import yaml

        print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    else:
        print(f"{config_path(path=args.config)}: OK")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parent.parent / "bench" / f"{args.what}.py"
    if not script.exists():
        raise CliError(f"benchmark script {script} not found (run from a source checkout)")
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _console(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A client for the worker's console: --console/--token, else the config and <home>/console-token."""
    from consumers.audit.client import ConsoleClient

    settings = _settings(args)
    url = args.console
    if not url:
        from consumers.config import WorkerConfig

        worker = WorkerConfig.model_validate(settings.worker)
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


_AUDIT_FILTERS = ("tenant", "event_id", "request_id", "key_id", "end_user", "model", "since", "until", "decision",
                  "rule_id", "pii_entity", "outcome", "scorer", "metric", "min_score", "max_score")


def cmd_audit(args: argparse.Namespace) -> int:
    from consumers.audit.client import ConsoleError, export_audit, format_verify

    client = _console(args)
    try:
        if args.audit_cmd == "verify":
            params = {k: v for k in ("since", "until") if (v := getattr(args, k))}
            report = client.verify(params)
            print(orjson_dumps(report) if args.json else format_verify(report))
            return 0 if report["ok"] else 1
        params = {k: v for k in _AUDIT_FILTERS if (v := getattr(args, k)) is not None}
        params["order"] = args.order
        export_audit(client, params, args.format, Path(args.output) if args.output else None)
    except ConsoleError as exc:
        raise CliError(str(exc)) from None
    return 0


def orjson_dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def cmd_query(args: argparse.Namespace) -> int:
    from consumers.audit.client import ConsoleError, format_table

    try:
        result = _console(args).query(args.sql, args.limit)
    except ConsoleError as exc:
        raise CliError(str(exc)) from None
    print(orjson_dumps(result) if args.json else format_table(result))
    return 0


_BASELINE_COLUMNS = ("tenant", "model", "field", "state", "baseline_id", "baseline_size", "embed_model",
                     "collected_from", "collected_to", "created_at")


def cmd_drift(args: argparse.Namespace) -> int:
    """Drift baselines through the worker's console (``/api/drift``): list them, or reset some on purpose."""
    from consumers.audit.client import ConsoleError, format_table

    client = _console(args)
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
        rows = [[r.get(c) for c in _BASELINE_COLUMNS] for r in result["baselines"]]
        print(format_table({"columns": list(_BASELINE_COLUMNS), "rows": rows, "truncated": False}))
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


def cmd_console_token(args: argparse.Namespace) -> int:
    from consumers.console.tokens import TOKENS_FILE, create_token

    path = _settings(args).home / TOKENS_FILE
    try:
        secret, rec = create_token(path, args.tenants.split(","))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(secret)
    print(f"created {rec.id} scoped to {', '.join(rec.tenants)} (stored only as a hash in {path}; "
          "this is the only time the token is shown)", file=sys.stderr)
    return 0


SERVICES = frozenset({"up", "gateway", "worker", "mock-upstream"})


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
    sub.add_parser("gateway", help="run the gateway only (production)").set_defaults(func=cmd_gateway)
    sub.add_parser("worker", help="run the consumer pipelines, warehouse and console").set_defaults(func=cmd_worker)

    from gatewatch.mock_upstream import add_cli_arguments

    mock = sub.add_parser("mock-upstream", help="run the OpenAI-compatible mock server")
    add_cli_arguments(mock)
    mock.set_defaults(func=cmd_mock)

    mig = sub.add_parser("migrate", help="apply warehouse migrations")
    mig.add_argument("--dsn", help="warehouse DSN (default from config)")
    mig.set_defaults(func=cmd_migrate)

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

    pol = sub.add_parser("policy", help="validate a policy directory (every error at once)")
    pol.add_argument("policy_cmd", choices=["check"])
    pol.add_argument("dir", nargs="?", help="policy directory (default governance.policy_dir)")
    pol.set_defaults(func=cmd_policy)

    cfg = sub.add_parser("config", help="validate or show the configuration")
    cfg.add_argument("config_cmd", choices=["check", "show"])
    cfg.set_defaults(func=cmd_config)

    bench = sub.add_parser("bench", help="run a benchmark script (bench/<what>.py)")
    bench.add_argument("what", choices=["gateway", "scorers", "pipeline_lag"])
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    def console_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--console", help="console URL (default from worker.console_host/port)")
        p.add_argument("--token", help="console token (default: the file <home>/console-token)")

    audit = sub.add_parser("audit", help="export the audit log through the console (filters, formats)")
    console_args(audit)
    for name in _AUDIT_FILTERS:
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

    query = sub.add_parser("query", help="read-only SQL against the warehouse through the console (admin token)")
    console_args(query)
    query.add_argument("sql")
    query.add_argument("--limit", type=int, default=1000)
    query.add_argument("--json", action="store_true")
    query.set_defaults(func=cmd_query)

    ctok = sub.add_parser("console-token", help="manage console tokens")
    ctsub = ctok.add_subparsers(dest="token_cmd", required=True)
    ctc = ctsub.add_parser("create", help="create a console token and print it once")
    ctc.add_argument("--tenants", required=True, help="comma-separated tenants, or '*' for admin")
    ctok.set_defaults(func=cmd_console_token)

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
