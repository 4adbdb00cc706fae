"""The worker: section is part of the one validated configuration: `config check` lists its errors with the
others, and a command that reads it (audit) says what is wrong in one line instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BROKEN = "worker:\n  console_port: 70000\n  pipelines: [archiver, nope]\n  batch: {max_records: 0}\n  bogus: 1\n"


def gatewatch(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWATCH_HOME": str(tmp / "home")}
    return subprocess.run([sys.executable, "-m", "gatewatch", "-c", str(tmp / "g.yaml"), *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp)


def test_config_check_lists_every_worker_error_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("gateway: {port: -5}\n" + BROKEN)
    r = gatewatch(tmp_path, "config", "check")
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"invalid configuration in {tmp_path / 'g.yaml'}:"
    errors = [line.removeprefix("  - ") for line in lines[1:]]
    assert all(line.startswith("  - ") for line in lines[1:])
    assert [e.split(":")[0] for e in errors] == ["gateway.port", "worker.pipelines", "worker.batch.max_records",
                                                 "worker.console_port", "worker.bogus"], errors
    assert "unknown pipelines ['nope']" in errors[1]


def test_audit_with_a_broken_worker_section_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("worker:\n  console_port: not-a-port\n")
    r = gatewatch(tmp_path, "audit", "--token", "t")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"invalid configuration in {tmp_path / 'g.yaml'}: worker.console_port: "
        "Input should be a valid integer, unable to parse string as an integer"]


def test_worker_section_is_checked_without_the_consumers_stack(tmp_path: Path) -> None:
    """The worker's config is light: loading it (as `config check` and the gateway do) imports no ClickHouse
    client, no torch."""
    code = ("import sys\nfrom gatewatch.config import load_settings\n"
            f"load_settings({str(tmp_path / 'g.yaml')!r}, {{}})\n"
            "print(sorted(m for m in ('clickhouse_connect', 'chdb', 'torch', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
