"""The policy directory: ``default.yaml`` + ``<tenant>.yaml`` merged over it, hot-reloaded on change (mtime
poll) or SIGHUP.

Each file is read, validated and compiled on its own (``load_each``), so one bad file never hides another
file's errors or blocks another tenant's change. ``load_policies`` is the strict form used at start-up and by
``gatewatch policy check``: any error in any file raises ``PolicyError`` with every error at once. What a
reload serves when some files are rejected is decided by ``reconcile.reconcile``.

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

from gateway.errors import PolicyUnavailable
from gateway.governance.compiled import CompiledPolicy, RedactorFactory
from gateway.governance.policy import Capture, TenantPolicy

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
    """The policies the request path reads. ``refused``: tenants whose file was rejected while they had no
    earlier good policy; ``for_tenant`` raises for them — it never falls back to the default for a tenant
    that has a policy file."""

    default: CompiledPolicy
    tenants: Mapping[str, CompiledPolicy] = field(default_factory=dict)
    refused: frozenset[str] = frozenset()

    def for_tenant(self, tenant: str) -> CompiledPolicy:
        """The tenant's policy, the default for a tenant without a file; raises PolicyUnavailable (503) for
        a refused tenant."""
        if tenant in self.refused:
            raise PolicyUnavailable("This tenant's governance policy is unavailable (its policy file was "
                                    "rejected and there is no earlier valid version); the request was refused.")
        return self.tenants.get(tenant, self.default)

    def capture(self, tenant: str) -> Capture | None:
        """The policy's event capture mode (None: the gateway config decides); ``none`` for a refused tenant,
        whose events store no text."""
        if tenant in self.refused:
            return "none"
        return self.for_tenant(tenant).policy.capture


@dataclass(frozen=True, slots=True)
class DirectoryLoad:
    """Every file of a directory, each built on its own (tenant files merged over default.yaml)."""

    default: CompiledPolicy | None  # None: default.yaml was rejected
    default_file: str  # its file name ("default.yaml" when there is none)
    tenants: Mapping[str, CompiledPolicy]  # the tenant files that built
    files: Mapping[str, str]  # tenant -> its file name, for every tenant file present (built or rejected)
    errors: Mapping[str, tuple[str, ...]]  # file name -> its error lines, rejected files only

    def all_errors(self) -> list[str]:
        return [e for errs in self.errors.values() for e in errs]


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


def _read(paths: list[Path], errors: list[str]) -> tuple[dict[str, Any], bytes] | None:
    path = paths[0]
    if len(paths) > 1:
        errors.append(f"{path.stem}: both {' and '.join(p.name for p in paths)} exist")
        return None
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


def _compile(tenant: str, name: str, data: dict[str, Any], raws: tuple[bytes, bytes] | None,
             make_redactor: RedactorFactory, errors: list[str]) -> CompiledPolicy | None:
    """One file's policy (``data`` already merged over the defaults); None with its errors appended.
    ``raws``: (default.yaml bytes, tenant file bytes) for the hashed version; None without any file."""
    policy = _validate(name, data, errors)
    if policy is None:
        return None
    version = policy.version or (BUILTIN_VERSION if raws is None
                                 else hashlib.sha256(raws[0] + b"\0" + raws[1]).hexdigest()[:12])
    try:
        return CompiledPolicy.build(tenant, version, policy, make_redactor)
    except ValueError as exc:  # e.g. an entity type the chosen engine cannot detect, a NER model not installed
        errors.append(f"{name}: pii: {exc}")
    except Exception as exc:  # one file's broken engine must not block the other files
        log.warning("building the PII engine for %s failed", name, exc_info=True)
        errors.append(f"{name}: pii: cannot build the PII engine ({type(exc).__name__}: {exc})")
    return None


def load_each(directory: Path | None, make_redactor: RedactorFactory) -> DirectoryLoad:
    """Read, merge, validate and compile every file on its own; never raises for a bad file."""
    files = policy_files(directory)
    groups: dict[str, list[Path]] = {}
    for p in files:
        groups.setdefault(p.stem, []).append(p)
    errors: dict[str, tuple[str, ...]] = {}
    own = groups.pop(DEFAULT_FILE, [])
    default_file = own[0].name if own else f"{DEFAULT_FILE}.yaml"
    errs: list[str] = []
    base, base_raw = (_read(own, errs) or ({}, b"")) if own else ({}, b"")
    default = None if errs else _compile(DEFAULT_FILE, default_file, base, (base_raw, b"") if files else None,
                                         make_redactor, errs)
    if errs:
        errors[default_file] = tuple(errs)
    tenants: dict[str, CompiledPolicy] = {}
    names: dict[str, str] = {}
    for tenant, paths in sorted(groups.items()):
        names[tenant] = name = paths[0].name
        errs = []
        got = _read(paths, errs)
        compiled = None if got is None else _compile(tenant, name, deep_merge(base, got[0]), (base_raw, got[1]),
                                                     make_redactor, errs)
        if compiled is not None:
            tenants[tenant] = compiled
        else:
            errors[name] = tuple(errs)
    return DirectoryLoad(default, default_file, tenants, names, errors)


def load_policies(directory: Path | None, make_redactor: RedactorFactory) -> PolicySet:
    """Strict: every file valid, or PolicyError with every error of every file at once."""
    loaded = load_each(directory, make_redactor)
    if loaded.errors or loaded.default is None:
        raise PolicyError(loaded.all_errors())
    return PolicySet(loaded.default, loaded.tenants)
