"""Toxicity quality: ROC AUC of each toxicity backend available on this machine.

    .venv/bin/python bench/toxicity_quality.py [--csv ../shared/data/toxicity/wiki_toxicity_nonfuzzed.csv]
        [--checkpoint PATH --base-model-dir DIR] [--hf-model NAME_OR_PATH]

Backends: alt-profanity-check (always), Detoxify (when a checkpoint + base model are local: configured,
or in the torch.hub / HF caches), a Hugging Face classifier (when --hf-model is given). Unavailable
backends are reported as such, never scored. ROC AUC by the rank (Mann-Whitney) formula, ties averaged.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "toxicity" / "wiki_toxicity_nonfuzzed.csv"


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from scipy.stats import rankdata

    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def load(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["comment"].strip() for r in rows]
    labels = np.array([r["toxic"].strip().lower() in ("true", "1") for r in rows])
    return texts, labels


def backends(args: argparse.Namespace) -> list[tuple[str, dict]]:
    tox: list[tuple[str, dict]] = [("profanity", {"backend": "profanity"})]
    det = {"backend": "detoxify", "variant": args.variant}
    if args.checkpoint:
        det |= {"checkpoint_path": args.checkpoint, "base_model_dir": args.base_model_dir}
    tox.append((f"detoxify-{args.variant}", det))
    if args.hf_model:
        tox.append(("hf", {"backend": "hf", "hf_model": args.hf_model}))
    return tox


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    p.add_argument("--variant", default="original", choices=["original", "unbiased", "multilingual"])
    p.add_argument("--checkpoint")
    p.add_argument("--base-model-dir")
    p.add_argument("--hf-model")
    args = p.parse_args(argv)

    from consumers.models.loading import ModelUnavailable
    from consumers.scorers.config import ScorersConfig
    from consumers.scorers.toxicity_backends import build_backend

    texts, labels = load(args.csv)
    print(f"{args.csv.name}: {len(texts)} comments, {int(labels.sum())} toxic")
    for name, tcfg in backends(args):
        try:
            backend = build_backend(ScorersConfig.model_validate({"device": "auto", "toxicity": tcfg}))
        except ModelUnavailable as exc:
            print(f"{name:<22} unavailable: {exc}")
            continue
        t = time.perf_counter()
        probs = backend.predict(texts)
        secs = time.perf_counter() - t
        col = backend.metrics.index("toxicity") if "toxicity" in backend.metrics else 0
        auc = roc_auc(labels, probs[:, col])
        print(f"{name:<22} ROC AUC {auc:.4f}  ({backend.model} {backend.model_version}; "
              f"{len(texts) / secs:,.0f} texts/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
