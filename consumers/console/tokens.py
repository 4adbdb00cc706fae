"""Console tokens: stored only as SHA-256 hashes in a YAML file, each scoped to tenants (or ``*``: admin).

Tokens are 256-bit random secrets (``gwc-...``), so a fast hash is enough (as for API keys). The file is
``<home>/console-tokens.yaml``; the embedded default also writes one admin token in clear to
``<home>/console-token`` (mode 0600) for the local CLI, created at worker start if missing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

TOKEN_PREFIX = "gwc-"
ADMIN = "*"
TOKENS_FILE = "console-tokens.yaml"
TOKEN_FILE = "console-token"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    sha256: str
    tenants: tuple[str, ...]  # ("*",) = every tenant (admin)
    created_at: str = ""
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.tenants

    def allows(self, tenant: str) -> bool:
        return self.is_admin or tenant in self.tenants

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "sha256": self.sha256, "scope": list(self.tenants),
                               "created_at": self.created_at}
        if self.disabled:
            out["disabled"] = True
        return out


def _valid_tenant(name: str) -> bool:
    return name == ADMIN or (bool(name) and name.replace("-", "").replace("_", "").replace(".", "").isalnum())


def read_tokens(path: Path) -> list[TokenRecord]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    records, errors = [], []
    for i, raw in enumerate(data.get("tokens") or []):
        scope = raw.get("scope") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not raw.get("id") or not raw.get("sha256") or not isinstance(scope, list) \
                or not scope or not all(isinstance(t, str) and _valid_tenant(t) for t in scope):
            errors.append(f"tokens.{i}: needs id, sha256 and scope (a list of tenants or ['*'])")
            continue
        records.append(TokenRecord(str(raw["id"]), str(raw["sha256"]).lower(), tuple(scope),
                                   str(raw.get("created_at", "")), bool(raw.get("disabled", False))))
    if errors:
        raise ValueError(f"{path}: " + "; ".join(errors))
    return records


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_tokens(path: Path, records: list[TokenRecord]) -> None:
    text = "# Managed by `gatewatch console-token`. Holds only SHA-256 hashes of console tokens.\n"
    _write_private(path, text + yaml.safe_dump({"tokens": [r.to_yaml() for r in records]}, sort_keys=False))


def create_token(path: Path, tenants: list[str]) -> tuple[str, TokenRecord]:
    """Add a token scoped to ``tenants`` (``["*"]`` = admin); returns the secret (shown once) and its record."""
    scope = tuple(dict.fromkeys(t.strip() for t in tenants if t.strip()))
    bad = [t for t in scope if not _valid_tenant(t)]
    if not scope or bad:
        raise ValueError(f"invalid tenant scope {list(scope) or tenants!r} (tenant names, or '*' for all)")
    if ADMIN in scope:
        scope = (ADMIN,)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    rec = TokenRecord("ctk_" + secrets.token_hex(6), hash_token(secret), scope,
                      datetime.now(UTC).isoformat(timespec="seconds"))
    write_tokens(path, [*read_tokens(path), rec])
    return secret, rec


def ensure_admin_token(home: Path) -> bool:
    """The embedded default: an admin token in ``<home>/console-token`` (0600) if missing; True if created."""
    token_file = home / TOKEN_FILE
    if token_file.exists():
        return False
    secret, _ = create_token(home / TOKENS_FILE, [ADMIN])
    _write_private(token_file, secret + "\n")
    return True


class TokenStore:
    """Looks tokens up by hash; re-reads the file when it changes on disk (new tokens need no restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, TokenRecord] = {}

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._by_hash = {r.sha256: r for r in read_tokens(self.path)}
            self._stamp = stamp

    def authenticate(self, secret: str) -> TokenRecord | None:
        self._reload()
        digest = hash_token(secret)
        rec = self._by_hash.get(digest)
        if rec is None or rec.disabled or not hmac.compare_digest(rec.sha256, digest):
            return None
        return rec
