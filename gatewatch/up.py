"""`gatewatch up`: the embedded default in the foreground.

Starts what is not configured externally — the Tansu broker (memory storage) unless
``kafka.bootstrap_servers`` is set, the mock upstream unless ``models`` are configured, the worker
(consumers + warehouse + console) when the consumer extra is installed — then the gateway in this
process. Ctrl-C stops everything in order: gateway (drain, flush events) → worker → mock → broker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from pathlib import Path

from gatewatch.config import Settings
from gatewatch.procs import TansuBroker, spawn, terminate, wait_port
from gatewatch.runtime import serve_gateway, stop_on_signals
from gateway.auth.keys import create_key, hash_key, read_keys
from gateway.config import Deployment, ModelAlias

log = logging.getLogger(__name__)

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "mock-small")


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


def console_line(settings: Settings) -> str:
    """The worker's console page; with its admin token in the link (#token=: stays in the browser, never sent
    to the server) once the worker has written ``<home>/console-token``."""
    host = str(settings.worker.get("console_host", "127.0.0.1"))
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{host}:{settings.worker.get('console_port', 8081)}/"
    token_file = Path(settings.home) / "console-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    if token:
        return f"Console            {url}#token={token}"
    return f"Console            {url}   (sign in with the token in {token_file}; the worker writes it)"


def _worker_available() -> bool:
    return importlib.util.find_spec("consumers.worker") is not None and \
        importlib.util.find_spec("chdb") is not None


async def run_up(settings: Settings, config_path: Path, *, with_worker: bool = True) -> None:
    home = Path(settings.home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    broker: TansuBroker | None = None
    mock = worker = None
    extras: list[str] = []
    try:
        if settings.kafka.bootstrap_servers is None:
            port = settings.embedded.broker_port
            broker = TansuBroker(port=port, log_file=home / "logs" / "tansu.log")
            print(f"starting embedded Kafka broker (Tansu, memory storage) on 127.0.0.1:{port} ...", flush=True)
            await asyncio.to_thread(broker.start)
            settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": broker.bootstrap})})
        if not settings.models:
            port = settings.embedded.mock_upstream_port
            print(f"starting mock upstream on 127.0.0.1:{port} ...", flush=True)
            mock = spawn([sys.executable, "-m", "gatewatch", "mock-upstream", "--host", "127.0.0.1",
                          "--port", str(port)], home / "logs" / "mock-upstream.log")
            await asyncio.to_thread(wait_port, "127.0.0.1", port, 20.0, mock)
            settings = settings.model_copy(update={"models": mock_models(f"http://127.0.0.1:{port}/v1")})
            extras.append(f"Upstream           mock at http://127.0.0.1:{port}/v1 (any model name)")
        if with_worker and _worker_available():
            env = {"GATEWATCH_CONFIG": str(config_path.resolve()), "GATEWATCH_HOME": str(home.resolve()),
                   "GATEWATCH__KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers or ""}
            print("starting worker (consumers, warehouse, console) ...", flush=True)
            worker = spawn([sys.executable, "-m", "gatewatch", "worker"], home / "logs" / "worker.log",
                           {**os.environ, **env})
            extras.append(f"Worker             log {home / 'logs' / 'worker.log'}")
        key = dev_key(settings)
        stop = asyncio.Event()
        stop_on_signals(stop)

        def ready() -> None:
            print(banner(settings, key, extras + ([console_line(settings)] if worker else [])), flush=True)

        await serve_gateway(settings, stop, on_ready=ready)
    finally:
        print("stopping ...", flush=True)
        await asyncio.to_thread(terminate, worker, 30.0)
        await asyncio.to_thread(terminate, mock, 5.0)
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        print("stopped.", flush=True)
