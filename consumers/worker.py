"""The worker process: opens the warehouse once, applies migrations, runs the configured pipelines
concurrently and serves the console (``/metrics``, ``/healthz``; the dashboard extends
``create_console_app``). Stops on the stop event, SIGTERM or SIGINT: pipelines finish their batch,
commit and stop; then the console and the warehouse close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from consumers.alerts import AlertEvaluator, start_alerts
from consumers.config import WorkerConfig
from consumers.console import TOKENS_FILE, TokenStore, add_api_routes, add_page_routes, ensure_admin_token
from consumers.metrics import ConsumerMetrics, default_metrics
from consumers.pipeline import Pipeline
from consumers.registry import PipelineContext, build_pipelines, dlq_owner
from consumers.sources.kafka import ensure_topics
from consumers.warehouse import Warehouse, apply_migrations, is_embedded, redact_dsn, set_events_retention
from gatewatch.config import ConfigError, Settings, format_validation_error

log = logging.getLogger(__name__)


@dataclass
class ConsoleDeps:
    """What the console's handlers may use. The dashboard/audit API adds its routes to the app."""

    registry: CollectorRegistry = REGISTRY
    warehouse: Warehouse | None = None
    pipelines: Sequence[Pipeline] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # pipelines that could not start: name -> error
    tokens: TokenStore | None = None  # console tokens; with a warehouse, mounts the audit/query API (/api)


DEPS_KEY = web.AppKey("deps", ConsoleDeps)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DEPS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    """503 when a running pipeline's loop died; pipelines that never started (a scorer's model missing)
    only make the status ``degraded`` (200), so a liveness probe does not restart-loop the worker."""
    deps = request.app[DEPS_KEY]
    pipelines: dict[str, dict[str, Any]] = {p.name: p.health() for p in deps.pipelines}
    alive = all(h["running"] for h in pipelines.values())
    for name, error in deps.failed.items():
        pipelines[name] = {"running": False, "error": error}
    status = "ok" if alive and not deps.failed else "degraded" if alive else "failing"
    return web.json_response({"status": status, "pipelines": pipelines}, status=200 if alive else 503)


def create_console_app(deps: ConsoleDeps) -> web.Application:
    app = web.Application()
    app[DEPS_KEY] = deps
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    if deps.tokens is not None and deps.warehouse is not None:
        add_api_routes(app, deps.warehouse, deps.tokens)
        add_page_routes(app)  # the console page (/, /static/): reads everything from /api
    return app


def worker_config(settings: Settings) -> WorkerConfig:
    """The validated ``worker:`` section; ConfigError lists every problem at once."""
    try:
        return WorkerConfig.model_validate(settings.worker)
    except ValidationError as exc:
        raise ConfigError("worker", [f"worker.{e}" for e in format_validation_error(exc)]) from None


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


@contextlib.contextmanager
def _signals(stop_event: asyncio.Event):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop_event.set)
                installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _serve_console(cfg: WorkerConfig, deps: ConsoleDeps) -> web.AppRunner:
    runner = web.AppRunner(create_console_app(deps), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.console_host, cfg.console_port).start()
    log.info("console on http://%s:%s", cfg.console_host, cfg.console_port)
    return runner


async def _run_until_stopped(pipelines: Sequence[Pipeline], stop_event: asyncio.Event) -> None:
    waiters = {asyncio.create_task(p.wait()): p for p in pipelines}
    stop = asyncio.create_task(stop_event.wait())
    try:
        done, _ = await asyncio.wait([stop, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [stop, *waiters]:
            task.cancel()
    for task in done:
        if task is not stop:
            pipeline = waiters[task]
            log.error("pipeline %s ended unexpectedly; stopping the worker", pipeline.name)
            raise RuntimeError(f"pipeline {pipeline.name} ended unexpectedly")


async def _start_pipelines(deps: ConsoleDeps, pipelines: Sequence[Pipeline], timeout: float) -> list[Pipeline]:
    """Start the pipelines concurrently (each group join and model load takes seconds); one that fails to
    start (a scorer's model missing) is logged and left out (``/healthz`` reports it) so the others, the
    archiver first of all, keep running."""

    async def start_one(pipeline: Pipeline) -> bool:
        try:
            await pipeline.start()
        except Exception as exc:
            log.exception("pipeline %s failed to start; running without it", pipeline.name)
            deps.failed[pipeline.name] = f"{type(exc).__name__}: {exc}"
            await pipeline.stop(timeout)
            return False
        return True

    ok = await asyncio.gather(*(start_one(p) for p in pipelines))
    started = [p for p, good in zip(pipelines, ok, strict=True) if good]
    deps.pipelines = started
    if not started:
        raise RuntimeError("no pipeline could start")
    return started


async def run_worker(settings: Settings, *, stop_event: asyncio.Event | None = None,
                     metrics: ConsumerMetrics | None = None) -> None:
    cfg = worker_config(settings)
    dsn = cfg.dsn(settings.home)
    if is_embedded(dsn):
        import chdb  # noqa: F401  -- before any thread exists
    stop_event = stop_event or asyncio.Event()
    metrics = metrics or default_metrics()
    await ensure_topics(settings.kafka)
    warehouse = await _open_warehouse(dsn, cfg.events_retention_days)
    started: list[Pipeline] = []
    runner: web.AppRunner | None = None
    alerts: AlertEvaluator | None = None
    try:
        alerts = await start_alerts(cfg.alerts, settings.home, warehouse, metrics.registry)
        ctx = PipelineContext(settings.kafka, cfg, warehouse, metrics, dlq_owner(cfg.pipelines))
        pipelines, failed = build_pipelines(ctx)
        if is_embedded(dsn) and ensure_admin_token(settings.home):
            log.info("created an admin console token in %s", settings.home / "console-token")
        deps = ConsoleDeps(metrics.registry, warehouse, [], failed, TokenStore(settings.home / TOKENS_FILE))
        runner = await _serve_console(cfg, deps)
        with _signals(stop_event):
            started = await _start_pipelines(deps, pipelines, cfg.shutdown_timeout_s)
            await _run_until_stopped(started, stop_event)
    finally:
        log.info("worker stopping")
        await asyncio.gather(*(p.stop(cfg.shutdown_timeout_s) for p in started), return_exceptions=True)
        if alerts is not None:
            await alerts.stop()
        if runner is not None:
            await runner.cleanup()
        warehouse.close()
        log.info("worker stopped")
