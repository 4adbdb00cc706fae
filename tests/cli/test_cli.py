"""The gatewatch command as a user runs it: one-line errors, non-zero exits, keys printed once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def gatewatch(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWATCH_HOME": str(tmp / "home")}
    return subprocess.run([sys.executable, "-m", "gatewatch", "-c", str(tmp / "g.yaml"), *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp)


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    r = gatewatch(tmp_path, "keys", "create", "--tenant", "acme", "--name", "bot")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("gw-") and "only time" in r.stderr
    assert secret not in (tmp_path / "home" / "keys.yaml").read_text()
    listing = gatewatch(tmp_path, "keys", "list").stdout
    key_id = listing.splitlines()[1].split()[0]
    assert "acme" in listing and "active" in listing and secret not in listing
    assert gatewatch(tmp_path, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in gatewatch(tmp_path, "keys", "list").stdout


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path) -> None:
    r = gatewatch(tmp_path, "keys", "create", "--tenant", "bad tenant")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "invalid tenant" in r.stderr
    r = gatewatch(tmp_path, "keys", "revoke", "key_missing")
    assert r.returncode == 2 and "no key with id" in r.stderr
    r = gatewatch(tmp_path, "keys", "create", "--tenant", "a", "--expires", "soon")
    assert r.returncode == 2 and "--expires" in r.stderr


def test_config_check_lists_every_error(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("gateway: {port: -5}\nrouting: {retry: {max_attempts: 0}}\n")
    r = gatewatch(tmp_path, "config", "check")
    assert r.returncode == 2
    assert "gateway.port" in r.stderr and "routing.retry.max_attempts" in r.stderr
    (tmp_path / "g.yaml").write_text("gateway: {port: 8123}\n")
    r = gatewatch(tmp_path, "config", "check")
    assert r.returncode == 0 and "OK" in r.stdout


def test_gateway_refuses_without_kafka_and_models(tmp_path: Path) -> None:
    r = gatewatch(tmp_path, "gateway")
    assert r.returncode == 2
    assert "kafka.bootstrap_servers" in r.stderr and "models" in r.stderr


def test_config_option_after_the_subcommand(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("gateway: {port: 8123}\n")
    env = {**os.environ, "GATEWATCH_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "gatewatch", "config", "show", "-c", str(tmp_path / "other.yaml")],
                       capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and "port: 8123" in r.stdout


def test_gateway_process_keeps_torch_out() -> None:
    """presidio imports transformers (and so torch) when installed; the gateway process must not pay for it."""
    code = ("import sys\nfrom gatewatch.slim import slim_gateway_imports\nslim_gateway_imports()\n"
            "import gatewatch.runtime, gateway.redaction.redactor\n"
            "print(sys.modules.get('torch') is None and sys.modules.get('transformers') is None)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "True"
