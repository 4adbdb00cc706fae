from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from consumers.models.loading import ModelUnavailable, load_detoxify
from consumers.scorers import SCORER_FACTORIES
from consumers.scorers.config import ScorersConfig
from consumers.scorers.toxicity import ToxicityScorer

ROW_KEYS = {"event_id", "ts", "tenant", "request_model", "scorer", "metric", "target", "value", "label",
            "backend", "model", "model_version", "scored_at"}
METRICS = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
pytestmark = pytest.mark.timeout(60)


def cfg(**tox) -> ScorersConfig:  # type: ignore[no-untyped-def]
    return ScorersConfig.model_validate({"device": "cpu", "batch_size": 4, "toxicity": tox})


async def test_detoxify_local_checkpoint_scores_every_label(detoxify_ckpt, tiny_base_dir, make_event) -> None:  # type: ignore[no-untyped-def]
    c = cfg(backend="detoxify", checkpoint_path=str(detoxify_ckpt), base_model_dir=str(tiny_base_dir))
    scorer = SCORER_FACTORIES["toxicity"](c)
    await scorer.start()
    events = [make_event("you are an idiot", "i love cake"), make_event(None, "paris is nice")]
    rows = (await scorer.score(events))["scores"]
    await scorer.stop()
    await scorer.stop()  # idempotent
    assert len(rows) == 2 * 2 * 6
    assert all(set(r) == ROW_KEYS for r in rows)
    assert {r["backend"] for r in rows} == {"detoxify-original"}
    assert {r["model"] for r in rows} == {"toxic_tiny"}
    assert [r["metric"] for r in rows[:6]] == METRICS
    na = [r for r in rows if r["event_id"] == events[1].event_id and r["target"] == "prompt"]
    assert len(na) == 6 and all(r["value"] is None and r["label"] == "not_applicable" for r in na)
    scored = [r for r in rows if r["value"] is not None]
    assert all(0.0 <= r["value"] <= 1.0 and r["label"] in {"toxic", "ok"} for r in scored)

    # same numbers as the model run directly (sigmoid of the logits, as Detoxify.predict does)
    clf = load_detoxify(detoxify_ckpt, tiny_base_dir, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        want = torch.sigmoid(clf.model(**clf.tokenizer("you are an idiot", return_tensors="pt")).logits)[0]
    got = [r["value"] for r in rows[:6]]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


async def test_detoxify_checkpoint_is_loaded_without_touching_the_hub(detoxify_ckpt, tiny_base_dir,
                                                                      monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clf = load_detoxify(detoxify_ckpt, tiny_base_dir, torch.device("cpu"), torch.float32)
    assert clf.labels == tuple(METRICS) and clf.multi_label


async def test_auto_falls_back_to_profanity_check_and_says_so(tmp_path, make_event, caplog) -> None:  # type: ignore[no-untyped-def]
    scorer = ToxicityScorer(cfg(checkpoint_path=str(tmp_path / "missing.ckpt")))
    await scorer.start()
    events = [make_event("you are a fucking idiot", "shit, that is stupid"),
              make_event("what is the capital of france", "the capital of france is paris")]
    rows = (await asyncio.wait_for(scorer.score(events), 30))["scores"]
    assert "alt-profanity-check" in caplog.text
    assert {r["backend"] for r in rows} == {"profanity-check"} and {r["metric"] for r in rows} == {"toxicity"}
    values = {(r["event_id"], r["target"]): r["value"] for r in rows}
    for target in ("prompt", "response"):
        assert values[(events[0].event_id, target)] > 0.5 > values[(events[1].event_id, target)]


async def test_explicit_detoxify_without_weights_fails_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    scorer = ToxicityScorer(cfg(backend="detoxify", checkpoint_path=str(tmp_path / "missing.ckpt")))
    with pytest.raises(ModelUnavailable):
        await scorer.start()


async def test_hf_backend_scores_any_local_classifier(tiny_nli_dir, make_event) -> None:  # type: ignore[no-untyped-def]
    scorer = ToxicityScorer(cfg(backend="hf", hf_model=str(tiny_nli_dir), targets=["response"]))
    await scorer.start()
    rows = (await scorer.score([make_event("x", "some answer")]))["scores"]
    assert {r["metric"] for r in rows} == {"contradiction", "entailment", "neutral"}
    assert abs(sum(r["value"] for r in rows) - 1.0) < 1e-4  # softmax head
    assert {r["target"] for r in rows} == {"response"} and rows[0]["backend"] == "hf"
