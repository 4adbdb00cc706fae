"""The restructured hot paths give the same numbers as the plain ones they replaced."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from consumers.models.batching import BatchRunner, fast_tokenizer, pad_batches, plan_batches
from consumers.scorers.common import RowMaker
from consumers.scorers.config import ScorersConfig
from consumers.scorers.factuality import NLI_METRICS, FactualityScorer, _Item

TEXTS = ["the cake", "a bank loan is not a good idea for you", "paris", "yes " * 50, "love", "no",
         "the river in paris is the seine", "bad " * 20, "idiot", "the report says revenue grew 5 percent"]


@pytest.fixture(scope="module")
def tiny_bert(tiny_base_dir):  # type: ignore[no-untyped-def]
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(2)
    model = BertForSequenceClassification(AutoConfig.from_pretrained(tiny_base_dir)).eval()
    return model, AutoTokenizer.from_pretrained(tiny_base_dir)


def runner(model, tok, *, chunk_batches: int, token_type_ids: bool = False) -> BatchRunner:  # type: ignore[no-untyped-def]
    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs).logits

    return BatchRunner(fast_tokenizer(tok, 64), forward, torch.device("cpu"), pad_id=tok.pad_token_id,
                       batch_size=2, max_length=64, buckets=(8, 16, 64), threads=3, chunk_batches=chunk_batches,
                       token_type_ids=token_type_ids)


def test_pad_batches_matches_a_loop_per_sequence(tiny_bert) -> None:  # type: ignore[no-untyped-def]
    _, tok = tiny_bert
    fast = fast_tokenizer(tok, 64)
    encs = fast.encode_batch([(t, t[::-1]) for t in TEXTS])
    plan = plan_batches([len(e) for e in encs], 3, (8, 16, 64), 64)
    for batch, (length, pos) in zip(pad_batches(encs, plan, pad_id=7, token_type_ids=True, pin=False, offset=5),
                                    plan, strict=True):
        assert batch.positions.tolist() == (pos + 5).tolist()
        for row, p in enumerate(pos):
            ids, n = encs[p].ids, len(encs[p].ids)
            assert batch.inputs["input_ids"][row].tolist() == ids + [7] * (length - n)
            assert batch.inputs["attention_mask"][row].tolist() == [1] * n + [0] * (length - n)
            assert batch.inputs["token_type_ids"][row].tolist() == encs[p].type_ids + [0] * (length - n)


@pytest.mark.parametrize("pairs", [False, True])
def test_chunked_prefetch_path_equals_one_plain_pass(tiny_bert, pairs: bool) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny_bert
    texts = [(t, "the answer " + t) for t in TEXTS] if pairs else TEXTS
    plain = runner(model, tok, chunk_batches=100, token_type_ids=pairs)
    want = plain.forward_batches(plain.batches(plain.tokenize(texts)), len(texts))
    for chunk_batches in (1, 2, 3):  # 10 texts in chunks of 2, 4, 6: several chunks in flight on the pool
        got = runner(model, tok, chunk_batches=chunk_batches, token_type_ids=pairs).run(texts)
        np.testing.assert_allclose(got, want, atol=1e-5)
    with torch.inference_mode():
        ref = np.stack([model(**tok(*([t] if isinstance(t, str) else t), return_tensors="pt", truncation=True,
                                    max_length=64)).logits[0].numpy() for t in texts])
    np.testing.assert_allclose(want, ref, atol=1e-4)


def test_row_maker_rows_equal_the_literal_rows(make_event) -> None:  # type: ignore[no-untyped-def]
    ev = make_event("hello", "hi", model=None)
    mk = RowMaker("toxicity", "detoxify-original", "m", "v1")
    rows = mk.rows(ev, "prompt", ("toxicity", "insult"), [0.7, 0.1], ["toxic", "ok"])
    want = [{"event_id": ev.event_id, "ts": ev.ts_end, "tenant": ev.tenant, "request_model": "",
             "scorer": "toxicity", "metric": m, "target": "prompt", "value": v, "label": lab,
             "backend": "detoxify-original", "model": "m", "model_version": "v1", "scored_at": mk.scored_at}
            for m, v, lab in (("toxicity", 0.7, "toxic"), ("insult", 0.1, "ok"))]
    assert rows == want and [list(r) for r in rows] == [list(r) for r in want]  # same keys, same order
    assert mk.row(ev, "toxicity", "prompt", np.float32(0.5), "ok")["value"] == 0.5
    rows[0]["value"] = 1.0
    assert mk.rows(ev, "prompt", ("toxicity",), [0.2], ["ok"])[0]["value"] == 0.2  # no shared state


def test_nli_rows_use_per_event_reductions(make_event) -> None:  # type: ignore[no-untyped-def]
    scorer = FactualityScorer(ScorersConfig(device="cpu"), backend=object())  # type: ignore[arg-type]
    events = [make_event("q", "r") for _ in range(3)]
    spans = [[(0, 4), (5, 9), (10, 14)], [(0, 3)], [(0, 2), (3, 5)]]
    items = [_Item(i, "ctx", "x" * 20, s) for i, s in enumerate(spans)]
    probs = np.array([[0.9, 0.1], [0.2, 0.7], [0.2, 0.3], [0.6, 0.05], [0.4, 0.2], [0.8, 0.6]], dtype=np.float32)
    rows = scorer._nli_rows(RowMaker("factuality", "nli", "m", "v"), events, items, probs)
    assert [r["metric"] for r in rows] == list(NLI_METRICS) * 3
    k = 0
    for i, it in enumerate(items):
        p = probs[k : k + len(it.spans)]
        k += len(it.spans)
        worst = int(np.argmin(p[:, 0]))  # ties: the first, as before
        support, contra, ws = rows[3 * i : 3 * i + 3]
        assert support["value"] == pytest.approx(float(p[:, 0].mean()), abs=1e-6)
        assert contra["value"] == pytest.approx(float(p[:, 1].max()))
        assert ws["value"] == pytest.approx(float(p[worst, 0]))
        assert ws["label"] == f"{it.spans[worst][0]}:{it.spans[worst][1]}"
        assert {r["event_id"] for r in (support, contra, ws)} == {events[i].event_id}
    assert [r["label"] for r in rows[::3]] == ["unsupported", "supported", "supported"]
    assert datetime.now(UTC) >= rows[0]["scored_at"]


class FakeEmbedder:
    """Deterministic unit vectors per text (the drift bookkeeping is what is under test)."""

    name, device, dim = "fake", torch.device("cpu"), 8

    def encode(self, texts):  # type: ignore[no-untyped-def]
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


async def test_drift_distances_are_per_event_cosines_to_the_frozen_centroid(make_event) -> None:  # type: ignore[no-untyped-def]
    from consumers.scorers.drift import DriftScorer
    from consumers.scorers.drift_stats import unit

    cfg = ScorersConfig.model_validate({"device": "cpu", "drift": {
        "baseline_events": 5, "window_events": 4, "min_window": 2, "permutations": 20, "window_seconds": None}})
    scorer, emb = DriftScorer(cfg, FakeEmbedder()), FakeEmbedder()  # type: ignore[arg-type]
    await scorer.start()
    events = [make_event(f"p{i}", f"r{i}", tenant=f"t{i % 2}") for i in range(24)]
    res = await scorer.score(events[:7])
    res2 = await scorer.score(events[7:])
    rows = res["scores"] + res2["scores"]
    for field, target in (("p", "prompt"), ("r", "response")):
        for tenant in ("t0", "t1"):
            mine = [(ev, r) for ev in events for r in rows
                    if r["event_id"] == ev.event_id and r["target"] == target and ev.tenant == tenant]
            vecs = emb.encode([ev.request.messages[-1].content if field == "p" else ev.response.text
                               for ev, _ in mine])
            centroid = unit(vecs[:5].mean(axis=0))
            assert all(r["value"] is None and r["label"] == "baseline" for _, r in mine[:5])
            want = 1.0 - vecs[5:] @ centroid
            np.testing.assert_allclose([r["value"] for _, r in mine[5:]], want, atol=1e-6)
    assert len(res2["drift"]) == 3 * 4  # (2 tenants x 2 fields) x 1 full window each, 3 rows per window
