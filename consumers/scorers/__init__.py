"""Scorers: toxicity, factuality and embedding drift over batches of events.

``SCORER_FACTORIES`` maps a scorer name to a factory taking the validated ``ScorersConfig`` and, for a
scorer that keeps state in the warehouse (drift baselines), the ``WarehouseReads`` it reads it with (None:
state in memory only). Factories import their module lazily, so importing this package pulls in neither
torch nor transformers.
"""

from __future__ import annotations

import os
from typing import Protocol

from consumers.contracts import Scorer
from consumers.scorers.config import ScorersConfig
from consumers.scorers.reads import WarehouseReads


class ScorerFactory(Protocol):
    def __call__(self, cfg: ScorersConfig, /, *, reads: WarehouseReads | None = None) -> Scorer: ...


def limit_cpu_threads(cfg: ScorersConfig) -> None:
    """Apply ``cpu_threads`` (process-wide) before a model loads: torch's intra-op pool, and the fast
    tokenizers' Rust pool (RAYON_NUM_THREADS is read when that pool first starts)."""
    if cfg.cpu_threads is None:
        return
    os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.cpu_threads))
    import torch

    if torch.get_num_threads() != cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)


def _toxicity(cfg: ScorersConfig, *, reads: WarehouseReads | None = None) -> Scorer:
    limit_cpu_threads(cfg)
    from consumers.scorers.toxicity import ToxicityScorer

    return ToxicityScorer(cfg)


def _factuality(cfg: ScorersConfig, *, reads: WarehouseReads | None = None) -> Scorer:
    limit_cpu_threads(cfg)
    from consumers.scorers.factuality import FactualityScorer

    return FactualityScorer(cfg)


def _drift(cfg: ScorersConfig, *, reads: WarehouseReads | None = None) -> Scorer:
    limit_cpu_threads(cfg)
    from consumers.scorers.drift import DriftScorer
    from consumers.scorers.drift_store import BaselineStore

    return DriftScorer(cfg, store=None if reads is None else BaselineStore(reads))


SCORER_FACTORIES: dict[str, ScorerFactory] = {
    "toxicity": _toxicity,
    "factuality": _factuality,
    "drift": _drift,
}

__all__ = ["SCORER_FACTORIES", "ScorerFactory", "ScorersConfig", "WarehouseReads", "limit_cpu_threads"]
