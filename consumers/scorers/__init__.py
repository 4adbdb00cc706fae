"""Scorers: toxicity, factuality and embedding drift over batches of events.

``SCORER_FACTORIES`` maps a scorer name to a factory taking the validated ``ScorersConfig``. Factories
import their module lazily, so importing this package pulls in neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable

from consumers.contracts import Scorer
from consumers.scorers.config import ScorersConfig


def _toxicity(cfg: ScorersConfig) -> Scorer:
    from consumers.scorers.toxicity import ToxicityScorer

    return ToxicityScorer(cfg)


def _factuality(cfg: ScorersConfig) -> Scorer:
    from consumers.scorers.factuality import FactualityScorer

    return FactualityScorer(cfg)


def _drift(cfg: ScorersConfig) -> Scorer:
    from consumers.scorers.drift import DriftScorer

    return DriftScorer(cfg)


SCORER_FACTORIES: dict[str, Callable[[ScorersConfig], Scorer]] = {
    "toxicity": _toxicity,
    "factuality": _factuality,
    "drift": _drift,
}

__all__ = ["SCORER_FACTORIES", "ScorersConfig"]
