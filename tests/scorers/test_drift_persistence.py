"""Drift baselines persisted in chdb (``drift_baselines``): a restarted scorer goes on comparing against the
baseline it collected before (and flags a drifted window it would have taken for its baseline), a changed
embedding model or baseline definition starts a new baseline, a reset (by the operator) or a baseline
another consumer completed takes effect in a running scorer, a key that left the LRU is read back, and a
failing read retries without touching the state. Real all-MiniLM-L6-v2 where the statistics matter,
deterministic fake vectors where only the bookkeeping does; rows written with the real ``ClickHouseSink``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import chdb  # noqa: F401  -- load the engine in the main thread first
import numpy as np
import pytest
import torch

from consumers.contracts import TransientError
from consumers.scorers.config import ScorersConfig
from consumers.scorers.drift import DriftScorer
from consumers.scorers.drift_store import BaselineStore, list_baselines, reset_baselines
from consumers.scorers.reads import LocalReads
from consumers.sinks.clickhouse import ClickHouseSink
from consumers.warehouse import Warehouse, apply_migrations
from tests.scorers.test_drift import COOKING, FINANCE, FOOD, MONEY, config, texts

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse(f"chdb://{tmp_path / 'warehouse'}") as wh:
        apply_migrations(wh.client)
        yield wh


class FakeEmbedder:
    """Deterministic unit vectors per text; ``name``/``version`` make it another embedding model."""

    device, dim = torch.device("cpu"), 8

    def __init__(self, name: str = "fake", version: str = "1") -> None:
        self.name, self.version = name, version

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in batch])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


class Renamed:
    """The real MiniLM under another name: what a different embedding model looks like to the identity."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner, self.name, self.device, self.dim = inner, name, inner.device, inner.dim

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        return self.inner.encode(batch)  # type: ignore[no-any-return]


async def scorer(wh: Warehouse, cfg: Any, embedder: Any) -> DriftScorer:
    """A new scorer instance on the warehouse, as after a worker or scorer-process restart."""
    s = DriftScorer(cfg, embedder, store=BaselineStore(LocalReads(wh.new_client)))
    await s.start()
    return s


async def run(s: DriftScorer, wh: Warehouse, make_event, prompts: list[str], **kw: Any) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Score in batches of 50 as the pipeline does, writing each batch's rows before the next batch."""
    sink = ClickHouseSink(wh.new_client)
    await sink.start()
    out: dict[str, list] = {"scores": [], "drift": [], "drift_baselines": []}
    for i in range(0, len(prompts), 50):
        res = await s.score([make_event(p, "ok", **kw) for p in prompts[i:i + 50]])
        await sink.write(res)
        for table, rows in res.items():
            out[table] += rows
    return out


def active(wh: Warehouse, **kw: Any) -> list[dict[str, Any]]:
    return list_baselines(wh.client, **kw)


async def test_restarted_scorer_compares_with_the_persisted_baseline(warehouse, embedder, make_event) -> None:  # type: ignore[no-untyped-def]
    cfg = config()  # baseline 60 events, windows of 40 (min 20), prompt only
    first = await scorer(warehouse, cfg, embedder)
    before = await run(first, warehouse, make_event, texts(COOKING, FOOD, 100, seed=1))
    assert len(before["drift_baselines"]) == 1 and not any(r["drifted"] for r in before["drift"])
    (stored,) = active(warehouse)
    assert (stored["tenant"], stored["model"], stored["field"]) == ("acme", "gpt-x", "prompt")
    assert (stored["baseline_size"], stored["sample_size"], stored["dim"]) == (60, 60, 384)
    assert stored["identity"] == first.identity.id and stored["embed_model"] == "all-MiniLM-L6-v2"  # type: ignore[union-attr]
    assert stored["embed_version"].startswith("sha256:")

    # restarted: the drifted traffic is compared with the cooking baseline, not collected as a new one
    shifted = texts(FINANCE, MONEY, 80, seed=3)
    second = await scorer(warehouse, cfg, embedder)
    after = await run(second, warehouse, make_event, shifted)
    assert after["drift_baselines"] == [] and len(active(warehouse)) == 1
    assert all(r["value"] is not None and r["label"] == "" for r in after["scores"])
    assert len(after["drift"]) == 2 * 3 and all(r["drifted"] == 1 for r in after["drift"])
    assert {r["baseline_size"] for r in after["drift"]} == {60}
    # the same baseline, to the bit: per-event distances as the scorer that collected it computes them
    again = await run(first, warehouse, make_event, shifted)
    np.testing.assert_allclose([r["value"] for r in after["scores"]], [r["value"] for r in again["scores"]],
                               atol=1e-6)

    # what a restart did before baselines were persisted: the drifted traffic became the baseline
    forgetful = DriftScorer(cfg, embedder)
    await forgetful.start()
    lost = await run(forgetful, warehouse, make_event, shifted + texts(FINANCE, MONEY, 40, seed=5), tenant="other")
    assert [r["label"] for r in lost["scores"][:60]] == ["baseline"] * 60
    assert len(lost["drift"]) == 3 and not any(r["drifted"] for r in lost["drift"])


