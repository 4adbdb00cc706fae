"""Configuration loading (file + env, every error at once) and the key store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gatewatch.config import default_config_yaml, load_settings
from gateway.auth.keys import KeyStore, create_key, read_keys, revoke_key
from schemas.config import ConfigError


def test_missing_file_is_created_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gatewatch.yaml"
    s = load_settings(path, {})
    assert path.read_text() == default_config_yaml()
    assert s.gateway.port == 8080 and s.kafka.bootstrap_servers is None and s.models == {}


def test_env_overrides(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "g.yaml", {"GATEWATCH__GATEWAY__PORT": "9001",
                                            "GATEWATCH__KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
                                            "GATEWATCH_HOME": str(tmp_path / "state")})
    assert s.gateway.port == 9001 and s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.keys_file == tmp_path / "state" / "keys.yaml"


def test_every_error_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("""
gateway: {port: 70000, bogus: 1}
kafka: {compression_typo: lz4}
models:
  m: {deployments: [{name: a, base_url: "ftp://x", weight: -1}]}
  n: {deployments: []}
""")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, {"GATEWATCH__ROUTING__RETRY__MAX_ATTEMPTS": "zero"})
    text = str(exc.value)
    for fragment in ("gateway.port", "gateway.bogus", "kafka.compression_typo", "models.m.deployments.0",
                     "models.n.deployments", "routing.retry.max_attempts"):
        assert fragment in text, fragment
    assert len(exc.value.errors) >= 6


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("gateway: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path, {})


def test_keys_are_stored_as_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    secret, rec = create_key(path, "acme", "bot", allowed_models=["a"])
    assert secret.startswith("gw-") and len(secret) > 40
    assert secret not in path.read_text() and rec.sha256 in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    store = KeyStore(path)
    found = store.lookup(secret)
    assert found is not None and found.tenant == "acme" and found.allowed_models == frozenset({"a"})
    assert store.lookup(secret + "x") is None


def test_revoke_expire_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    store = KeyStore(path)
    assert len(store) == 0
    secret, rec = create_key(path, "acme")
    old, _ = create_key(path, "acme", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert store.maybe_reload() and len(store) == 2
    assert store.lookup(old).usable() == "This API key has expired."  # type: ignore[union-attr]
    revoke_key(path, rec.id)
    store.reload()
    assert store.lookup(secret).usable() == "This API key has been revoked."  # type: ignore[union-attr]
    assert [r.disabled for r in read_keys(path)] == [True, False]
    with pytest.raises(KeyError):
        revoke_key(path, "key_nope")
