"""The worker process: opens the warehouse once, applies migrations, runs the configured pipelines
concurrently and serves the console (``/metrics``, ``/healthz``; the dashboard extends
``create_console_app``). A pipeline that cannot start (broker unreachable or frozen, a model missing) is
retried with backoff until it runs (``consumers/startup.py``) while the others and the console go on;
``/healthz`` says which, why, since when and after how many attempts. Stops on the stop event, SIGTERM or
SIGINT: start retries are cancelled, pipelines finish their batch, commit and stop; then the console and
the warehouse close.

With ``scorer_process`` child (the default when the archiver and scorers run together), the scorer
pipelines run in a child process (``consumers/child``) so scoring never delays the audit log: this process
keeps the warehouse (and inserts the child's rows into chdb), the archiver, the alerts and the console,
whose ``/metrics`` and ``/healthz`` include the child's pipelines. On stop, the child and the archiver
finish their batches concurrently while this process still serves the child's inserts; then the
warehouse closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from consumers.alerts import AlertEvaluator, start_alerts
from consumers.child.snapshot import MergedRegistry
from consumers.child.supervisor import ScorerProcess
from consumers.config import WorkerConfig, WorkerSettings
from consumers.console import TOKENS_FILE, TokenStore, add_api_routes, add_page_routes, ensure_admin_token
from consumers.console.errors import console_errors
from consumers.lifecycle import run_until_stopped, starter, stop_on_signals
from consumers.metrics import ConsumerMetrics, default_metrics
from consumers.pipeline import Pipeline
from consumers.registry import PipelineContext, build_pipelines, dlq_owner
from consumers.startup import PipelineStarter
from consumers.warehouse import Warehouse, apply_migrations, is_embedded, redact_dsn, set_events_retention

log = logging.getLogger(__name__)


@dataclass
class ConsoleDeps:
    """What the console's handlers may use. The dashboard/audit API adds its routes to the app."""

    registry: CollectorRegistry = REGISTRY
    warehouse: Warehouse | None = None
    pipelines: Sequence[Pipeline] = field(default_factory=list)  # running ones not under ``starter``
    failed: dict[str, str] = field(default_factory=dict)  # pipelines that could not be built: name -> error
    tokens: TokenStore | None = None  # console tokens; with a warehouse, mounts the audit/query API (/api)
    scorer_process: ScorerProcess | None = None  # the child running the scorer pipelines, if any
    starter: PipelineStarter | None = None  # starts (and retries) this process's pipelines


DEPS_KEY = web.AppKey("deps", ConsoleDeps)


async def _metrics(request: web.Request) -> web.Response:
    """This process's registry, with the scorer child's families merged in by name (same names, labels)."""
    deps = request.app[DEPS_KEY]
    child = deps.scorer_process
    body = generate_latest(deps.registry if child is None else MergedRegistry(deps.registry, child.metric_families))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    """503 when a started pipeline's loop in this process died (or stopped); pipelines still starting or
    retrying their start (broker unreachable, a model missing: ``state``, ``error``, ``kind``, ``since``,
    ``down_for_s``, ``attempts``, ``retry_in_s``), pipelines that cannot be built, the scorer child's
    pipelines while it is down or restarting, and running pipelines held paused because a step keeps
    failing (the warehouse refusing writes: ``paused``, ``error``, ``failing_since``, ``failures``) only
    make the status ``degraded`` (200), so a liveness probe does not restart-loop the worker; alert on
    ``gatewatch_consumer_pipeline_up`` and ``gatewatch_consumer_paused`` instead."""
    deps = request.app[DEPS_KEY]
    pipelines: dict[str, dict[str, Any]] = {p.name: p.health() for p in deps.pipelines}
    alive = all(h["running"] for h in pipelines.values())
    degraded = {name: {"running": False, "error": error} for name, error in deps.failed.items()}
    if deps.starter is not None:
        for name, h in deps.starter.health().items():
            if h["state"] in ("died", "stopped"):
                pipelines[name], alive = h, False
            elif h["running"]:
                pipelines[name] = h
            else:
                degraded[name] = h
    if deps.scorer_process is not None:
        running, down = deps.scorer_process.health()
        pipelines.update(running)
        degraded.update(down)
    pipelines.update(degraded)
    stalled = any(h.get("paused") for h in pipelines.values())  # running, but writing (or scoring) nothing
    status = "ok" if alive and not degraded and not stalled else "degraded" if alive else "failing"
    return web.json_response({"status": status, "pipelines": pipelines}, status=200 if alive else 503)