def truncated(cfg: ScorersConfig, max_length: int) -> ScorersConfig:
    buckets = [b for b in cfg.length_buckets if b <= max_length]
    return ScorersConfig.model_validate({**cfg.model_dump(), "max_length": max_length, "length_buckets": buckets})


async def test_changed_embedding_model_or_baseline_definition_starts_a_new_baseline(  # type: ignore[no-untyped-def]
        warehouse, embedder, make_event) -> None:
    cooking = texts(COOKING, FOOD, 60, seed=1)
    base = await scorer(warehouse, config(), embedder)
    await run(base, warehouse, make_event, cooking)
    (original,) = active(warehouse)
    probe = texts(COOKING, FOOD, 40, seed=2)

    # window and test settings are not part of the identity: the baseline stays
    tuned = await scorer(warehouse, config(window_events=30, min_window=10, pvalue_threshold=0.05,
                                           distance_threshold=0.1, permutations=50), embedder)
    assert tuned.identity.id == original["identity"]  # type: ignore[union-attr]
    kept = await run(tuned, warehouse, make_event, probe)
    assert all(r["label"] == "" for r in kept["scores"]) and kept["drift_baselines"] == []

    for cfg, emb in ((config(baseline_events=50), embedder),  # another baseline definition
                     (truncated(config(), 128), embedder),  # embeddings truncated differently
                     (config(), Renamed(embedder, "another-embedding-model"))):  # another model
        changed = await scorer(warehouse, cfg, emb)
        assert changed.identity.id != original["identity"]  # type: ignore[union-attr]
        fresh = await run(changed, warehouse, make_event, cooking)
        n = cfg.drift.baseline_events
        assert [r["label"] for r in fresh["scores"][:n]] == ["baseline"] * n
        (row,) = fresh["drift_baselines"]
        assert row["identity"] == changed.identity.id and row["baseline_id"] != original["baseline_id"]  # type: ignore[union-attr]
    identities = {r["identity"] for r in active(warehouse)}
    assert len(identities) == 4 and original["identity"] in identities  # the original is kept, not replaced


def fake_config(**drift: Any) -> Any:
    return config(baseline_events=5, window_events=4, min_window=2, permutations=20, **drift)


