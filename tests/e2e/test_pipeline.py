"""Gateway -> Tansu -> worker (a real subprocess) -> chdb, with the worker killed mid-stream and restarted:
every exchange lands exactly once in `events` (FINAL) and has its toxicity scores."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gatewatch.procs import TansuBroker, free_port

pytestmark = pytest.mark.timeout(240)

QUERY = """
import json, sys
import chdb
from consumers.warehouse import open_client
c = open_client(sys.argv[1])
out = {
  "events": c.query("SELECT request_id, count() FROM gatewatch.events FINAL GROUP BY request_id").result_rows,
  "raw_rows": c.query("SELECT count() FROM gatewatch.events").result_rows[0][0],
  "scored": c.query("SELECT e.request_id, countDistinct(s.metric) FROM gatewatch.scores AS s FINAL "
                    "INNER JOIN (SELECT event_id, request_id FROM gatewatch.events FINAL) AS e "
                    "ON s.event_id = e.event_id WHERE s.scorer = 'toxicity' GROUP BY e.request_id").result_rows,
  "dup_scores": c.query("SELECT count() FROM (SELECT event_id, scorer, metric, target, count() AS n "
                        "FROM gatewatch.scores FINAL GROUP BY ALL HAVING n > 1)").result_rows[0][0],
}
print(json.dumps(out))
"""


def _metric(text: str, name: str, pipeline: str) -> float | None:
    m = re.search(rf'^{name}{{pipeline="{pipeline}"}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else None


async def _wait_caught_up(console: str, min_events: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(console + "/metrics") as r:
                    text = await r.text()
            except aiohttp.ClientError:
                text = ""
            ok = True
            for p in ("archiver", "toxicity"):
                lag = _metric(text, "gatewatch_consumer_lag", p)
                seen = _metric(text, "gatewatch_consumer_events_total", p)
                ok = ok and lag == 0 and (seen or 0) >= min_events
            if ok:
                return
            await asyncio.sleep(0.5)
    raise AssertionError("worker did not catch up in time")


def _start_worker(cfg: Path, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GATEWATCH_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "gatewatch", "-c", str(cfg), "worker"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def test_gateway_to_warehouse_with_worker_crash(make_gateway, mock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    console_port = free_port()
    with TansuBroker() as broker:
        kafka = {"bootstrap_servers": broker.bootstrap, "partitions": 3}
        cfg = tmp_path / "gatewatch.yaml"
        cfg.write_text(json.dumps({
            "kafka": kafka,
            "worker": {"pipelines": ["archiver", "toxicity"], "console_port": console_port,
                       "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                       "batch": {"max_records": 20, "max_wait_ms": 200}},
        }))
        g = await make_gateway({"m": {"deployments": [{"name": "mock", "base_url": mock.base_url}]}},
                               kafka=kafka, real_kafka=True)
        sent: list[str] = []

        async def send(n: int, start: int) -> None:
            async with aiohttp.ClientSession() as s:
                for i in range(start, start + n):
                    rid = f"req-{i}"
                    body = {"model": "m" if i % 7 else "missing-model",
                            "messages": [{"role": "user", "content": f"message number {i}, you idiot" if i % 5 == 0
                                          else f"message number {i}"}]}
                    async with s.post(g.base_url + "/chat/completions", json=body,
                                      headers={"authorization": f"Bearer {g.key}", "x-request-id": rid}) as r:
                        await r.read()
                    sent.append(rid)

        log = tmp_path / "worker.log"
        worker = _start_worker(cfg, home, log)
        try:
            await send(60, 0)
            console = f"http://127.0.0.1:{console_port}"
            await _wait_caught_up(console, 20, timeout=90)
            sender = asyncio.create_task(send(60, 60))
            await asyncio.sleep(0.3)
            worker.send_signal(signal.SIGKILL)  # crash mid-stream: no graceful commit
            await asyncio.to_thread(worker.wait)
            await sender
            worker = _start_worker(cfg, home, log)
            # more traffic after the restart, so the new worker has work whether or not the first one had
            # consumed everything before it died; lag 0 after these means it is caught up on all of it
            await send(10, 120)
            await _wait_caught_up(console, 10, timeout=90)
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 60)
    dsn = f"chdb://{home.resolve() / 'warehouse'}"
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", QUERY, dsn], capture_output=True,
                                  text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    per_request = dict(result["events"])
    assert sorted(per_request) == sorted(sent)  # no exchange missing
    assert set(per_request.values()) == {1}  # exactly one row per exchange (FINAL)
    scored = dict(result["scored"])
    assert sorted(scored) == sorted(sent)  # every exchange has toxicity scores
    assert min(scored.values()) >= 1
    assert result["dup_scores"] == 0
