"""`gatewatch up`: the embedded default in the foreground, supervised.

Children, started downstream first: the Tansu broker (memory storage) unless ``kafka.bootstrap_servers``
is set, the mock upstream unless ``models`` are configured, the worker (consumers + warehouse + console)
when the consumer extra is installed, and the gateway (``gatewatch gateway``). Each child that dies
unexpectedly is restarted with backoff (``procs.Child``, ``procs.RestartPolicy``); a crash loop stops
everything and ``up`` exits 1. A restarted broker gets its topics back before anything reconnects.

Status: ``/healthz`` and ``/metrics`` on 127.0.0.1:``--status-port`` (``gatewatch_up_child_up``,
``gatewatch_up_child_restarts_total``) and ``<home>/up-status.json``.

Ctrl-C / SIGTERM stops upstream first, so each stage drains into the next: the gateway (stops accepting,
finishes in-flight requests and streams, flushes its emitter or spools) → with the memory broker, wait
(``--drain-timeout``) until the worker's consumer groups have committed everything the broker holds →
the worker (last batch written and committed) → mock upstream and broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from consumers.config import WorkerConfig
from gatewatch.config import Settings
from gatewatch.liveness import kafka_answers
from gatewatch.procs import Child, ChildSpec, RestartPolicy, TansuBroker
from gatewatch.runtime import stop_on_signals
from gateway.auth.keys import create_key, hash_key, read_keys
from gateway.config import Deployment, ModelAlias
from schemas.config import KafkaConfig

log = logging.getLogger(__name__)

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "mock-small")
STATUS_FILE = "up-status.json"


def dev_key(settings: Settings) -> str:
    """The dev API key: reused from .gatewatch/dev-key while it is still valid in the key file."""
    path = Path(settings.home) / "dev-key"
    if path.exists():
        secret = path.read_text().strip()
        if any(r.sha256 == hash_key(secret) and not r.disabled for r in read_keys(settings.keys_file)):
            return secret
    secret, _ = create_key(settings.keys_file, tenant="dev", name="dev key (gatewatch up)")
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def mock_models(base_url: str) -> dict[str, ModelAlias]:
    alias = ModelAlias(deployments=[Deployment(name="mock", base_url=base_url, provider="gatewatch-mock")])
    return {**{m: alias for m in MOCK_MODELS}, "*": alias}


def banner(settings: Settings, key: str, extras: list[str]) -> str:
    gw = settings.gateway
    url = f"http://{gw.host}:{gw.port}/v1"
    lines = [
        "",
        f"  Gatewatch gateway  {url}",
        f"  API key (dev)      {key}   (also in {Path(settings.home) / 'dev-key'})",
        f"  Events             Kafka {settings.kafka.bootstrap_servers}  topic {settings.kafka.topic}",
        *[f"  {e}" for e in extras],
        f"  Metrics            http://{gw.host}:{gw.port}/metrics",
        "",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{url}", api_key="{key}")',
        '  print(client.chat.completions.create(model="gpt-4o-mini",',
        '        messages=[{"role": "user", "content": "Hello!"}]).choices[0].message.content)',
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def console_line(settings: Settings) -> str:
    """The worker's console page; with its admin token in the link (#token=: stays in the browser, never sent
    to the server) once the worker has written ``<home>/console-token``."""
    host = _loopback(settings.worker.console_host)
    url = f"http://{host}:{settings.worker.console_port}/"
    token_file = Path(settings.home) / "console-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    if token:
        return f"Console            {url}#token={token}"
    return f"Console            {url}   (sign in with the token in {token_file}; the worker writes it)"


def _worker_available() -> bool:
    return importlib.util.find_spec("consumers.worker") is not None and \
        importlib.util.find_spec("chdb") is not None


class Stack:
    """The supervised children in start order, and what they look like from outside: the metrics, the
    health view (``/healthz``: 200 ``ok``; 503 ``starting``, ``degraded`` (a child is down or restarting),
    ``stopping`` or ``failed``) and the status file, rewritten on every change."""

    def __init__(self, home: Path, policy: RestartPolicy) -> None:
        self.home = home
        self.policy = policy
        self.children: dict[str, Child] = {}
        self.registry = CollectorRegistry()
        self._up = Gauge("gatewatch_up_child_up", "1 while the child of gatewatch up is running and ready",
                         ["child"], registry=self.registry)
        self._restarts = Counter("gatewatch_up_child_restarts_total",
                                 "Restarts of a child of gatewatch up that died unexpectedly", ["child"],
                                 registry=self.registry)
        self._counted: dict[str, int] = {}
        self.failed = asyncio.Event()  # a child is in a crash loop: stop everything
        self.stopping = False
        self.memory_broker = False  # the embedded broker loses what it holds when it stops
        self.kafka: KafkaConfig | None = None  # the embedded broker's client settings, once it is started

    def add(self, spec: ChildSpec) -> Child:
        child = Child(spec, self.policy, self._changed)
        self.children[spec.name] = child
        self._up.labels(spec.name).set(0)
        self._restarts.labels(spec.name).inc(0)
        self._counted[spec.name] = 0
        child.start()
        return child

    def _changed(self, child: Child) -> None:
        self._up.labels(child.name).set(1 if child.state == "up" else 0)
        if child.restarts > self._counted[child.name]:
            self._restarts.labels(child.name).inc(child.restarts - self._counted[child.name])
            self._counted[child.name] = child.restarts
        if child.state == "failed":
            self.failed.set()
        self.write_status()

    def health(self) -> dict[str, Any]:
        children = self.children.values()
        if any(c.state == "failed" for c in children):
            status = "failed"
        elif self.stopping:
            status = "stopping"
        elif all(c.state == "up" for c in children):
            status = "ok"
        elif all(c.state == "up" or (c.state in ("new", "starting") and not c.restarts) for c in children):
            status = "starting"  # first start, nothing has died yet
        else:
            status = "degraded"
        return {"status": status, "pid": os.getpid(),
                "children": {name: c.status() for name, c in self.children.items()}}

    def write_status(self) -> None:
        path = self.home / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({**self.health(), "updated_at": time.time()}, indent=1) + "\n")
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)

    async def serve(self, port: int) -> web.AppRunner | None:
        """``/healthz`` and ``/metrics`` on 127.0.0.1:``port``; a port in use is a warning, not a failure."""
        async def healthz(request: web.Request) -> web.Response:
            body = self.health()
            return web.json_response(body, status=200 if body["status"] == "ok" else 503)

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except OSError as exc:
            log.warning("supervisor status server not started on 127.0.0.1:%d (%s); status stays in %s",
                        port, exc, self.home / STATUS_FILE)
            await runner.cleanup()
            return None
        return runner


async def ensure_topics(kafka: KafkaConfig, timeout: float = 15.0) -> None:
    """Events and DLQ topics on a (re)started embedded broker, before the gateway and the worker reconnect
    (a consumer subscribed to a topic that is missing may not notice it coming back for minutes)."""
    from gateway.events.topics import ensure_topic

    try:
        async with asyncio.timeout(timeout):
            for topic in (kafka.topic, kafka.dlq_topic):
                await ensure_topic(kafka, topic)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("could not create the topics on the broker (%s); the gateway and worker will", exc)


async def drain_consumers(kafka: KafkaConfig, groups: Sequence[str], timeout: float,
                          progress_s: float = 5.0) -> dict[str, int]:
    """Wait (at most ``timeout``) until every consumer group has committed up to the end of the events
    topic, logging what is left every ``progress_s``. Returns the events each group has still not
    committed (empty: all caught up); ``-1`` when the broker could not be asked."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from gateway.events.topics import client_kwargs

    left: dict[str, int] = {g: -1 for g in groups}
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            await admin.start()
            await consumer.topics()
            report_at = loop.time() + progress_s
            while True:
                left = await _uncommitted(consumer, admin, kafka.topic, groups)
                if not any(left.values()):
                    return {}
                if loop.time() >= report_at:
                    report_at += progress_s
                    log.info("stop: still waiting for %s", ", ".join(f"{g} ({n} events)" for g, n in left.items() if n))
                await asyncio.sleep(0.25)
    except TimeoutError:
        return left
    except (KafkaError, OSError) as exc:
        log.warning("could not check the consumer groups' progress (%s)", exc)
        return left
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.gather(consumer.stop(), admin.close())


