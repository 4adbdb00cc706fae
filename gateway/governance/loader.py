"""The policy directory: ``default.yaml`` + ``<tenant>.yaml`` merged over it, validated all at once,
hot-reloaded on change (mtime poll) or SIGHUP. An invalid new file is rejected and the old policy stays.

Version of a tenant's policy: its explicit ``version:`` (tenant file first, then default.yaml), else the
first 12 hex digits of the SHA-256 of the files it was built from (``builtin`` with no files at all).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.governance.compiled import CompiledPolicy, RedactorFactory
from gateway.governance.policy import TenantPolicy

log = logging.getLogger(__name__)

DEFAULT_FILE = "default"
BUILTIN_VERSION = "builtin"


class PolicyError(Exception):
    """Every error found in a policy directory (``errors``: one line each)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} policy error(s)")
        self.errors = errors

    def __str__(self) -> str:
        return "invalid policy:\n" + "\n".join(f"  - {e}" for e in self.errors)


@dataclass(frozen=True, slots=True)
class PolicySet:
    default: CompiledPolicy
    tenants: Mapping[str, CompiledPolicy] = field(default_factory=dict)

    def for_tenant(self, tenant: str) -> CompiledPolicy:
        return self.tenants.get(tenant, self.default)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def policy_files(directory: Path | None) -> list[Path]:
    if directory is None or not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                  and not p.name.startswith("."))


def signature(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What the poller compares: (name, mtime_ns, size) of every policy file."""
    out = []
    for p in policy_files(directory):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        out.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _read(path: Path, errors: list[str]) -> tuple[dict[str, Any], bytes] | None:
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw) or {}
    except (OSError, yaml.YAMLError) as exc:
        errors.append(f"{path.name}: cannot read YAML: {exc}")
        return None
    if not isinstance(data, dict):
        errors.append(f"{path.name}: top level must be a mapping")
        return None
    return data, raw


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<root>"


def _validate(name: str, data: dict[str, Any], errors: list[str]) -> TenantPolicy | None:
    try:
        return TenantPolicy.model_validate(data)
    except ValidationError as exc:
        errors.extend(f"{name}: {_loc(e)}: {e['msg']}" for e in exc.errors())
        return None


def load_policies(directory: Path | None, make_redactor: RedactorFactory) -> PolicySet:
    """Read, merge, validate and compile every file; raise PolicyError with every error at once."""
    errors: list[str] = []
    files = policy_files(directory)
    read = {p.stem: r for p in files if (r := _read(p, errors)) is not None}
    stems = [p.stem for p in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    errors += [f"{s}: both {s}.yaml and {s}.yml exist" for s in dupes]
    base, base_raw = read.pop(DEFAULT_FILE, ({}, b""))
    compiled: dict[str, CompiledPolicy] = {}
    for tenant, (data, raw) in [(DEFAULT_FILE, (base, base_raw)), *sorted(read.items())]:
        merged = base if tenant == DEFAULT_FILE else deep_merge(base, data)
        name = f"{tenant}.yaml"
        policy = _validate(name, merged, errors)
        if policy is None:
            continue
        if not files:
            version = BUILTIN_VERSION
        else:
            version = policy.version or hashlib.sha256(base_raw + b"\0" + (b"" if tenant == DEFAULT_FILE else raw)
                                                       ).hexdigest()[:12]
        try:
            compiled[tenant] = CompiledPolicy.build(tenant, version, policy, make_redactor)
        except ValueError as exc:  # e.g. an entity type the chosen engine cannot detect
            errors.append(f"{name}: pii: {exc}")
    if errors:
        raise PolicyError(errors)
    default = compiled.pop(DEFAULT_FILE)
    return PolicySet(default, compiled)
