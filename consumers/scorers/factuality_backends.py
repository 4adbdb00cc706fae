"""Factuality backends: an NLI cross-encoder, and the offline embedding + consistency fallback.

Blocking code: the scorer calls these from a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from consumers.models.batching import BatchRunner, fast_tokenizer
from consumers.models.embedding import Embedder
from consumers.models.loading import Classifier

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?")
_ENTITY = re.compile(r"(?<=[a-z,;:]\s)([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)")


class NliBackend:
    """(premise, hypothesis) -> [entailment, contradiction] probabilities via softmax over the NLI head."""

    backend = "nli"

    def __init__(self, clf: Classifier, *, batch_size: int, max_length: int, buckets: Sequence[int],
                 threads: int) -> None:
        labels = [label.lower() for label in clf.labels]
        try:
            self._entail = next(i for i, lab in enumerate(labels) if lab.startswith("entail"))
            self._contra = next(i for i, lab in enumerate(labels) if lab.startswith("contradict"))
        except StopIteration as exc:
            raise ValueError(f"{clf.name}: NLI labels must name entailment and contradiction, got {labels}") \
                from exc
        self.model, self.model_version = clf.name, clf.version
        model = clf.model
        pick = torch.tensor([self._entail, self._contra])

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            probs = torch.softmax(model(**inputs).logits.float(), dim=-1)
            return probs[:, pick.to(probs.device)]

        type_vocab = getattr(getattr(model, "config", None), "type_vocab_size", 0) or 0
        self._runner = BatchRunner(
            fast_tokenizer(clf.tokenizer, max_length), forward, next(model.parameters()).device,
            pad_id=clf.tokenizer.pad_token_id or 0, batch_size=batch_size, max_length=max_length,
            buckets=buckets, threads=threads, token_type_ids=type_vocab > 1,
        )

    def pair_probs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(n, 2): entailment, contradiction."""
        if not pairs:
            return np.zeros((0, 2), dtype=np.float32)
        return self._runner.run(list(pairs)).reshape(len(pairs), 2)


def numbers(text: str) -> set[str]:
    return {m.group(0).replace(",", "").rstrip("%").lstrip("+") for m in _NUMBER.finditer(text)}


def entities(text: str) -> set[str]:
    """Capitalised word runs that do not start a sentence (a cheap proper-noun proxy)."""
    return {m.group(1).lower() for m in _ENTITY.finditer(text)}


def number_consistency(response: str, context: str) -> float | None:
    """Share of the response's numbers that the context also states (None: the response has none)."""
    found = numbers(response)
    return len(found & numbers(context)) / len(found) if found else None


def entity_consistency(response: str, context: str) -> float | None:
    """Share of the response's proper-noun runs found in the context (None: the response has none)."""
    found = entities(response)
    lowered = context.lower()
    return sum(1 for e in found if e in lowered) / len(found) if found else None


class EmbeddingSupport:
    """Offline fallback: max cosine of each response sentence to the context sentences."""

    backend = "embedding+consistency"

    def __init__(self, embedder: Embedder, max_context_sentences: int = 64) -> None:
        self._embedder = embedder
        self._max_ctx = max_context_sentences
        self.model = embedder.name
        self.model_version = "local"

    def sentence_support(self, contexts: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]
                         ) -> list[np.ndarray]:
        """Per event: an array with, for each hypothesis sentence, its best similarity to the context."""
        ctx = [list(c)[: self._max_ctx] for c in contexts]
        flat = [s for c in ctx for s in c] + [s for h in hypotheses for s in h]
        emb = self._embedder.encode(flat)
        out, ci = [], 0
        hi = sum(len(c) for c in ctx)
        for c, h in zip(ctx, hypotheses, strict=True):
            c_emb, h_emb = emb[ci : ci + len(c)], emb[hi : hi + len(h)]
            ci, hi = ci + len(c), hi + len(h)
            out.append((h_emb @ c_emb.T).max(axis=1) if len(c) and len(h) else np.zeros(len(h)))
        return out