async def _uncommitted(consumer: Any, admin: Any, topic: str, groups: Sequence[str]) -> dict[str, int]:
    """Per group: events in ``topic`` past its committed offsets (a partition it never committed counts whole)."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    ends = await consumer.end_offsets(tps)
    left = {}
    for group in groups:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        left[group] = sum(max(0, ends[tp] - max(0, committed[tp].offset if tp in committed else 0)) for tp in tps)
    return left


def _worker_groups(worker_cfg: WorkerConfig) -> list[str]:
    from consumers.registry import group_id

    return [group_id(name) for name in worker_cfg.pipelines]


async def _stop_stack(stack: Stack, settings: Settings, drain_timeout: float) -> None:
    """Upstream first: gateway → (drain) → worker → mock upstream and broker. Nothing is restarted once
    the stop has begun (a broker that is down now stays down: the gateway spools)."""
    stack.stopping = True
    for child in stack.children.values():
        child.hold()
    stack.write_status()
    children = stack.children
    started = time.monotonic()
    if "gateway" in children:
        await children["gateway"].stop()
        log.info("stop: gateway stopped (%.1fs)", time.monotonic() - started)
    worker, broker = children.get("worker"), children.get("broker")
    if drain_timeout > 0 and stack.memory_broker and stack.kafka and worker and broker:
        await _drain(settings.worker, stack.kafka, worker, broker, drain_timeout)
        log.info("stop: consumers drained (%.1fs)", time.monotonic() - started)
    if worker is not None:
        await worker.stop()
        log.info("stop: worker stopped (%.1fs)", time.monotonic() - started)
    await asyncio.gather(*(c.stop() for c in children.values()))


async def _drain(worker_cfg: WorkerConfig, kafka: KafkaConfig, worker: Child, broker: Child,
                 timeout: float) -> None:
    """Before the worker stops: let it consume what the memory broker holds (lost with it otherwise)."""
    if broker.state != "up" or broker.pid is None or worker.state == "failed":
        log.warning("stop: not waiting for the worker (broker %s, worker %s)",
                    "down" if broker.pid is None else broker.state, worker.state)
        return
    print(f"waiting up to {timeout:g}s for the worker to consume the last events "
          "(the memory broker loses what it still holds) ...", flush=True)
    left = await drain_consumers(kafka, _worker_groups(worker_cfg), timeout)
    for group, n in left.items():
        if n < 0:
            log.warning("stop: could not tell whether %s consumed everything (broker unreachable)", group)
        else:
            log.error("stop: %d events not yet consumed by %s are lost with the memory broker", n, group)


def ports_in_use(settings: Settings, with_worker: bool) -> list[str]:
    """The ports the children would listen on that something else already holds: checked before starting,
    since a child that cannot bind would only crash-loop (and a squatter would look like a ready child)."""
    wanted = [("gateway.port", _loopback(settings.gateway.host), settings.gateway.port)]
    if settings.kafka.bootstrap_servers is None:
        wanted.append(("embedded.broker_port", "127.0.0.1", settings.embedded.broker_port))
    if not settings.models:
        wanted.append(("embedded.mock_upstream_port", "127.0.0.1", settings.embedded.mock_upstream_port))
    if with_worker and _worker_available():
        wanted.append(("worker.console_port", _loopback(settings.worker.console_host), settings.worker.console_port))
    busy = []
    for name, host, port in wanted:
        if not port:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                busy.append(f"{name} {host}:{port} is not free ({exc.strerror})")
    return busy


def _child_env(settings: Settings, config_path: Path) -> dict[str, str]:
    """What the children need to see the stack as ``up`` does: the embedded broker's address, the mock's
    models, and the emitter section as resolved here (with the embedded broker the config turns the
    emitter's retention on; a child that is given a bootstrap address would not)."""
    env = {"GATEWATCH_CONFIG": str(config_path.resolve()), "GATEWATCH_HOME": str(Path(settings.home).resolve()),
           "GATEWATCH__KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or "",
           "GATEWATCH__GATEWAY__EMITTER": json.dumps(settings.gateway.emitter.model_dump(mode="json"))}
    if settings.models:
        env["GATEWATCH__MODELS"] = json.dumps({name: alias.model_dump(mode="json", exclude_defaults=True)
                                               for name, alias in settings.models.items()})
    return env


async def _until(stop: asyncio.Event, *events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, *events)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


# a broker that answers nothing for a minute (SIGSTOP, wedged) is killed and restarted; retention covers what
# it held. Longer than any pause the clients ride out unharmed (a 30 s SIGSTOP: 0 errors, nothing lost).
BROKER_LIVENESS = {"alive_every_s": 10.0, "alive_failures": 6}


async def _start(stack: Stack, what: str, spec: ChildSpec, stop: asyncio.Event, *, wait: bool = True) -> Child:
    print(f"starting {what} ...", flush=True)
    child = stack.add(spec)
    if wait:
        await _until(stop, child.settled, stack.failed)
    return child


def _mock_spec(cmd: list[str], port: int, logs: Path) -> ChildSpec:
    return ChildSpec("mock-upstream", (*cmd, "mock-upstream", "--host", "127.0.0.1", "--port", str(port)),
                     logs / "mock-upstream.log", ready_port=port, ready_timeout_s=20.0, stop_timeout_s=5.0)


def _worker_spec(cmd: list[str], settings: Settings, env: dict[str, str], logs: Path) -> ChildSpec:
    worker = settings.worker
    return ChildSpec("worker", (*cmd, "worker"), logs / "worker.log", env, ready_port=worker.console_port or None,
                     ready_host=_loopback(worker.console_host), ready_timeout_s=180.0,
                     stop_timeout_s=worker.shutdown_timeout_s + 30.0)


def _gateway_spec(cmd: list[str], settings: Settings, env: dict[str, str]) -> ChildSpec:
    gw = settings.gateway  # its log goes to this terminal, as when the gateway ran inside `up`
    return ChildSpec("gateway", (*cmd, "gateway"), None, env, ready_port=gw.port or None,
                     ready_host=_loopback(gw.host), ready_timeout_s=120.0, stop_timeout_s=gw.shutdown_grace_s + 30.0)


async def _start_children(stack: Stack, settings: Settings, config_path: Path, stop: asyncio.Event,
                          with_worker: bool, cmd: list[str]) -> tuple[Settings, str, list[str]]:
    """Downstream first; returns the settings as the children got them, the dev key and the banner's extra
    lines."""
    logs = stack.home / "logs"
    extras: list[str] = []
    if settings.kafka.bootstrap_servers is None:
        broker = TansuBroker(port=settings.embedded.broker_port)
        stack.memory_broker = broker.storage.startswith("memory://")
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(
            update={"bootstrap_servers": broker.bootstrap})})
        stack.kafka = kafka = settings.kafka
        what = f"embedded Kafka broker (Tansu, {broker.storage.split(':')[0]} storage) on {broker.bootstrap}"
        await _start(stack, what, ChildSpec("broker", tuple(broker.command()), logs / "tansu.log",
                                            broker.environment(), ready_port=broker.port, ready_timeout_s=20.0,
                                            after_ready=lambda: ensure_topics(kafka),
                                            alive=lambda: kafka_answers("127.0.0.1", broker.port, 5.0),
                                            **BROKER_LIVENESS), stop)
    if not settings.models and not stop.is_set():
        port = settings.embedded.mock_upstream_port
        await _start(stack, f"mock upstream on 127.0.0.1:{port}", _mock_spec(cmd, port, logs), stop)
        settings = settings.model_copy(update={"models": mock_models(f"http://127.0.0.1:{port}/v1")})
        extras.append(f"Upstream           mock at http://127.0.0.1:{port}/v1 (any model name)")
    env = _child_env(settings, config_path)
    if with_worker and _worker_available() and not stop.is_set():
        await _start(stack, "worker (consumers, warehouse, console)", _worker_spec(cmd, settings, env, logs), stop,
                     wait=False)
        extras.append(f"Worker             log {logs / 'worker.log'}")
    key = dev_key(settings)  # before the gateway reads the key file
    if not stop.is_set() and not stack.failed.is_set():
        gw = settings.gateway
        await _start(stack, f"gateway on {gw.host}:{gw.port}", _gateway_spec(cmd, settings, env), stop)
    return settings, key, extras