async def test_reset_and_a_baseline_completed_elsewhere_reach_a_running_scorer(warehouse, make_event) -> None:  # type: ignore[no-untyped-def]
    cfg = fake_config(baseline_refresh=0)  # look at the current baselines before every batch
    running = await scorer(warehouse, cfg, FakeEmbedder())
    await run(running, warehouse, make_event, [f"a{i}" for i in range(5)])
    await run(running, warehouse, make_event, [f"b{i}" for i in range(5)], tenant="globex")
    assert {r["tenant"] for r in active(warehouse)} == {"acme", "globex"}

    reset = reset_baselines(warehouse.client, tenant="acme", model="gpt-x")
    assert [(r["tenant"], r["state"]) for r in reset] == [("acme", "reset")]
    assert reset_baselines(warehouse.client, tenant="acme") == []  # nothing active is left to reset
    assert [r["tenant"] for r in active(warehouse)] == ["globex"]
    after = await run(running, warehouse, make_event, [f"c{i}" for i in range(6)])
    assert [r["label"] for r in after["scores"]] == ["baseline"] * 5 + [""]  # collected again
    kept = await run(running, warehouse, make_event, [f"d{i}" for i in range(2)], tenant="globex")
    assert all(r["label"] == "" for r in kept["scores"])  # the other tenant's baseline was not touched
    (new,) = active(warehouse, tenants=["acme"])
    assert new["baseline_id"] != reset[0]["baseline_id"]
    history = list_baselines(warehouse.client, tenants=["acme"], states=("active", "reset"))
    assert [r["state"] for r in history] == ["active", "reset"]

    # another consumer (which took the partition over meanwhile) completed a baseline: this one adopts it
    other = await scorer(warehouse, cfg, FakeEmbedder())
    reset_baselines(warehouse.client, tenant="globex")
    elsewhere = await run(other, warehouse, make_event, [f"e{i}" for i in range(5)], tenant="globex")
    (theirs,) = elsewhere["drift_baselines"]
    adopted = await run(running, warehouse, make_event, ["f0"], tenant="globex")
    assert adopted["scores"][0]["label"] == "" and adopted["drift_baselines"] == []
    assert running._states[("globex", "gpt-x", "prompt")].baseline_id == theirs["baseline_id"]


async def test_a_key_that_left_the_lru_is_read_back(warehouse, make_event) -> None:  # type: ignore[no-untyped-def]
    s = await scorer(warehouse, fake_config(max_keys=1), FakeEmbedder())
    for tenant in ("t1", "t2"):
        await run(s, warehouse, make_event, [f"{tenant}-{i}" for i in range(5)], tenant=tenant)
    assert list(s._states) == [("t2", "gpt-x", "prompt")]  # t1 was evicted
    back = await run(s, warehouse, make_event, ["t1-x"], tenant="t1")
    assert back["scores"][0]["label"] == "" and back["drift_baselines"] == []


async def test_a_failed_read_retries_without_touching_the_state(warehouse, make_event) -> None:  # type: ignore[no-untyped-def]
    s = await scorer(warehouse, fake_config(), FakeEmbedder())
    await run(s, warehouse, make_event, [f"p{i}" for i in range(5)])
    restarted = await scorer(warehouse, fake_config(), FakeEmbedder())
    warehouse.client.command("RENAME TABLE gatewatch.drift_baselines TO gatewatch.drift_baselines_away")
    try:
        with pytest.raises(TransientError, match=r"drift\.baselines"):
            await restarted.score([make_event("q", "ok")])
        assert restarted._states == {}  # nothing was collected in the meantime
    finally:
        warehouse.client.command("RENAME TABLE gatewatch.drift_baselines_away TO gatewatch.drift_baselines")
    res = await restarted.score([make_event("q", "ok")])
    assert res["scores"][0]["label"] == "" and res["scores"][0]["value"] is not None


def test_model_fingerprint_follows_the_weights_not_the_docs(tmp_path: Path) -> None:
    from consumers.scorers.drift_store import dir_fingerprint

    def fingerprint(name: str, weights: bytes, readme: str) -> str:
        d = tmp_path / name
        (d / "1_Pooling").mkdir(parents=True)
        (d / "config.json").write_text('{"hidden_size": 8}')
        (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
        (d / "model.safetensors").write_bytes(weights)
        (d / "README.md").write_text(readme)
        (d / "onnx").mkdir()
        (d / "onnx" / "model.onnx").write_bytes(name.encode())  # another runtime's export: not loaded
        return dir_fingerprint(str(d))

    same = fingerprint("a", b"\x00" * 64, "one"), fingerprint("b", b"\x00" * 64, "two")
    tuned = fingerprint("c", b"\x00" * 63 + b"\x01", "one")  # fine-tuned: same size, other bytes
    assert same[0] == same[1] != tuned and tuned.startswith("sha256:")


@pytest.mark.parametrize(("value", "ok"), [(-1, False), (0, True), (None, True), (5, True)])
def test_baseline_refresh_is_validated(value: Any, ok: bool) -> None:
    from pydantic import ValidationError

    if ok:
        assert ScorersConfig.model_validate({"drift": {"baseline_refresh": value}})
    else:
        with pytest.raises(ValidationError, match="baseline_refresh"):
            ScorersConfig.model_validate({"drift": {"baseline_refresh": value}})
