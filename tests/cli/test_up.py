"""`gatewatch up` as a user runs it: banner with key and snippet, a working gateway, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import psutil
import pytest

from gatewatch.procs import free_port

pytestmark = pytest.mark.timeout(240)


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not printed; output so far:\n{''.join(seen)}")


def _audit_rows(console: str, token: str, request_ids: set[str], timeout: float) -> list[dict[str, object]]:
    """Poll the worker's audit API until every request id has its row (or time runs out)."""
    deadline, rows = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    f"{console}/api/audit?limit=100", headers={"Authorization": f"Bearer {token}"}), timeout=5) as r:
                rows = json.loads(r.read())["rows"]
        except (OSError, ValueError):
            rows = []
        if request_ids <= {row["request_id"] for row in rows}:
            return rows
        time.sleep(1.0)
    raise AssertionError(f"audit rows for {request_ids} not in the warehouse; saw {len(rows)} rows")


@pytest.mark.parametrize("with_worker", [False, True])
def test_up_serves_and_stops_cleanly(tmp_path: Path, with_worker: bool) -> None:
    port, broker, mock, console = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "GATEWATCH__GATEWAY__PORT": str(port), "GATEWATCH__EMBEDDED__BROKER_PORT": str(broker),
           "GATEWATCH__EMBEDDED__MOCK_UPSTREAM_PORT": str(mock), "GATEWATCH__WORKER__CONSOLE_PORT": str(console),
           "PYTHONUNBUFFERED": "1"}
    env.pop("GATEWATCH_HOME", None)
    env.pop("GATEWATCH_CONFIG", None)
    cmd = [sys.executable, "-m", "gatewatch", "up"] + ([] if with_worker else ["--no-worker"])
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = _wait_for_line(proc, "Ctrl-C stops everything", 60)
        key = (tmp_path / ".gatewatch" / "dev-key").read_text().strip()
        assert key in banner and f"http://127.0.0.1:{port}/v1" in banner and "from openai import OpenAI" in banner
        assert (tmp_path / "gatewatch.yaml").exists()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # broker + mock upstream
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert any(m.id == "gpt-4o-mini" for m in client.models.list().data)
        if with_worker:  # the whole embedded default: gateway -> Kafka -> worker -> chdb -> console
            assert f"http://127.0.0.1:{console}/" in banner
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "mail me at ann@example.com"}])
            rid = raw.headers["x-request-id"]
            token_file = tmp_path / ".gatewatch" / "console-token"
            deadline = time.monotonic() + 60
            while not token_file.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            rows = _audit_rows(f"http://127.0.0.1:{console}", token_file.read_text().strip(), {rid}, 90)
            row = next(r for r in rows if r["request_id"] == rid)
            assert "ann@example.com" not in json.dumps(row) and row["outcome"] == "completed"
            children = psutil.Process(proc.pid).children(recursive=True)  # now with the scorer child
            assert any("consumers.child.host" in " ".join(c.cmdline()) for c in children)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
        if with_worker:
            return
        # a second start reuses the dev key
        proc2 = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        try:
            assert key in _wait_for_line(proc2, "Ctrl-C stops everything", 60)
        finally:
            proc2.send_signal(signal.SIGINT)
            proc2.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
