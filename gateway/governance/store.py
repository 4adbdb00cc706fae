"""PolicyStore: the active PolicySet, swapped atomically on reload; redactors built once and shared.

Reload triggers: the directory's files change (polled every ``poll_s``) or SIGHUP. Building runs in a
worker thread (a NER model takes seconds), so requests keep flowing on the old policy meanwhile; in-flight
requests finish on the policy they started with. An invalid directory is rejected with every error
logged, counted in ``gatewatch_policy_reload_failures_total``, and the old policy stays active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import SecretStr

from gateway.governance.loader import PolicyError, PolicySet, load_policies, signature
from gateway.governance.metrics import POLICY_RELOAD_FAILURES, POLICY_RELOADS
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
        self.last_error: PolicyError | None = None

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

    def load(self) -> PolicySet:
        """Load synchronously (startup, `gatewatch policy check`); raises PolicyError."""
        sig = signature(self.directory)
        policies = load_policies(self.directory, self.make_redactor)
        self._current, self._sig = policies, sig
        return policies

    async def reload(self, reason: str = "change") -> bool:
        """Load in a thread and swap; on failure keep the old policy. True when the new one took effect."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            sig = signature(self.directory)
            try:
                policies = await asyncio.to_thread(load_policies, self.directory, self.make_redactor)
            except PolicyError as exc:
                self._sig = sig  # do not retry the same broken files every second
                self.last_error = exc
                POLICY_RELOAD_FAILURES.inc()
                log.error("policy reload (%s) rejected, keeping version %s: %s", reason, self._versions(), exc)
                return False
            except Exception as exc:
                self._sig = sig
                self.last_error = PolicyError([f"{type(exc).__name__}: {exc}"])
                POLICY_RELOAD_FAILURES.inc()
                log.exception("policy reload (%s) failed, keeping the old policy", reason)
                return False
            self._current, self._sig, self.last_error = policies, sig, None
            POLICY_RELOADS.inc()
            log.info("policy reloaded (%s): %s", reason, self._versions())
            return True

    def _versions(self) -> str:
        cur = self._current
        if cur is None:
            return "none"
        return ", ".join([f"default={cur.default.version}", *(f"{t}={p.version}" for t, p in cur.tenants.items())])

    def changed(self) -> bool:
        return signature(self.directory) != self._sig

    async def start(self) -> None:
        if self._current is None:
            policies = await asyncio.to_thread(load_policies, self.directory, self.make_redactor)
            self._current, self._sig = policies, signature(self.directory)
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
