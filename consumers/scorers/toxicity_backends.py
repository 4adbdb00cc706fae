"""Toxicity backends: Detoxify checkpoints, any HF sequence classifier, alt-profanity-check.

Each backend maps texts to an (n, len(metrics)) array of probabilities in [0, 1]. Blocking: the scorer
calls ``predict`` from a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import version as pkg_version
from typing import Protocol

import numpy as np
import torch

from consumers.models.batching import BatchRunner, fast_tokenizer
from consumers.models.device import select_device, select_dtype
from consumers.models.loading import (
    Classifier,
    detoxify_checkpoint,
    load_detoxify,
    load_hf_classifier,
    load_once,
)
from consumers.scorers.config import ScorersConfig

log = logging.getLogger(__name__)


class ToxicityBackend(Protocol):
    backend: str  # recorded on every row
    model: str
    model_version: str
    metrics: tuple[str, ...]

    def predict(self, texts: Sequence[str]) -> np.ndarray: ...


class ClassifierBackend:
    """A transformers classifier (Detoxify or generic HF) behind the bucketed runner."""

    def __init__(self, clf: Classifier, backend: str, metrics: tuple[str, ...], cfg: ScorersConfig) -> None:
        self.backend, self.model, self.model_version, self.metrics = backend, clf.name, clf.version, metrics
        model, multi = clf.model, clf.multi_label

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            logits = model(**inputs).logits.float()
            return torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)

        type_vocab = getattr(getattr(clf.model, "config", None), "type_vocab_size", 0) or 0
        self._runner = BatchRunner(
            fast_tokenizer(clf.tokenizer, cfg.max_length),
            forward,
            next(clf.model.parameters()).device,
            pad_id=clf.tokenizer.pad_token_id or 0,
            batch_size=cfg.forward_batch_size(next(clf.model.parameters()).device.type),
            max_length=cfg.max_length,
            buckets=cfg.length_buckets,
            threads=cfg.tokenizer_threads,
            token_type_ids=type_vocab > 1,
        )

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self._runner.run(list(texts)).reshape(len(texts), -1)


class ProfanityBackend:
    """alt-profanity-check: TF-IDF + linear SVM shipped in the wheel (offline); one metric, 'toxicity'."""

    backend = "profanity-check"
    model = "alt-profanity-check"
    metrics = ("toxicity",)

    def __init__(self) -> None:
        from profanity_check import predict_prob

        self._predict = predict_prob
        self.model_version = pkg_version("alt-profanity-check")

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._predict(list(texts)), dtype=np.float32).reshape(-1, 1)


def _hf_metrics(labels: Sequence[str], toxic_labels: Sequence[str]) -> tuple[str, ...]:
    names = [label.lower().replace(" ", "_") for label in labels]
    if "toxicity" not in names:
        wanted = {t.lower() for t in toxic_labels}
        names = ["toxicity" if n in wanted else n for n in names]
    return tuple(names)


def build_backend(cfg: ScorersConfig) -> ToxicityBackend:
    """Pick and load the configured backend. ``auto``: Detoxify if its weights are local, else profanity."""
    tcfg = cfg.toxicity
    if tcfg.backend == "profanity":
        return load_once(("toxicity", "profanity"), ProfanityBackend)
    device = select_device(cfg.device)
    dtype = select_dtype(cfg.dtype, device)
    if tcfg.backend == "hf":
        name = str(tcfg.hf_model)
        clf = load_once(
            ("hf-classifier", name, str(device), str(dtype)),
            lambda: load_hf_classifier(name, device, dtype, cfg.compile),
        )
        return ClassifierBackend(clf, "hf", _hf_metrics(clf.labels, tcfg.hf_toxic_labels), cfg)
    from consumers.models.loading import ModelUnavailable

    try:
        ckpt = detoxify_checkpoint(tcfg.variant, tcfg.checkpoint_path)
        clf = load_once(
            ("detoxify", str(ckpt), str(tcfg.base_model_dir), str(device), str(dtype)),
            lambda: load_detoxify(ckpt, tcfg.base_model_dir, device, dtype, cfg.compile),
        )
    except ModelUnavailable as exc:
        if tcfg.backend == "detoxify":
            raise
        log.warning("toxicity: Detoxify weights unavailable (%s); using alt-profanity-check", exc)
        return load_once(("toxicity", "profanity"), ProfanityBackend)
    return ClassifierBackend(clf, f"detoxify-{tcfg.variant}", clf.labels, cfg)