async def run_up(settings: Settings, config_path: Path, *, with_worker: bool = True, status_port: int = 8082,
                 drain_timeout: float = 30.0, policy: RestartPolicy | None = None,
                 log_level: str | None = None) -> int:
    """Run until Ctrl-C / SIGTERM (0) or a crash loop (1); 2 when a port it needs is taken."""
    busy = ports_in_use(settings, with_worker)
    if busy:
        print(f"gatewatch up: {'; '.join(busy)} (another gatewatch up?)", file=sys.stderr)
        return 2
    disable_created_metrics()  # this process's registry holds only the supervisor's metrics
    home = Path(settings.home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack(home, policy or RestartPolicy())
    stop = asyncio.Event()
    stop_on_signals(stop)
    cmd = [sys.executable, "-m", "gatewatch", *(["--log-level", log_level] if log_level else [])]
    runner = await stack.serve(status_port) if status_port else None
    try:
        settings, key, extras = await _start_children(stack, settings, config_path, stop, with_worker, cmd)
        if not stop.is_set() and not stack.failed.is_set():
            status = f"http://127.0.0.1:{status_port}/healthz (and /metrics)" if runner else "-"
            extras += [f"Supervisor         {status}, {home / STATUS_FILE}",
                       f"Logs               {home / 'logs'} (gateway: this terminal)"]
            if "worker" in stack.children:
                extras.append(console_line(settings))
            print(banner(settings, key, extras), flush=True)
            await _until(stop, stack.failed)
    finally:
        print("stopping ...", flush=True)
        await _stop_stack(stack, settings, drain_timeout)
        if runner is not None:
            await runner.cleanup()
        stack.write_status()
        failures = [c.failure for c in stack.children.values() if c.failure]
        for failure in failures:
            print(f"gatewatch up: {failure}; see the log above", file=sys.stderr, flush=True)
        print("stopped." if not failures else "stopped (crash loop).", flush=True)
    return 1 if failures else 0
