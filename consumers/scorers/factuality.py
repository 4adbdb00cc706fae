"""Factuality scorer: is the response supported by the context the request carried?

Context = system/developer/tool messages + retrieved documents (``request.context``). No context or no
response -> the metrics are recorded as not applicable (value None), never guessed.

NLI backend (metrics on target 'response'):
  support        mean entailment probability over the response sentences   label supported|unsupported
  contradiction  max contradiction probability over the sentences          label contradicted|ok
  worst_support  min entailment probability                                 label "start:end" char span
Embedding fallback (backend 'embedding+consistency'): support / worst_support are cosine similarities of
each sentence to its nearest context sentence; plus number_consistency and entity_consistency (shares of
the response's numbers / proper nouns found in the context; None when it has none).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from consumers.contracts import Row, TableRows
from consumers.models.device import select_device, select_dtype
from consumers.models.embedding import Embedder
from consumers.models.loading import ModelUnavailable, load_hf_classifier, load_once
from consumers.scorers.common import RowMaker, context_texts, response_text, split_sentences
from consumers.scorers.config import ScorersConfig
from consumers.scorers.factuality_backends import (
    EmbeddingSupport,
    NliBackend,
    entity_consistency,
    number_consistency,
)
from schemas.events import Event

log = logging.getLogger(__name__)
NLI_METRICS = ("support", "contradiction", "worst_support")
EMBED_METRICS = ("support", "worst_support", "number_consistency", "entity_consistency")


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    context: str
    response: str
    spans: list[tuple[int, int]]


def build_backend(cfg: ScorersConfig) -> NliBackend | EmbeddingSupport:
    fcfg, device = cfg.factuality, select_device(cfg.device)
    dtype = select_dtype(cfg.dtype, device)
    common = {"batch_size": cfg.forward_batch_size(device.type), "max_length": cfg.max_length,
              "buckets": cfg.length_buckets, "threads": cfg.tokenizer_threads}
    if fcfg.backend in ("auto", "nli"):
        try:
            clf = load_once(("hf-classifier", fcfg.nli_model, str(device), str(dtype)),
                            lambda: load_hf_classifier(fcfg.nli_model, device, dtype, cfg.compile))
            return NliBackend(clf, **common)  # type: ignore[arg-type]
        except ModelUnavailable as exc:
            if fcfg.backend == "nli":
                raise
            log.warning("factuality: NLI model unavailable (%s); using embedding support + consistency", exc)
    return EmbeddingSupport(Embedder(fcfg.embed_model, device, dtype, **common))  # type: ignore[arg-type]


class FactualityScorer:
    name = "factuality"

    def __init__(self, cfg: ScorersConfig, backend: NliBackend | EmbeddingSupport | None = None) -> None:
        self._cfg, self._backend = cfg, backend

    @property
    def backend(self) -> NliBackend | EmbeddingSupport:
        if self._backend is None:
            raise RuntimeError("FactualityScorer.start() was not awaited")
        return self._backend

    async def start(self) -> None:
        if self._backend is None:
            self._backend = await asyncio.to_thread(build_backend, self._cfg)
            log.info("factuality scorer: backend=%s model=%s", self._backend.backend, self._backend.model)

    async def stop(self) -> None:
        self._backend = None

    async def score(self, events: Sequence[Event]) -> TableRows:
        # sentence splitting, inference and rows all run off the event loop
        return await asyncio.to_thread(self._score, self.backend, events)

    def _score(self, b: NliBackend | EmbeddingSupport, events: Sequence[Event]) -> TableRows:
        metrics = NLI_METRICS if isinstance(b, NliBackend) else EMBED_METRICS
        mk = RowMaker(self.name, b.backend, b.model, b.model_version)
        rows: list[Row] = []
        items: list[_Item] = []
        for i, ev in enumerate(events):
            item = self._item(i, ev)
            if isinstance(item, str):
                rows += mk.not_applicable(ev, metrics, "response", item)
            else:
                items.append(item)
        if items:
            if isinstance(b, NliBackend):
                rows += self._nli(b, mk, events, items)
            else:
                rows += self._embedding(b, mk, events, items)
        return {"scores": rows}

    def _item(self, i: int, ev: Event) -> _Item | str:
        ctx = "\n".join(context_texts(ev))[: self._cfg.factuality.max_context_chars]
        resp = response_text(ev)
        if not ctx.strip():
            return "no_context"
        if not resp:
            return "no_response"
        if self._cfg.factuality.unit == "response":
            spans = [(0, len(resp))]
        else:
            spans = split_sentences(resp) or [(0, len(resp))]
            if len(spans) > self._cfg.factuality.max_sentences:  # keep the longest, in text order
                longest = sorted(spans, key=lambda s: s[0] - s[1])[: self._cfg.factuality.max_sentences]
                spans = sorted(longest)
        return _Item(i, ctx, resp, spans)

    def _nli(self, b: NliBackend, mk: RowMaker, events: Sequence[Event], items: list[_Item]) -> list[Row]:
        pairs = [(it.context, it.response[s:e]) for it in items for s, e in it.spans]
        return self._nli_rows(mk, events, items, b.pair_probs(pairs))

    def _nli_rows(self, mk: RowMaker, events: Sequence[Event], items: list[_Item], probs: np.ndarray
                  ) -> list[Row]:
        """Per item: mean entailment, max contradiction, the least-entailed sentence (segment reductions)."""
        counts = np.fromiter((len(it.spans) for it in items), dtype=np.int64, count=len(items))
        starts = np.zeros(len(items), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        entail, contra_p = probs[:, 0], probs[:, 1]
        support = (np.add.reduceat(entail, starts) / counts).tolist()
        contra = np.maximum.reduceat(contra_p, starts).tolist()
        order = np.lexsort((entail, np.repeat(np.arange(len(items)), counts)))  # per item, by entailment
        worst_flat = order[starts]  # first (least entailed; lowest index on ties, as argmin) of each item
        worst_value = entail[worst_flat].tolist()
        worst = (worst_flat - starts).tolist()
        thr, rows = self._cfg.factuality.threshold, []
        for k, it in enumerate(items):
            s, c = support[k], contra[k]
            span = it.spans[worst[k]]
            rows += mk.rows(events[it.index], "response", NLI_METRICS, [s, c, worst_value[k]], [
                "supported" if s >= thr else "unsupported", "contradicted" if c >= thr else "ok",
                f"{span[0]}:{span[1]}"])
        return rows

    def _embedding(
        self, b: EmbeddingSupport, mk: RowMaker, events: Sequence[Event], items: list[_Item]
    ) -> list[Row]:
        ctx_sents = [[it.context[s:e] for s, e in split_sentences(it.context)] for it in items]
        hyps = [[it.response[s:e] for s, e in it.spans] for it in items]
        sims = b.sentence_support(ctx_sents, hyps)
        thr, rows = self._cfg.factuality.embedding_threshold, []
        for it, sim in zip(items, sims, strict=True):
            ev, worst = events[it.index], int(np.argmin(sim))
            support = float(sim.mean())
            span = f"{it.spans[worst][0]}:{it.spans[worst][1]}"
            nums = number_consistency(it.response, it.context)
            ents = entity_consistency(it.response, it.context)
            rows += [
                mk.row(ev, "support", "response", support, "supported" if support >= thr else "unsupported"),
                mk.row(ev, "worst_support", "response", float(sim[worst]), span),
                mk.row(ev, "number_consistency", "response", nums, "not_applicable" if nums is None else ""),
                mk.row(ev, "entity_consistency", "response", ents, "not_applicable" if ents is None else ""),
            ]
        return rows
