"""What a reload serves when some policy files are rejected: a pure function of the last good set and the
new per-file load, so the rules can be tested as a table.

- default.yaml rejected: every tenant derives from it (and a tenant edit may have been written together
  with the default edit), so the whole last good set stays — tenant edits and deletions wait until
  default.yaml is valid again. A tenant file with no policy in that set is refused. Tenant files are not
  judged against a broken default: only default.yaml (and the new files it holds back) are reported.
- a tenant file rejected: that tenant keeps its last good policy; with none (a new file, or one that was
  never valid) its requests are refused — never served by the default, which may be weaker.
- every other file's new policy takes effect; a deleted tenant file puts its tenant on the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.governance.compiled import CompiledPolicy
from gateway.governance.loader import DEFAULT_FILE, DirectoryLoad, PolicySet

Effect = Literal["kept_last_good", "refused", "kept_last_good_set"]
WAITING = "not applied: default.yaml was rejected, and this tenant has no earlier good policy"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected file and what its tenant is served meanwhile."""

    file: str
    tenant: str  # "default" for default.yaml
    errors: tuple[str, ...]
    effect: Effect  # kept_last_good_set: default.yaml, every tenant kept as it was
    version: str | None  # the version still served; None when refused


@dataclass(frozen=True, slots=True)
class Reconciled:
    policies: PolicySet | None  # None only when there was no last good set and default.yaml was rejected
    rejected: Mapping[str, Rejection]  # file name -> rejection
    applied: bool  # False when default.yaml was rejected (nothing of the new load took effect)


def reconcile(last: PolicySet | None, load: DirectoryLoad) -> Reconciled:
    if load.default is None:
        return _keep_set(last, load)
    tenants: dict[str, CompiledPolicy] = {}
    refused: set[str] = set()
    rejected: dict[str, Rejection] = {}
    for tenant, name in load.files.items():
        new = load.tenants.get(tenant)
        old = last.tenants.get(tenant) if last is not None else None
        if new is not None:
            tenants[tenant] = new
        elif old is not None:
            tenants[tenant] = old
            rejected[name] = Rejection(name, tenant, load.errors[name], "kept_last_good", old.version)
        else:
            refused.add(tenant)
            rejected[name] = Rejection(name, tenant, load.errors[name], "refused", None)
    return Reconciled(PolicySet(load.default, tenants, frozenset(refused)), rejected, True)


def _keep_set(last: PolicySet | None, load: DirectoryLoad) -> Reconciled:
    name = load.default_file
    rejected = {name: Rejection(name, DEFAULT_FILE, load.errors[name], "kept_last_good_set", last.default.version)
                if last is not None else Rejection(name, DEFAULT_FILE, load.errors[name], "refused", None)}
    kept = last.tenants if last is not None else {}
    refused: set[str] = set()
    for tenant, file in load.files.items():  # merged over a broken default, their own errors are moot
        if tenant not in kept:
            refused.add(tenant)
            rejected[file] = Rejection(file, tenant, (WAITING,), "refused", None)
    if last is None:
        return Reconciled(None, rejected, False)
    return Reconciled(PolicySet(last.default, kept, frozenset(refused)), rejected, False)
