"""Length-bucketed batching with host tokenization overlapped with the device.

``BatchRunner.run(texts)`` tokenizes and pads chunks of texts on a thread pool (the Rust tokenizer
releases the GIL; padding is vectorised, no Python loop per sequence) while the calling thread launches
finished chunks on the device. Batch lengths are a few fixed buckets (shapes repeat, so GPU kernels are
chosen once). Results stay on the device until the end and come back as one float32 array in input order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import chain

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


def _host_array(shape: tuple[int, int], fill: int, pin: bool) -> tuple[torch.Tensor, np.ndarray]:
    """An int64 host tensor (page-locked when ``pin``, so the copy to the GPU can be asynchronous)."""
    t = torch.full(shape, fill, dtype=torch.int64, pin_memory=pin)
    return t, t.numpy()


def pad_batches(
    encodings: Sequence[Encoding], plan: Sequence[tuple[int, np.ndarray]], *, pad_id: int,
    token_type_ids: bool, pin: bool, offset: int = 0,
) -> list[Batch]:
    """Pad encodings into the planned batches without a Python loop per sequence.

    All ids go into one flat array (one ``np.fromiter`` over the Rust-side lists), then each batch is a
    single scatter: row r, column c of a batch takes flat[start[pos[r]] + c] for c < length[pos[r]].
    """
    lengths = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
    starts = np.zeros(len(encodings), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    total = int(lengths.sum())
    flat = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
    flat_types = (np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64, count=total)
                  if token_type_ids else None)
    out = []
    for length, pos in plan:
        lens = lengths[pos]
        rows = np.repeat(np.arange(len(pos)), lens)
        cols = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        src = np.repeat(starts[pos], lens) + cols
        ids_t, ids = _host_array((len(pos), length), pad_id, pin)
        ids[rows, cols] = flat[src]
        mask_t, mask = _host_array((len(pos), length), 0, pin)
        mask[rows, cols] = 1
        inputs = {"input_ids": ids_t, "attention_mask": mask_t}
        if flat_types is not None:
            types_t, types = _host_array((len(pos), length), 0, pin)
            types[rows, cols] = flat_types[src]
            inputs["token_type_ids"] = types_t
        out.append(Batch(inputs, pos + offset))
    return out


class BatchRunner:
    """Runs ``forward`` over texts (or (premise, hypothesis) pairs) in length-bucketed batches.

    ``run`` splits the texts into chunks of ``chunk_batches * batch_size``; the tokenizer pool tokenizes
    and pads chunk k+1 (Rust batch encode, GIL released) while this thread launches chunk k on the device,
    so the GPU does not wait for the host after the first chunk. Launches go to the runner's own CUDA
    stream, so scorers running concurrently in one process overlap on the GPU too.
    """

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
        chunk_batches: int = 2,
    ) -> None:
        self._tok, self._forward, self._device = tokenizer, forward, device
        self._pad_id, self._batch_size, self._max_length = pad_id, batch_size, max_length
        self._buckets = tuple(buckets)
        self._pool = tokenizer_pool(threads)
        self._token_type_ids = token_type_ids
        self._chunk = batch_size * chunk_batches
        self._pin = device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        # offsets are never used: the variant without them is ~15% faster (tokenizers >= 0.20)
        self._encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    def tokenize(self, texts: Texts) -> list[Encoding]:
        return self._encode(texts if isinstance(texts, list) else list(texts))

    def batches(self, encodings: Sequence[Encoding], offset: int = 0) -> list[Batch]:
        """Pad encodings into bucketed batches of host tensors (pinned when the device is a GPU)."""
        if not encodings:
            return []
        lengths = [len(e) for e in encodings]
        plan = plan_batches(lengths, self._batch_size, self._buckets, self._max_length)
        return pad_batches(encodings, plan, pad_id=self._pad_id, token_type_ids=self._token_type_ids,
                           pin=self._pin, offset=offset)

    def prepare(self, texts: Texts, offset: int = 0) -> list[Batch]:
        """Tokenize + pad one chunk (runs on the tokenizer pool)."""
        return self.batches(self.tokenize(texts), offset)

    def forward_batches(self, batches: Sequence[Batch], n: int) -> np.ndarray:
        """Run the model over prepared batches; results in input order as float32 (n, ...)."""
        outs, positions = self._launch(batches)
        return self._gather(outs, positions, n)

    def run(self, texts: Texts) -> np.ndarray:
        """Tokenize + pad (on the pool, chunk k+1 while chunk k runs) + forward. Call from a worker thread."""
        n = len(texts)
        if n == 0:
            return np.zeros((0,), dtype=np.float32)
        futures: list[Future[list[Batch]]] = [
            self._pool.submit(self.prepare, texts[s : s + self._chunk], s) for s in range(0, n, self._chunk)
        ]
        outs: list[torch.Tensor] = []
        positions: list[np.ndarray] = []
        try:
            for fut in futures:
                o, p = self._launch(fut.result())
                outs += o
                positions += p
        finally:
            for fut in futures:
                fut.cancel()
        return self._gather(outs, positions, n)

    def _on_stream(self) -> AbstractContextManager[object]:
        return torch.cuda.stream(self._stream) if self._stream is not None else nullcontext()

    def _launch(self, batches: Sequence[Batch]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        outs, positions = [], []
        with torch.inference_mode(), self._on_stream():
            for b in batches:
                inputs = {k: v.to(self._device, non_blocking=True) for k, v in b.inputs.items()}
                outs.append(self._forward(inputs))
                positions.append(b.positions)
        return outs, positions

    def _gather(self, outs: list[torch.Tensor], positions: list[np.ndarray], n: int) -> np.ndarray:
        with torch.inference_mode(), self._on_stream():
            stacked = torch.cat(outs).float().cpu().numpy()  # the one device -> host copy (and wait)
        result = np.empty((n, *stacked.shape[1:]), dtype=np.float32)
        result[np.concatenate(positions)] = stacked
        return result
