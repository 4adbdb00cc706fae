"""`gatewatch up` stopped by SIGTERM under load loses nothing: every exchange answered 200 has exactly one
audit row, read through the console after the next start (same home), whichever moment the stop lands on.

Stop points, each in its own run of `up` (the next run checks the previous one):
- steady load, streams in flight (0.8 s each), requests still arriving while the gateway stops accepting;
- right after a burst: the last answers' events are still in the gateway's queue, not yet in the broker;
- with the broker just SIGKILLed (and not restarted: the stop has begun) while streams are in flight: their
  events are in the gateway's spool, replayed at the next start.
A paced mock upstream (the test's own) makes the streams last long enough to be cut by the stop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewatch.procs import free_port, wait_port
from tests.cli.up_harness import FAST_GROUPS, Load, UpProcess, free_ports, kill_child, summary, up_env, wait_audit

pytestmark = pytest.mark.timeout(240)

RATE = 30.0  # requests/s, half of them streams


def _mock(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gatewatch", "mock-upstream", "--port", str(port),
                             "--tokens-per-s", "20", "--latency-ms", "100"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, 20, proc)
    return proc, port


def _check(up: UpProcess, label: str, load: Load, report: list[str]) -> None:
    """Every exchange of ``load`` answered 200 has exactly one audit row."""
    answered = load.answered()
    counts = wait_audit(up.console, up.console_token(), answered, 60)
    report.append(summary(label, load.results, counts))
    assert answered, f"{label}: nothing answered"
    assert {rid for rid in answered if counts[rid] != 1} == set(), report[-1]


def _run(up: UpProcess, load: Load, stop_after: float, report: list[str], *, burst: bool = False,
         kill_broker: bool = False) -> None:
    load.start()
    time.sleep(stop_after)
    if burst:
        load.stop_sending()  # and SIGTERM at once: the last answers are in flight, their events queued
    if kill_broker:  # streams only, all still in flight: their events find the broker gone
        kill_child(up, "broker")
        time.sleep(0.05)  # SIGTERM well within the restart delay (>= 0.4 s): the broker stays down
    started, n = time.monotonic(), len(up.lines)
    up.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # requests keep coming while the gateway stops accepting
    load.stop()
    rc = up.stop(signal.SIGTERM)
    stop_log = "".join(up.lines[n:])
    spooled = re.findall(r"event emitter stopped \((\d+) bytes left in the spool\)", stop_log)
    report.append(f"{load.tag}: stopped with {rc} in {time.monotonic() - started:.1f}s, "
                  f"{spooled[-1] if spooled else '?'} bytes left in the gateway's spool")
    assert rc == 0, up.output()[-3000:]
    assert up.orphans() == []
    assert "lost with the memory broker" not in stop_log, stop_log
    if kill_broker:  # the stop came while the broker was away (or the emitter had not reconnected yet)
        assert spooled and int(spooled[-1]) > 0, stop_log


def _stops(tmp_path: Path, plans: list[tuple[str, float, dict[str, bool]]]) -> None:
    """One run of `up` per plan, stopped as it says; each next run (and a last one) checks the previous."""
    mock, mock_port = _mock(tmp_path)
    models = {"gpt-4o-mini": {"deployments": [{"name": "paced", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                                                "provider": "gatewatch-mock"}]}}
    ports = free_ports()
    env = up_env(ports, GATEWATCH__MODELS=json.dumps(models), **FAST_GROUPS)
    report: list[str] = []
    ups: list[UpProcess] = []
    try:
        previous: Load | None = None
        for label, stop_after, how in [*plans, ("final", 0.0, None)]:
            up = UpProcess(tmp_path, ports, env)
            ups.append(up)
            up.wait_ready()
            if previous is not None:
                _check(up, previous.tag, previous, report)
            if how is None:
                break
            previous = Load(up.gateway, up.key, RATE, label, streams_only=label == "spool")
            _run(up, previous, stop_after, report, **how)
        assert up.stop(signal.SIGTERM) == 0
    finally:
        print("\n" + "\n".join(report))
        for up in ups:
            up.kill()
        mock.terminate()
        mock.wait(10)
    assert os.path.exists(tmp_path / ".gatewatch" / "up-status.json")


def test_sigterm_under_load_loses_no_answered_exchange(tmp_path: Path) -> None:
    _stops(tmp_path, [("steady", 3.0, {}),  # steady load, streams in flight
                      ("burst", 2.0, {"burst": True})])  # right after a burst


def test_sigterm_with_the_broker_down_spools_and_replays(tmp_path: Path) -> None:
    _stops(tmp_path, [("spool", 0.3, {"kill_broker": True})])  # broker just SIGKILLed: events spooled
