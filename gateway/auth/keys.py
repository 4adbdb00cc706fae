"""Virtual API keys: stored only as SHA-256 hashes in a YAML file, each mapped to a tenant.

Keys are 256-bit random secrets (``gw-...``), so a fast hash is enough: nobody can brute-force the
preimage, and a lookup is one dict access. The file is re-read when it changes on disk.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.governance.policy import Budgets, RateLimits

KEY_PREFIX = "gw-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    sha256: str
    tenant: str
    name: str = ""
    created_at: str = ""
    disabled: bool = False
    expires_at: datetime | None = None
    allowed_models: frozenset[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    rate_limits: RateLimits = RateLimits()  # noqa: RUF009 (frozen) per key (the tenant's policy may add tenant-wide ones)
    budgets: Budgets = Budgets()  # noqa: RUF009 (frozen)

    def usable(self, now: datetime | None = None) -> str | None:
        """None if the key may be used, else the reason it may not."""
        if self.disabled:
            return "This API key has been revoked."
        if self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at:
            return "This API key has expired."
        return None

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "sha256": self.sha256, "tenant": self.tenant, "name": self.name,
                               "created_at": self.created_at}
        if self.disabled:
            out["disabled"] = True
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at.isoformat()
        if self.allowed_models is not None:
            out["allowed_models"] = sorted(self.allowed_models)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        limits = self.rate_limits.model_dump(exclude_none=True)
        if limits:
            out["rate_limits"] = limits
        budgets = self.budgets.model_dump(exclude_none=True)
        if budgets:
            out["budgets"] = budgets
        return out


def _parse_record(i: int, raw: Any, errors: list[str]) -> KeyRecord | None:
    if not isinstance(raw, dict):
        errors.append(f"keys.{i}: must be a mapping")
        return None
    missing = [k for k in ("id", "sha256", "tenant") if not isinstance(raw.get(k), str) or not raw.get(k)]
    if missing:
        errors.append(f"keys.{i}: missing {', '.join(missing)}")
        return None
    expires = raw.get("expires_at")
    if isinstance(expires, str):
        try:
            expires = datetime.fromisoformat(expires)
        except ValueError:
            errors.append(f"keys.{i}.expires_at: not an ISO-8601 time")
            return None
    if isinstance(expires, datetime) and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    models = raw.get("allowed_models")
    try:
        limits = RateLimits.model_validate(raw.get("rate_limits") or {})
        budgets = Budgets.model_validate(raw.get("budgets") or {})
    except ValidationError as exc:
        errors += [f"keys.{i}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return None
    return KeyRecord(id=raw["id"], sha256=raw["sha256"].lower(), tenant=raw["tenant"], name=str(raw.get("name", "")),
                     created_at=str(raw.get("created_at", "")), disabled=bool(raw.get("disabled", False)),
                     expires_at=expires if isinstance(expires, datetime) else None,
                     allowed_models=frozenset(models) if isinstance(models, list) else None,
                     metadata={str(k): str(v) for k, v in (raw.get("metadata") or {}).items()},
                     rate_limits=limits, budgets=budgets)


def read_keys(path: Path) -> list[KeyRecord]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    errors: list[str] = []
    records = [r for i, raw in enumerate(data.get("keys") or []) if (r := _parse_record(i, raw, errors))]
    if errors:
        raise ValueError(f"{path}: " + "; ".join(errors))
    return records


def write_keys(path: Path, records: list[KeyRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Managed by `gatewatch keys`. Holds only SHA-256 hashes of API keys, never the keys.\n"
    text += yaml.safe_dump({"keys": [r.to_yaml() for r in records]}, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def create_key(path: Path, tenant: str, name: str = "", allowed_models: list[str] | None = None,
               expires_at: datetime | None = None, metadata: dict[str, str] | None = None,
               rate_limits: RateLimits | None = None, budgets: Budgets | None = None) -> tuple[str, KeyRecord]:
    """Add a new key to the file; returns the secret (shown once) and its record."""
    if not tenant or not tenant.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"invalid tenant name {tenant!r} (letters, digits, '-', '_', '.')")
    records = read_keys(path)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    rec = KeyRecord(id="key_" + secrets.token_hex(6), sha256=hash_key(secret), tenant=tenant, name=name,
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    allowed_models=frozenset(allowed_models) if allowed_models else None,
                    expires_at=expires_at, metadata=metadata or {},
                    rate_limits=rate_limits or RateLimits(), budgets=budgets or Budgets())
    write_keys(path, [*records, rec])
    return secret, rec


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    records = read_keys(path)
    for i, rec in enumerate(records):
        if rec.id == key_id:
            new = KeyRecord(**{**{f: getattr(rec, f) for f in rec.__dataclass_fields__}, "disabled": True})
            records[i] = new
            write_keys(path, records)
            return new
    raise KeyError(f"no key with id {key_id!r} in {path}")


class KeyStore:
    """In-memory index of the key file, reloaded when the file's mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_hash: dict[str, KeyRecord] = {}
        self._by_id: dict[str, KeyRecord] = {}
        self._mtime: float | None = None
        self.reload()

    def reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._by_hash, self._by_id, self._mtime = {}, {}, None
            return
        records = read_keys(self.path)
        self._by_hash = {r.sha256: r for r in records}
        self._by_id = {r.id: r for r in records}
        self._mtime = mtime

    def maybe_reload(self) -> bool:
        try:
            mtime: float | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return False
        self.reload()
        return True

    def lookup(self, secret: str) -> KeyRecord | None:
        return self._by_hash.get(hash_key(secret))

    def by_id(self, key_id: str | None) -> KeyRecord | None:
        return self._by_id.get(key_id) if key_id is not None else None

    def __len__(self) -> int:
        return len(self._by_hash)
