"""PolicyStore: the active PolicySet, swapped atomically on reload; redactors built once and shared.

Reload triggers: the directory's files change (polled every ``poll_s``) or SIGHUP. Building runs in a
worker thread (a NER model takes seconds), so requests keep flowing on the old policy meanwhile; in-flight
requests finish on the policy they started with.

Start-up (``start``/``load``) is strict: any invalid file raises PolicyError, so ``gatewatch up`` exits 1.
A reload never fails open: each file is built on its own and a rejected file's tenant keeps its last good
policy, or has its requests refused (503 ``policy_unavailable``) when it has none; every other file's change
takes effect (the rules: reconcile.py). Each rejection is one error log line naming the file and its
errors, ``gatewatch_policy_reload_failures_total`` counts reloads with a rejection,
``gatewatch_policy_rejected_files`` is the number of files rejected now, and ``status()`` is the
``/readyz`` detail. Fixing (or deleting) the file clears its rejection at the next reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from gateway.governance.loader import PolicyError, PolicySet, load_each, load_policies, signature
from gateway.governance.metrics import POLICY_REJECTED_FILES, POLICY_RELOAD_FAILURES, POLICY_RELOADS
from gateway.governance.reconcile import Rejection, reconcile
from gateway.redaction import RedactionConfig, Redactor

log = logging.getLogger(__name__)


class PolicyStore:
    def __init__(self, directory: Path | None, *, hash_secret: str | None = None, pii_threads: int = 4,
                 poll_s: float = 1.0) -> None:
        self.directory = directory
        self.poll_s = poll_s
        self._hash_secret = hash_secret
        self._threads = pii_threads
        self._executor: ThreadPoolExecutor | None = None
        self._redactors: dict[str, Redactor] = {}
        self._lock = threading.Lock()
        self._current: PolicySet | None = None
        self._sig: tuple[tuple[str, int, int], ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reloading: asyncio.Lock | None = None
        self._sighup = False
        self.last_error: PolicyError | None = None  # every error of the latest load; None when it was clean
        self._rejected: Mapping[str, Rejection] = {}
        self._since: dict[str, float] = {}  # file name -> when its current run of rejections began

    @property
    def current(self) -> PolicySet | None:
        return self._current

    def make_redactor(self, cfg: RedactionConfig) -> Redactor:
        """One redactor per distinct PII config, kept for the store's lifetime (never closed under a
        request that still uses it); all share one thread pool."""
        if self._hash_secret:
            cfg = cfg.model_copy(update={"hash_secret": SecretStr(self._hash_secret)})
        cfg = cfg.model_copy(update={"max_concurrency": self._threads})
        key = cfg.model_dump_json() + repr(self._hash_secret is not None)
        with self._lock:
            found = self._redactors.get(key)
            if found is None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="pii")
                found = self._redactors[key] = Redactor(cfg, executor=self._executor)
            return found

    @property
    def rejected(self) -> Mapping[str, Rejection]:
        """The files rejected by the latest reload (file name -> errors and what its tenant is served)."""
        return self._rejected

    def load(self) -> PolicySet:
        """Load synchronously and strictly (startup, `gatewatch policy check`); raises PolicyError."""
        sig = signature(self.directory)
        policies = load_policies(self.directory, self.make_redactor)
        self._current, self._sig = policies, sig
        self._set_rejected({})
        return policies

    async def reload(self, reason: str = "change") -> bool:
        """Load every file in a thread and swap in what reconcile() serves. True when every file took effect;
        False when any was rejected (its tenant keeps its last good policy or is refused)."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            sig = signature(self.directory)
            try:
                loaded = await asyncio.to_thread(load_each, self.directory, self.make_redactor)
            except Exception as exc:  # not a bad file (those are per file) but e.g. an unreadable directory
                self._sig = sig  # do not retry the same failure every second
                self.last_error = PolicyError([f"{type(exc).__name__}: {exc}"])
                POLICY_RELOAD_FAILURES.inc()
                log.exception("policy reload (%s) failed, keeping every policy as it was", reason)
                return False
            out = reconcile(self._current, loaded)
            self._current, self._sig = out.policies, sig
            errors = loaded.all_errors()
            self.last_error = PolicyError(errors) if errors else None
            self._set_rejected(out.rejected)
            if out.applied:
                POLICY_RELOADS.inc()
                log.info("policy reloaded (%s): %s", reason, self._versions())
            if out.rejected:
                POLICY_RELOAD_FAILURES.inc()
            return not out.rejected

    def _set_rejected(self, rejected: Mapping[str, Rejection]) -> None:
        now = time.time()
        for name in set(self._rejected) - set(rejected):
            log.info("policy file %s accepted again", name)
        self._since = {name: self._since.get(name, now) for name in rejected}
        self._rejected = rejected
        POLICY_REJECTED_FILES.set(len(rejected))
        for r in rejected.values():
            log.error("policy file %s rejected, %s: %s", r.file, _effect(r), "; ".join(r.errors))

    def status(self) -> dict[str, Any]:
        """The ``/readyz`` detail: the default version and each rejected file with what its tenant is
        served. Error counts, never error text: /readyz needs no key and an error line can quote the file
        (the log line has the text). A rejected file does not make the gateway unready."""
        cur = self._current
        return {
            "loaded": cur is not None,
            "default_version": cur.default.version if cur is not None else None,
            "rejected_files": len(self._rejected),
            "rejected": {name: {"tenant": r.tenant, "effect": r.effect, "version": r.version,
                                "errors": len(r.errors),
                                "since": datetime.fromtimestamp(self._since[name], UTC).isoformat()}
                         for name, r in self._rejected.items()},
        }

    def _versions(self) -> str:
        cur = self._current
        if cur is None:
            return "none"
        return ", ".join([f"default={cur.default.version}", *(f"{t}={p.version}" for t, p in cur.tenants.items())])

    def changed(self) -> bool:
        return signature(self.directory) != self._sig

    async def start(self) -> None:
        if self._current is None:  # strict: an invalid file raises (gatewatch up exits 1)
            policies = await asyncio.to_thread(load_policies, self.directory, self.make_redactor)
            self._current, self._sig = policies, signature(self.directory)
            self._set_rejected({})
            POLICY_RELOADS.inc()
            log.info("policy loaded from %s: %s", self.directory, self._versions())
        self._task = asyncio.create_task(self._poll(), name="policy-reloader")
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload("SIGHUP"))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self.changed():
                await self.reload("file change")

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for r in list(self._redactors.values()):
            await r.close()
        self._redactors.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _effect(r: Rejection) -> str:
    if r.effect == "kept_last_good_set":
        return f"every tenant keeps its last good policy (default {r.version})"
    if r.effect == "kept_last_good":
        return f"tenant {r.tenant} keeps its last good policy {r.version}"
    return f"tenant {r.tenant} has no earlier good policy: its requests are refused"