def create_console_app(deps: ConsoleDeps) -> web.Application:
    """``/metrics``, ``/healthz`` and, with a warehouse and tokens, the API and the page; every error in the
    API's shape, overlong paths refused before any route (``consumers/console/errors.py``)."""
    app = web.Application(middlewares=[console_errors])
    app[DEPS_KEY] = deps
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    if deps.tokens is not None and deps.warehouse is not None:
        add_api_routes(app, deps.warehouse, deps.tokens)
        add_page_routes(app)  # the console page (/, /static/): reads everything from /api
    return app


def migrate(dsn: str) -> list[str]:
    """Apply pending migrations (the ``gatewatch migrate`` command); return the names applied."""
    with Warehouse(dsn) as warehouse:
        return apply_migrations(warehouse.client)


async def _open_warehouse(dsn: str, retention_days: int) -> Warehouse:
    warehouse = Warehouse(dsn)
    try:
        warehouse.client  # noqa: B018  -- open (and import chdb) in the main thread
        applied = await asyncio.to_thread(apply_migrations, warehouse.client)
        await asyncio.to_thread(set_events_retention, warehouse.client, retention_days)
    except BaseException:
        warehouse.close()
        raise
    log.info("warehouse %s ready (%d migrations applied)", redact_dsn(dsn), len(applied))
    return warehouse


async def _serve_console(cfg: WorkerConfig, deps: ConsoleDeps) -> web.AppRunner:
    runner = web.AppRunner(create_console_app(deps), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.console_host, cfg.console_port).start()
    log.info("console on http://%s:%s", cfg.console_host, cfg.console_port)
    return runner


def _scorer_process(settings: WorkerSettings, cfg: WorkerConfig, dsn: str, dlq: str,
                    warehouse: Warehouse) -> ScorerProcess | None:
    names = cfg.child_pipelines()
    if not names:
        return None
    spec = {"worker": cfg.model_dump(mode="json"), "kafka": settings.kafka.model_dump(mode="json"), "dsn": dsn,
            "dlq_owner": dlq, "log_level": logging.getLogger().getEffectiveLevel()}
    return ScorerProcess(names, spec, warehouse=warehouse if is_embedded(dsn) else None, nice=cfg.scorer_nice,
                         sched=cfg.scorer_sched, max_rows_per_insert=cfg.max_rows_per_insert,
                         stop_timeout_s=cfg.shutdown_timeout_s, stall_s=cfg.scorer_child_stall_s)


async def run_worker(settings: WorkerSettings, *, stop_event: asyncio.Event | None = None,
                     metrics: ConsumerMetrics | None = None) -> None:
    """Run the worker on its slice of the configuration (``home``, ``kafka``, ``worker``), already validated
    with the rest of it (``gatewatch.config.load_settings``)."""
    cfg = settings.worker
    dsn = cfg.dsn(settings.home)
    if is_embedded(dsn):
        import chdb  # noqa: F401  -- before any thread exists
    stop_event = stop_event or asyncio.Event()
    metrics = metrics or default_metrics()
    warehouse = await _open_warehouse(dsn, cfg.events_retention_days)
    pipelines: PipelineStarter | None = None
    runner: web.AppRunner | None = None
    alerts: AlertEvaluator | None = None
    scorers: ScorerProcess | None = None
    try:
        alerts = await start_alerts(cfg.alerts, settings.home, warehouse, metrics.registry)
        dlq = dlq_owner(cfg.pipelines)
        scorers = _scorer_process(settings, cfg, dsn, dlq, warehouse)
        ctx = PipelineContext(settings.kafka, cfg, warehouse, metrics, dlq)
        built, failed = build_pipelines(ctx, [n for n in cfg.pipelines if n not in cfg.child_pipelines()])
        if not built and scorers is None:
            raise RuntimeError(f"no pipeline can run here: {failed}")
        pipelines = starter(built, failed, cfg, settings.kafka, metrics)
        if is_embedded(dsn) and ensure_admin_token(settings.home):
            log.info("created an admin console token in %s", settings.home / "console-token")
        deps = ConsoleDeps(metrics.registry, warehouse, [], failed, TokenStore(settings.home / TOKENS_FILE),
                           starter=pipelines, scorer_process=scorers)
        runner = await _serve_console(cfg, deps)
        with stop_on_signals(stop_event):
            if scorers is not None:
                await scorers.start()
            pipelines.start()
            await run_until_stopped(pipelines, stop_event)
    finally:
        log.info("worker stopping")
        # the child writes its last batch through this process: its inserts are served until it exits
        await asyncio.gather(*([pipelines.stop()] if pipelines is not None else []),
                             *([scorers.stop()] if scorers is not None else []), return_exceptions=True)
        if alerts is not None:
            await alerts.stop()
        if runner is not None:
            await runner.cleanup()
        warehouse.close()
        log.info("worker stopped")
