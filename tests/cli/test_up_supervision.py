"""`gatewatch up` supervises its children: each one SIGKILLed under load is restarted (logged, counted,
shown by the supervisor's /healthz and /metrics) and the stack works again; a child that always crashes
stops `up` with the crash-loop message and a non-zero exit, leaving nothing behind."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gatewatch.liveness import kafka_answers
from gatewatch.procs import Child, ChildSpec, RestartPolicy, TansuBroker, describe_exit
from tests.cli.up_harness import (
    FAST_GROUPS,
    Load,
    UpProcess,
    free_ports,
    kill_child,
    summary,
    up_env,
    wait_audit,
)

pytestmark = pytest.mark.timeout(180)


def _load(up: UpProcess, tag: str, seconds: float, rate: float = 20.0) -> Load:
    load = Load(up.gateway, up.key, rate, tag).start()
    time.sleep(seconds)
    load.stop()
    return load


def _all_audited(up: UpProcess, load: Load, report: list[str]) -> None:
    counts = wait_audit(up.console, up.console_token(), load.answered(), 60)
    report.append(summary(load.tag, load.results, counts))
    assert load.answered(), report[-1]
    assert {rid for rid in load.answered() if counts[rid] != 1} == set(), report[-1]


def _kill_under_load(up: UpProcess, name: str, *, wait_s: float = 60.0) -> tuple[Load, set[str]]:
    """SIGKILL ``name`` while 20 requests/s arrive; once it is up again, return the load and the requests
    answered 200 that were sent after the kill (whatever died, their events must all arrive)."""
    load = Load(up.gateway, up.key, 20.0, f"{name}-kill").start()
    time.sleep(1.0)
    pid = kill_child(up, name)
    killed_at = time.monotonic()  # after the signal: a request sent while kill_child read the pid reached the old one
    up.wait_for(f"child {name} (pid {pid}) died unexpectedly: killed by SIGKILL; restart #1 in", 10)
    child = up.wait_child(name, wait_s, restarts=1)
    assert child["pid"] != pid and child["last_exit"] == "killed by SIGKILL"
    time.sleep(1.0)
    load.stop()
    return load, {r.rid for r in load.results if r.status == 200 and r.sent_at > killed_at}


def _healthz_shows_degraded(up: UpProcess, name: str) -> None:
    status, body = up.health()
    assert status == 503 and body["status"] == "degraded", body
    assert body["children"][name]["state"] in ("restarting", "starting"), body  # type: ignore[index]


def test_killed_children_are_restarted_and_the_stack_recovers(tmp_path: Path) -> None:
    ports = free_ports()
    env = up_env(ports, GATEWATCH__ROUTING__CIRCUIT_BREAKER__COOLDOWN_S="1", **FAST_GROUPS)
    up = UpProcess(tmp_path, ports, env)
    report: list[str] = []
    try:
        up.wait_ready()
        _all_audited(up, _load(up, "before", 2.0), report)

        # broker: comes back empty (memory storage); topics recreated, the emitter and the consumers reconnect
        broker_load, _ = _kill_under_load(up, "broker")  # with retention (the embedded default) nothing is lost
        killed = [(broker_load, broker_load.answered())]
        _all_audited(up, _load(up, "after-broker", 2.0), report)

        # worker: what it had not committed is still in the broker; redelivery is deduplicated by event id
        load = Load(up.gateway, up.key, 20.0, "worker-kill").start()
        time.sleep(1.0)
        pid = kill_child(up, "worker")
        time.sleep(0.5)
        _healthz_shows_degraded(up, "worker")
        up.wait_child("worker", 90, restarts=1)
        load.stop()
        with urllib.request.urlopen(f"{up.console}/healthz", timeout=5) as r:
            assert r.status == 200
        assert f"child worker (pid {pid}) died unexpectedly: killed by SIGKILL; restart #1" in up.output()
        _all_audited(up, load, report)  # killing the worker loses nothing

        # gateway (its in-memory event queue dies with it: only what was sent after the kill is asserted) and
        # mock upstream (nothing is lost: all asserted)
        killed.append(_kill_under_load(up, "gateway"))
        mock_load, _ = _kill_under_load(up, "mock-upstream")
        killed.append((mock_load, mock_load.answered()))
        _all_audited(up, _load(up, "after-all", 2.0), report)

        expected = set().union(*(must for _, must in killed))
        counts = wait_audit(up.console, up.console_token(), expected, 30)
        for load, must in killed:
            report.append(summary(load.tag, load.results, counts) + f"; asserted: {len(must)}, "
                          f"of them without exactly one row: {sum(counts[r] != 1 for r in must)}")
        assert {rid for rid in expected if counts[rid] != 1} == set(), "\n".join(report)

        status, body = up.health()
        assert status == 200 and body["status"] == "ok", body
        metrics = up.metrics()
        for name in ("broker", "worker", "gateway", "mock-upstream"):
            assert f'gatewatch_up_child_restarts_total{{child="{name}"}} 1.0' in metrics
            assert f'gatewatch_up_child_up{{child="{name}"}} 1.0' in metrics
        n = len(up.lines)
        assert up.stop(signal.SIGTERM) == 0
        assert up.orphans() == []
        stop_log = "".join(up.lines[n:])
        assert "stop: consumers drained" in stop_log and "lost with the memory broker" not in stop_log, stop_log
    finally:
        print("\n" + "\n".join(report))
        up.kill()


def test_crash_loop_stops_everything_with_a_clear_message(tmp_path: Path) -> None:
    ports = free_ports()
    # valid configuration (`up` checks it all before starting anything), but the worker exits 2 at every start
    env = up_env(ports, GATEWATCH__WORKER__ALERTS__RULES_FILE=str(tmp_path / "no-such-alerts.yaml"))
    up = UpProcess(tmp_path, ports, env, ("--max-restarts", "2", "--restart-window", "60"))
    try:
        assert up.proc.wait(90) == 1
        up.stop()
        out = up.output()
        for n in (1, 2):
            assert re.search(rf"child worker \(pid \d+\) died unexpectedly: exit code 2; restart #{n} in", out), out
        assert "crash loop: worker failed 3 times within 60s (last: exit code 2); not restarting it again" in out
        assert "no-such-alerts.yaml does not exist" in out  # the last lines of its log say why
        assert "gatewatch up: worker failed 3 times" in out and "stopped (crash loop)." in out
        assert up.orphans() == []
    finally:
        up.kill()


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    ports = free_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.gateway))
        squatter.listen()
        out = subprocess.run([sys.executable, "-m", "gatewatch", "up", "--status-port", str(ports.status)],
                             cwd=tmp_path, env=up_env(ports), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"gateway.port 127.0.0.1:{ports.gateway} is not free" in out.stderr
    assert not (tmp_path / ".gatewatch" / "logs" / "tansu.log").exists()


@pytest.mark.parametrize(("failures", "low", "high"), [(1, 0.4, 0.6), (2, 0.8, 1.2), (4, 3.2, 4.8), (20, 24.0, 36.0)])
def test_restart_backoff_doubles_to_a_cap_with_jitter(failures: int, low: float, high: float) -> None:
    policy = RestartPolicy(base_s=0.5, max_s=30.0, jitter=0.2)
    delays = [policy.delay(failures) for _ in range(200)]
    assert low <= min(delays) and max(delays) <= high and len(set(delays)) > 1


@pytest.mark.parametrize(("rc", "text"), [(2, "exit code 2"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM"),
                                         (None, "did not start")])
def test_exit_descriptions(rc: int | None, text: str) -> None:
    assert describe_exit(rc) == text


async def test_child_restarts_until_a_crash_loop_and_stop_is_final(tmp_path: Path) -> None:
    log_file = tmp_path / "flaky.log"
    spec = ChildSpec("flaky", (sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"), log_file)
    changes: list[str] = []
    failed = asyncio.Event()

    def changed(c: Child) -> None:
        changes.append(c.state)
        if c.state == "failed":
            failed.set()

    child = Child(spec, RestartPolicy(base_s=0.05, max_s=0.1, max_restarts=3, window_s=30), changed)
    child.start()
    async with asyncio.timeout(30):
        await failed.wait()  # no ready port: "up" (settled) as soon as spawned, until it exits
    assert child.settled.is_set() and child.restarts == 3 and child.last_exit == "exit code 3"
    assert child.failure == "flaky failed 4 times within 30s (last: exit code 3); not restarting it again"
    assert changes.count("restarting") == 3 and changes[-1] == "failed"
    assert "--- gatewatch up: restart #3 of flaky (after: exit code 3) ---" in log_file.read_text()
    await child.stop()
    assert child.state == "failed"

    steady = Child(ChildSpec("steady", (sys.executable, "-c", "import time; time.sleep(60)")), RestartPolicy())
    steady.start()
    async with asyncio.timeout(30):
        await steady.settled.wait()
    pid = steady.pid
    assert steady.state == "up" and pid is not None
    await steady.stop()
    await steady.stop()  # idempotent
    assert steady.state == "stopped" and steady.restarts == 0 and steady.proc is not None
    assert steady.proc.returncode == -signal.SIGTERM


def test_children_see_the_stack_as_up_does(tmp_path: Path) -> None:
    """The gateway child is given the broker's address: it must still get the emitter section `up` resolved
    (the embedded default turns retention on only while no bootstrap address is configured)."""
    from gatewatch.config import load_settings
    from gatewatch.up import _child_env

    cfg = tmp_path / "gatewatch.yaml"
    settings = load_settings(cfg, env={})
    assert settings.gateway.emitter.retain_group == "gatewatch-archiver"
    env = _child_env(settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"bootstrap_servers": "127.0.0.1:9"})}), cfg)
    child = load_settings(cfg, env=env)
    assert child.kafka.bootstrap_servers == "127.0.0.1:9"
    assert child.gateway.emitter == settings.gateway.emitter


async def test_a_frozen_broker_is_killed_and_restarted_by_its_liveness_probe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A SIGSTOPped broker still accepts TCP connections (the kernel completes the handshake), so only a
    Kafka-level probe sees it is gone: after ``alive_failures`` missed ApiVersions answers it is SIGKILLed
    and restarted; a short pause (fewer misses) is ridden out. Real Tansu; `up` uses 10 s x 6."""
    broker = TansuBroker()
    spec = ChildSpec("broker", tuple(broker.command()), tmp_path / "tansu.log", broker.environment(),
                     ready_port=broker.port, alive=lambda: kafka_answers("127.0.0.1", broker.port, 0.3),
                     alive_every_s=0.3, alive_failures=4)
    back = asyncio.Event()
    child = Child(spec, RestartPolicy(base_s=0.05, max_s=0.1),
                  lambda c: back.set() if c.restarts == 1 and c.state == "up" else None)
    child.start()
    try:
        async with asyncio.timeout(20):
            await child.settled.wait()
        first = child.pid
        assert first is not None and await kafka_answers("127.0.0.1", broker.port, 2.0)
        os.kill(first, signal.SIGSTOP)  # a pause of ~2 misses: ridden out, same process
        await asyncio.sleep(0.7)
        os.kill(first, signal.SIGCONT)
        await asyncio.sleep(1.5)
        assert child.pid == first and child.restarts == 0
        with caplog.at_level(logging.ERROR, logger="gatewatch.procs"):
            os.kill(first, signal.SIGSTOP)  # frozen for good
            async with asyncio.timeout(20):
                await back.wait()
        assert child.pid not in (None, first)
        assert await kafka_answers("127.0.0.1", broker.port, 2.0)  # a new broker answers
        assert child.last_exit is not None and "not answering" in child.last_exit
        assert any(f"child broker (pid {first}) is not answering" in r.getMessage() for r in caplog.records)
    finally:
        await child.stop()
