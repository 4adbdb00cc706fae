"""Toxicity scorer: every label of the backend as a metric, on the prompt and/or the response."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from consumers.contracts import Row, TableRows
from consumers.scorers.common import NOT_APPLICABLE, RowMaker, field_text
from consumers.scorers.config import ScorersConfig
from consumers.scorers.toxicity_backends import ToxicityBackend, build_backend
from schemas.events import Event

log = logging.getLogger(__name__)


class ToxicityScorer:
    name = "toxicity"

    def __init__(self, cfg: ScorersConfig, backend: ToxicityBackend | None = None) -> None:
        self._cfg = cfg
        self._backend = backend

    @property
    def backend(self) -> ToxicityBackend:
        if self._backend is None:
            raise RuntimeError("ToxicityScorer.start() was not awaited")
        return self._backend

    async def start(self) -> None:
        if self._backend is None:
            self._backend = await asyncio.to_thread(build_backend, self._cfg)
            b = self._backend
            log.info("toxicity scorer: backend=%s model=%s version=%s", b.backend, b.model, b.model_version)

    async def stop(self) -> None:
        self._backend = None  # the model stays in the process cache for other scorer instances

    async def score(self, events: Sequence[Event]) -> TableRows:
        # text extraction, inference and ~12 rows per event all run off the event loop
        return await asyncio.to_thread(self._score, self.backend, events)

    def _score(self, backend: ToxicityBackend, events: Sequence[Event]) -> TableRows:
        texts: list[str] = []
        slots: list[tuple[int, str]] = []  # (event index, target) per text
        for i, ev in enumerate(events):
            for target in self._cfg.toxicity.targets:
                text = field_text(ev, target)
                if text:
                    texts.append(text)
                    slots.append((i, target))
        probs = backend.predict(texts) if texts else np.zeros((0, 0))
        return {"scores": self._rows(events, slots, probs)}

    def _rows(self, events: Sequence[Event], slots: list[tuple[int, str]], probs: np.ndarray) -> list[Row]:
        b, threshold = self.backend, self._cfg.toxicity.threshold
        mk = RowMaker(self.name, b.backend, b.model, b.model_version)
        scored = dict(zip(slots, probs.tolist(), strict=True))  # Python floats: no numpy scalar per value
        rows: list[Row] = []
        for i, ev in enumerate(events):
            for target in self._cfg.toxicity.targets:
                values = scored.get((i, target))
                if values is None:
                    rows += mk.not_applicable(ev, b.metrics, target, NOT_APPLICABLE)  # type: ignore[arg-type]
                    continue
                labels = ["toxic" if v >= threshold else "ok" for v in values]
                rows += mk.rows(ev, target, b.metrics, values, labels)  # type: ignore[arg-type]
        return rows
