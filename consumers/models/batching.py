"""Length-bucketed batching with parallel host tokenization.

``BatchRunner.run(texts)`` tokenizes chunks of texts on a thread pool (the Rust tokenizer releases the
GIL, so chunks run in parallel) while the calling thread pads each finished chunk into batches whose
lengths are a few fixed buckets (shapes repeat, so GPU kernels are chosen once) and runs the model.
Results stay on the device until the end and come back as one float32 array in input order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
Texts = Sequence[str] | Sequence[tuple[str, str]]

_POOL_LOCK = threading.Lock()
_POOLS: dict[int, ThreadPoolExecutor] = {}


def tokenizer_pool(threads: int) -> ThreadPoolExecutor:
    """One process-wide tokenization pool per size (threads are cheap; the pool lives with the process)."""
    with _POOL_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="tokenize")
        return _POOLS[threads]


def bucket_for(length: int, buckets: Sequence[int], max_length: int) -> int:
    """Smallest bucket >= length; beyond the last bucket round up to a multiple of 64 (capped)."""
    for b in buckets:
        if length <= b:
            return b
    return min(max_length, -(-length // 64) * 64)


def plan_batches(
    lengths: Sequence[int], batch_size: int, buckets: Sequence[int], max_length: int
) -> list[tuple[int, np.ndarray]]:
    """Group positions by bucket, then split each bucket into batches: [(padded_length, positions)]."""
    by_bucket: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_bucket.setdefault(bucket_for(n, buckets, max_length), []).append(i)
    plan = []
    for length in sorted(by_bucket):
        pos = np.asarray(by_bucket[length], dtype=np.int64)
        plan.extend((length, pos[s : s + batch_size]) for s in range(0, len(pos), batch_size))
    return plan


def fast_tokenizer(hf_tokenizer: object, max_length: int) -> Tokenizer:
    """A private copy of the HF tokenizer's Rust backend: truncation on, padding off (we pad to buckets)."""
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise TypeError("a fast (Rust) tokenizer is required")
    tok = Tokenizer.from_str(backend.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length, strategy="longest_first")
    return tok


@dataclass(frozen=True, slots=True)
class Batch:
    inputs: dict[str, torch.Tensor]
    positions: np.ndarray


class BatchRunner:
    """Runs ``forward`` over texts (or (premise, hypothesis) pairs) in length-bucketed batches."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        forward: Forward,
        device: torch.device,
        *,
        pad_id: int,
        batch_size: int,
        max_length: int,
        buckets: Sequence[int],
        threads: int = 4,
        token_type_ids: bool = False,
        chunk_batches: int = 8,
    ) -> None:
        self._tok, self._forward, self._device = tokenizer, forward, device
        self._pad_id, self._batch_size, self._max_length = pad_id, batch_size, max_length
        self._buckets = tuple(buckets)
        self._pool = tokenizer_pool(threads)
        self._token_type_ids = token_type_ids
        self._chunk = batch_size * chunk_batches

    def tokenize(self, texts: Texts) -> list[Encoding]:
        return self._tok.encode_batch(list(texts))

    def batches(self, encodings: Sequence[Encoding], offset: int = 0) -> list[Batch]:
        """Pad encodings into bucketed batches of host tensors (pinned when the device is a GPU)."""
        lengths = [len(e.ids) for e in encodings]
        plan = plan_batches(lengths, self._batch_size, self._buckets, self._max_length)
        out = []
        for length, pos in plan:
            ids = np.full((len(pos), length), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(pos), length), dtype=np.int64)
            types = np.zeros((len(pos), length), dtype=np.int64) if self._token_type_ids else None
            for row, p in enumerate(pos):
                enc = encodings[p]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
                if types is not None:
                    types[row, :n] = enc.type_ids
            inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            if types is not None:
                inputs["token_type_ids"] = torch.from_numpy(types)
            if self._device.type == "cuda":
                inputs = {k: v.pin_memory() for k, v in inputs.items()}
            out.append(Batch(inputs, pos + offset))
        return out

    def forward_batches(self, batches: Sequence[Batch], n: int) -> np.ndarray:
        """Run the model over prepared batches; results in input order as float32 (n, ...)."""
        outs, positions = self._launch(batches)
        return self._gather(outs, positions, n)

    def run(self, texts: Texts) -> np.ndarray:
        """Tokenize (in parallel chunks) + pad + forward. Call from a worker thread, not the event loop."""
        n = len(texts)
        if n == 0:
            return np.zeros((0,), dtype=np.float32)
        futures: list[Future[list[Encoding]]] = [
            self._pool.submit(self.tokenize, texts[s : s + self._chunk]) for s in range(0, n, self._chunk)
        ]
        outs: list[torch.Tensor] = []
        positions: list[np.ndarray] = []
        for k, fut in enumerate(futures):  # GPU runs chunk k while the pool tokenizes chunk k+1
            o, p = self._launch(self.batches(fut.result(), offset=k * self._chunk))
            outs += o
            positions += p
        return self._gather(outs, positions, n)

    def _launch(self, batches: Sequence[Batch]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        outs, positions = [], []
        with torch.inference_mode():
            for b in batches:
                inputs = {k: v.to(self._device, non_blocking=True) for k, v in b.inputs.items()}
                outs.append(self._forward(inputs))
                positions.append(b.positions)
        return outs, positions

    @staticmethod
    def _gather(outs: list[torch.Tensor], positions: list[np.ndarray], n: int) -> np.ndarray:
        with torch.inference_mode():
            stacked = torch.cat(outs).float().cpu().numpy()
        result = np.empty((n, *stacked.shape[1:]), dtype=np.float32)
        result[np.concatenate(positions)] = stacked
        return result
