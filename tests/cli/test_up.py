"""`gatewatch up` as a user runs it: banner with key and snippet, a working gateway, clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil
import pytest

from gatewatch.procs import free_port

pytestmark = pytest.mark.timeout(120)


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


@pytest.mark.parametrize("with_worker", [False])
def test_up_serves_and_stops_cleanly(tmp_path: Path, with_worker: bool) -> None:
    port, broker, mock = free_port(), free_port(), free_port()
    env = {**os.environ, "GATEWATCH__GATEWAY__PORT": str(port), "GATEWATCH__EMBEDDED__BROKER_PORT": str(broker),
           "GATEWATCH__EMBEDDED__MOCK_UPSTREAM_PORT": str(mock), "PYTHONUNBUFFERED": "1"}
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
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
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
