"""Per-stage busy time of the scorer code: wraps named functions with accumulating timers.

Busy seconds are summed over every thread (tokenizer pool, inference worker, event loop), so stages
that run concurrently can add up to more than the wall time. On a GPU, forward launches are
asynchronous: their time shows up where the code first waits (the result copy), not in ``forward``.
Functions that do not exist in the code under test are skipped, so one list serves old and new code.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

# (stage label, module, attribute path): the first matching attribute(s) of each label are wrapped
TARGETS: list[tuple[str, str, str]] = [
    ("texts (field/context extraction)", "consumers.scorers.toxicity", "field_text"),
    ("texts (field/context extraction)", "consumers.scorers.drift", "field_text"),
    ("texts (field/context extraction)", "consumers.scorers.factuality", "FactualityScorer._item"),
    ("texts (field/context extraction)", "consumers.scorers.common", "batch_texts"),
    ("tokenize", "consumers.models.batching", "BatchRunner.tokenize"),
    ("tokenize", "consumers.models.batching", "tokenize"),
    ("pad + tensors", "consumers.models.batching", "BatchRunner.batches"),
    ("pad + tensors", "consumers.models.batching", "pad_batches"),
    ("forward launch (+ h2d)", "consumers.models.batching", "BatchRunner._launch"),
    ("sync + d2h + reorder", "consumers.models.batching", "BatchRunner._gather"),
    ("drift: per-event state", "consumers.scorers.drift", "DriftScorer._observe"),
    ("drift: per-event state", "consumers.scorers.drift", "DriftScorer._assign"),
    ("drift: MMD² permutations", "consumers.scorers.drift_stats", "mmd2_permutation"),
    ("rows (dict building)", "consumers.scorers.toxicity", "ToxicityScorer._rows"),
    ("rows (dict building)", "consumers.scorers.common", "RowMaker.row"),
    ("rows (dict building)", "consumers.scorers.common", "RowMaker.rows"),
    ("rows (dict building)", "consumers.scorers.factuality", "FactualityScorer._nli_rows"),
]


class Stages:
    """Accumulated busy seconds per stage label (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []
        self._depth = threading.local()

    def add(self, label: str, secs: float, calls: int = 1) -> None:
        with self._lock:
            self.seconds[label] = self.seconds.get(label, 0.0) + secs
            self.calls[label] = self.calls.get(label, 0) + calls

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.calls.clear()

    def install(self) -> Stages:
        for label, module, attr in TARGETS:
            mod = importlib.import_module(module)
            *owner_path, name = attr.split(".")
            owner: Any = mod
            for part in owner_path:
                owner = getattr(owner, part, None)
            if owner is None or not hasattr(owner, name):
                continue
            self._wrap(owner, name, label)
        return self

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        original = owner.__dict__[name] if name in getattr(owner, "__dict__", {}) else getattr(owner, name)
        if isinstance(original, staticmethod):
            fn, rewrap = original.__func__, staticmethod
        else:
            fn, rewrap = original, (lambda f: f)
        depth = self._depth

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            # nested calls of the same label (rows inside _rows) count once
            active = getattr(depth, label, 0)
            setattr(depth, label, active + 1)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(depth, label, active)
                if not active:
                    self.add(label, time.perf_counter() - t)

        setattr(owner, name, rewrap(timed))
        self._undo.append(lambda: setattr(owner, name, original))

    def report(self, wall: float, events: int) -> str:
        lines = [f"    {'stage':<36} {'busy s':>8} {'% wall':>7} {'µs/event':>9}"]
        for label, secs in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {label:<36} {secs:>8.3f} {100 * secs / wall:>6.1f}% {1e6 * secs / events:>9.1f}")
        lines.append(f"    {'wall':<36} {wall:>8.3f} {100.0:>6.1f}% {1e6 * wall / events:>9.1f}")
        return "\n".join(lines)
