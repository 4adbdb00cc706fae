"""Drift with the real all-MiniLM-L6-v2 (offline wheel): a topic shift raises the flag, no shift stays quiet."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest

from consumers.scorers.config import ScorersConfig
from consumers.scorers.drift import DriftScorer
from consumers.scorers.drift_stats import mmd2_permutation

pytestmark = pytest.mark.timeout(90)
DRIFT_KEYS = {"window_start", "window_end", "tenant", "model", "field", "metric", "value", "baseline_size",
              "window_size", "drifted", "backend", "embed_model", "computed_at"}

COOKING = ["How long should I bake {x} bread at {n} degrees?", "What can I use instead of {x} in a cake recipe?",
           "My {x} dough did not rise, what went wrong?", "Give me a quick dinner recipe with {x} and rice.",
           "How do I keep {x} fresh in the fridge for {n} days?"]
FOOD = ["banana", "sourdough", "garlic", "spinach", "chocolate", "pumpkin", "lemon", "butter", "oat", "tomato"]
FINANCE = ["Should I refinance my {x} mortgage at {n} percent?", "How are {x} capital gains taxed this year?",
           "What is a good savings rate for a {x} emergency fund?", "Explain {x} bond yields rising {n} points.",
           "Is it wise to take a {x} loan to buy index funds?"]
MONEY = ["fixed", "variable", "retirement", "municipal", "corporate", "student", "short term", "joint", "small", "bank"]


def texts(templates: list[str], words: list[str], n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [rnd.choice(templates).format(x=rnd.choice(words), n=rnd.randint(2, 400)) for _ in range(n)]


def config(**drift) -> ScorersConfig:  # type: ignore[no-untyped-def]
    base = {"baseline_events": 60, "window_events": 40, "min_window": 20, "permutations": 200,
            "fields": ["prompt"], "window_seconds": None}
    return ScorersConfig.model_validate({"device": "cpu", "drift": base | drift})


async def run(scorer: DriftScorer, make_event, prompts: list[str], **kw):  # type: ignore[no-untyped-def]
    out = {"scores": [], "drift": []}
    for s in range(0, len(prompts), 50):  # batches as from the source
        res = await scorer.score([make_event(p, "ok", **kw) for p in prompts[s : s + 50]])
        out["scores"] += res["scores"]
        out["drift"] += res["drift"]
    return out


async def test_topic_shift_raises_the_flag_and_no_shift_stays_quiet(embedder, make_event) -> None:  # type: ignore[no-untyped-def]
    quiet, shifted = DriftScorer(config(), embedder), DriftScorer(config(), embedder)
    await quiet.start()
    await shifted.start()
    baseline = texts(COOKING, FOOD, 60, seed=1)
    q = await run(quiet, make_event, baseline + texts(COOKING, FOOD, 80, seed=2), tenant="t-quiet")
    s = await run(shifted, make_event, baseline + texts(FINANCE, MONEY, 80, seed=3), tenant="t-shift")

    for res in (q, s):
        assert len(res["drift"]) == 2 * 3 and all(set(r) == DRIFT_KEYS for r in res["drift"])
        assert {r["baseline_size"] for r in res["drift"]} == {60} and {r["window_size"] for r in res["drift"]} == {40}
    assert not any(r["drifted"] for r in q["drift"])
    assert all(r["drifted"] == 1 for r in s["drift"])
    pq = [r["value"] for r in q["drift"] if r["metric"] == "mmd2_pvalue"]
    ps = [r["value"] for r in s["drift"] if r["metric"] == "mmd2_pvalue"]
    assert min(pq) > 0.01 and max(ps) < 0.01
    dq = [r["value"] for r in q["drift"] if r["metric"] == "centroid_cosine"]
    ds = [r["value"] for r in s["drift"] if r["metric"] == "centroid_cosine"]
    assert max(dq) < 0.05 < min(ds)

    # per-event distance to the baseline centroid: None during the baseline, larger after the shift
    assert all(r["value"] is None and r["label"] == "baseline" for r in s["scores"][:60])
    assert np.mean([r["value"] for r in s["scores"][60:]]) > np.mean([r["value"] for r in q["scores"][60:]]) + 0.1
    assert {r["metric"] for r in s["scores"]} == {"centroid_distance"}


async def test_pinned_baseline_range_and_time_windows(embedder, make_event) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    cfg = config(baseline_start=t0, baseline_end=t0 + timedelta(seconds=30), window_events=100,
                 window_seconds=timedelta(seconds=20), min_window=5, permutations=50)
    scorer = DriftScorer(cfg, embedder)
    await scorer.start()
    prompts = texts(COOKING, FOOD, 90, seed=4)
    events = [make_event(p, "ok", ts=t0 + timedelta(seconds=i - 10)) for i, p in enumerate(prompts)]
    res = await scorer.score(events)
    labels = [r["label"] for r in res["scores"]]
    assert labels[:10] == ["before_baseline"] * 10 and labels[10:40] == ["baseline"] * 30
    assert all(r["value"] is not None for r in res["scores"][40:])
    assert len(res["drift"]) == 6  # two closed 20 s windows; the third is still open
    assert {r["window_size"] for r in res["drift"]} == {20} and {r["baseline_size"] for r in res["drift"]} == {30}
    assert all(r["window_end"] - r["window_start"] == timedelta(seconds=19) for r in res["drift"])


def test_mmd_permutation_test_is_calibrated_on_random_data() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    _, p_same = mmd2_permutation(x, y, 200, rng)
    mmd, p_shift = mmd2_permutation(x, y + 1.0, 200, rng)
    assert p_same > 0.05 and p_shift < 0.01 and mmd > 0
