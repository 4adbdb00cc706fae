"""Embedding drift per (tenant, request model, field).

Each key collects a baseline (its first N events, or the events inside a pinned time range), then
tumbling windows of ``window_events`` events or ``window_seconds`` of event time, whichever closes first.
A closed window of at least ``min_window`` events is compared with the baseline: centroid cosine
distance, MMD² and its permutation p-value -> three ``drift`` rows; drifted = p < pvalue_threshold and
distance >= distance_threshold. Every scored event also gets a ``scores`` row with its cosine distance to
the baseline centroid (None while the baseline is still being collected).

Baselines persist in the warehouse (``drift_store.py``, table ``drift_baselines``): a completed baseline
is one more row of its batch, written through the pipeline's sink before the offsets are committed; the
first time a key is seen after a start (or after its state left the LRU), its baseline is read back, so a
restarted worker, scorer child or consumer-group member that takes over a partition goes on comparing
against the same baseline. Only baselines of the same ``Identity`` (embedding model and its files,
dimension, max_length, baseline definition) are read back; any other starts a new one. Every
``baseline_refresh`` the scorer drops keys whose current baseline in the warehouse is another one (reset
by an operator, or completed by another consumer). Open windows and baselines still being collected are
not persisted: after a restart they start over from the next event. Without a store (``store=None``:
tests, benchmarks) baselines live in memory only (their rows are still emitted). Kafka keys events by
tenant, so one consumer sees all of a tenant's events.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from consumers.contracts import Row, TableRows
from consumers.models.device import select_device, select_dtype
from consumers.models.embedding import Embedder
from consumers.scorers.common import RowMaker, field_text, utcnow
from consumers.scorers.config import ScorersConfig
from consumers.scorers.drift_stats import centroid_cosine_distance, mmd2_permutation, unit
from consumers.scorers.drift_store import BaselineStore, Identity, Key, StoredBaseline, baseline_identity, baseline_row
from schemas.events import Event

log = logging.getLogger(__name__)
BACKEND = "sentence-transformers"


@dataclass(slots=True)
class _KeyState:
    baseline: list[np.ndarray] = field(default_factory=list)
    b_start: datetime | None = None  # ts_end of the first and last baseline event
    b_end: datetime | None = None
    base: np.ndarray | None = None  # frozen baseline sample (<= max_baseline rows)
    base_size: int = 0
    centroid: np.ndarray | None = None  # unit vector
    baseline_id: str | None = None  # once frozen (or read back)
    window: list[np.ndarray] = field(default_factory=list)
    w_start: datetime | None = None
    w_end: datetime | None = None

    @classmethod
    def stored(cls, b: StoredBaseline) -> _KeyState:
        return cls(base=b.sample, base_size=b.size, centroid=b.centroid, baseline_id=b.baseline_id)


class DriftScorer:
    name = "drift"

    def __init__(self, cfg: ScorersConfig, embedder: Embedder | None = None, *,
                 store: BaselineStore | None = None) -> None:
        self._cfg, self._d = cfg, cfg.drift
        self._embedder = embedder
        self._device = embedder.device if embedder is not None else None
        self._store = store
        self.identity: Identity | None = None  # set by start()
        self._states: OrderedDict[Key, _KeyState] = OrderedDict()
        self._fresh: list[Row] = []  # drift_baselines rows of the baselines completed in this batch
        self._refreshed = 0.0  # time.monotonic() of the last look at the current baselines
        self._rng = np.random.default_rng(cfg.drift.seed)
        self.dropped_windows = 0  # windows closed below min_window

    async def start(self) -> None:
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(self._load)
            self._device = self._embedder.device
            log.info("drift scorer: embed model %s", self._embedder.name)
        if self.identity is None:
            self.identity = await asyncio.to_thread(baseline_identity, self._cfg, self._embedder)
            self._refreshed = time.monotonic()
            log.info("drift scorer: baselines %s (identity %s)",
                     "in memory only" if self._store is None else "persisted", self.identity.id)

    def _load(self) -> Embedder:
        device = select_device(self._cfg.device)
        return Embedder(
            self._d.embed_model, device, select_dtype(self._cfg.dtype, device),
            batch_size=self._cfg.forward_batch_size(device.type), max_length=self._cfg.max_length,
            buckets=self._cfg.length_buckets, threads=self._cfg.tokenizer_threads,
        )

    async def stop(self) -> None:
        self._embedder = None

    async def score(self, events: Sequence[Event]) -> TableRows:
        if self._embedder is None or self.identity is None:
            raise RuntimeError("DriftScorer.start() was not awaited")
        if self._store is not None:
            await self._sync(self._store, self.identity.id, events)
        return await asyncio.to_thread(self._score, self._embedder, events)

    async def _sync(self, store: BaselineStore, identity: str, events: Sequence[Event]) -> None:
        """Before a batch (and before any state changes, so a failed read retries cleanly): every
        ``baseline_refresh``, drop the keys whose current baseline in the warehouse is not theirs; then read
        the baselines of the batch's keys not in memory (a key without one starts collecting)."""
        every = self._d.baseline_refresh
        if every is not None and time.monotonic() - self._refreshed >= every.total_seconds():
            current = await store.current(identity)
            self._refreshed = time.monotonic()
            for key in [k for k, st in self._states.items() if current.get(k) != st.baseline_id]:
                del self._states[key]
        keys = dict.fromkeys((ev.tenant, ev.request_model or "", f) for ev in events for f in self._d.fields)
        missing = [k for k in keys if k not in self._states]
        if missing:
            stored = await store.load(identity, missing)
            for k in missing:
                self._states[k] = _KeyState.stored(stored[k]) if k in stored else _KeyState()

    def _score(self, embedder: Embedder, events: Sequence[Event]) -> TableRows:
        self._fresh = []
        texts, slots = [], []
        for ev in events:
            for f in self._d.fields:
                text = field_text(ev, f)
                if text:
                    texts.append(text)
                    slots.append((ev, f))
        emb = embedder.encode(texts)
        labels: list[str] = []
        drift: list[Row] = []
        # slots scored against a frozen centroid, grouped by centroid: one matrix-vector product each
        by_centroid: dict[int, tuple[np.ndarray, list[int]]] = {}
        for j, (ev, f) in enumerate(slots):
            label, centroid, closed = self._observe(ev, f, emb[j], embedder.name)
            labels.append(label)
            if centroid is not None:
                by_centroid.setdefault(id(centroid), (centroid, []))[1].append(j)
            drift += closed
        values: list[float | None] = [None] * len(slots)
        for centroid, idx in by_centroid.values():
            e = emb[idx]
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            for j, v in zip(idx, (1.0 - e @ centroid).tolist(), strict=True):
                values[j] = v
        mk = RowMaker(self.name, BACKEND, embedder.name, "local")
        scores = [mk.row(ev, "centroid_distance", f, v, label)  # type: ignore[arg-type]
                  for (ev, f), v, label in zip(slots, values, labels, strict=True)]
        while len(self._states) > self._d.max_keys:  # LRU, after the batch: its own keys stay in it
            self._states.popitem(last=False)
        fresh, self._fresh = self._fresh, []
        return {"scores": scores, "drift": drift, "drift_baselines": fresh}

    def _state(self, key: Key) -> _KeyState:
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _KeyState()
        self._states.move_to_end(key)
        return st

    def _observe(
        self, ev: Event, f: str, e: np.ndarray, embed_name: str
    ) -> tuple[str, np.ndarray | None, list[Row]]:
        """Feed one embedding to its key: (label, the centroid its distance is taken to, closed windows)."""
        key = (ev.tenant, ev.request_model or "", f)
        st = self._state(key)
        pending = self._baseline(key, st, ev.ts_end, e)
        if pending is not None or st.centroid is None:
            return pending or "baseline", None, []
        closed, ts, span = [], ev.ts_end, self._d.window_seconds
        if st.w_start is not None and span is not None and ts - st.w_start >= span:
            closed = self._close(key, st, embed_name)
        st.window.append(e)
        st.w_start = ts if st.w_start is None else min(st.w_start, ts)
        st.w_end = ts if st.w_end is None else max(st.w_end, ts)
        if len(st.window) >= self._d.window_events:
            closed += self._close(key, st, embed_name)
        return "", st.centroid, closed

    def _baseline(self, key: Key, st: _KeyState, ts: datetime, e: np.ndarray) -> str | None:
        """Feed the baseline while it is open: a label when the event went (or belongs) there, else None."""
        d = self._d
        if st.centroid is not None:
            return None
        if d.baseline_start is not None and d.baseline_end is not None:
            if ts < d.baseline_start:
                return "before_baseline"
            if ts < d.baseline_end:
                self._collect(st, ts, e)
                return "baseline"
            if not st.baseline:
                return "no_baseline"
            self._freeze(key, st)
            return None
        self._collect(st, ts, e)
        if len(st.baseline) >= d.baseline_events:
            self._freeze(key, st)
        return "baseline"

    @staticmethod
    def _collect(st: _KeyState, ts: datetime, e: np.ndarray) -> None:
        st.baseline.append(e)
        st.b_start = ts if st.b_start is None else min(st.b_start, ts)
        st.b_end = ts if st.b_end is None else max(st.b_end, ts)

    def _freeze(self, key: Key, st: _KeyState) -> None:
        """Complete the baseline; its ``drift_baselines`` row goes out with this batch's rows."""
        base = np.stack(st.baseline)
        st.base_size = len(base)
        st.centroid = unit(base.mean(axis=0))
        if len(base) > self._d.max_baseline:
            base = base[self._rng.choice(len(base), self._d.max_baseline, replace=False)]
        st.base, st.baseline = base, []
        st.baseline_id = uuid.uuid4().hex
        if self.identity is not None and st.b_start is not None and st.b_end is not None:
            stored = StoredBaseline(st.baseline_id, st.base_size, st.centroid, base, utcnow(), st.b_start, st.b_end)
            self._fresh.append(baseline_row(key, self.identity, stored))

    def _close(self, key: Key, st: _KeyState, embed_name: str) -> list[Row]:
        window, start, end = np.stack(st.window), st.w_start, st.w_end
        st.window, st.w_start, st.w_end = [], None, None
        if len(window) < self._d.min_window or st.base is None or st.centroid is None:
            self.dropped_windows += 1
            return []
        dist = centroid_cosine_distance(st.centroid, window)
        mmd2, pvalue = mmd2_permutation(st.base, window, self._d.permutations, self._rng, self._device)
        drifted = int(pvalue < self._d.pvalue_threshold and dist >= self._d.distance_threshold)
        now = utcnow()
        tenant, model, f = key
        return [
            {
                "window_start": start, "window_end": end, "tenant": tenant, "model": model, "field": f,
                "metric": metric, "value": float(value), "baseline_size": st.base_size,
                "window_size": len(window), "drifted": drifted, "backend": BACKEND,
                "embed_model": embed_name, "computed_at": now,
            }
            for metric, value in (("centroid_cosine", dist), ("mmd2", mmd2), ("mmd2_pvalue", pvalue))
        ]

