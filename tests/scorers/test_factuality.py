from __future__ import annotations

import pytest

from consumers.scorers.common import split_sentences
from consumers.scorers.config import ScorersConfig
from consumers.scorers.factuality import FactualityScorer
from consumers.scorers.factuality_backends import EmbeddingSupport, entity_consistency, number_consistency

pytestmark = pytest.mark.timeout(60)
CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."


def test_split_sentences_spans() -> None:
    text = "First one. Second?  Third!\nfourth"
    assert [text[s:e] for s, e in split_sentences(text)] == ["First one.", "Second?", "Third!", "fourth"]


def test_number_and_entity_consistency() -> None:
    assert number_consistency("It opened in 1889.", CONTEXT) == 1.0
    assert number_consistency("It is 1,200 metres tall and opened in 1889.", CONTEXT) == 0.5
    assert number_consistency("It is tall.", CONTEXT) is None
    assert entity_consistency("It stands in Paris today.", CONTEXT) == 1.0
    assert entity_consistency("It stands in Berlin today.", CONTEXT) == 0.0


async def test_nli_backend_scores_each_sentence_and_skips_events_without_context(tiny_nli_dir, make_event) -> None:  # type: ignore[no-untyped-def]
    cfg = ScorersConfig.model_validate(
        {"device": "cpu", "factuality": {"backend": "nli", "nli_model": str(tiny_nli_dir)}})
    scorer = FactualityScorer(cfg)
    await scorer.start()
    resp = "The tower is in Paris. It is 330 metres tall. It was built in 1789."
    events = [make_event("where?", resp, context=[CONTEXT]), make_event("hi", "hello"),
              make_event("q", "the report says revenue grew", system="the report says revenue grew ten percent")]
    rows = (await scorer.score(events))["scores"]
    by_event = {}
    for r in rows:
        by_event.setdefault(r["event_id"], {})[r["metric"]] = r
    assert set(by_event[events[0].event_id]) == {"support", "contradiction", "worst_support"}
    first = by_event[events[0].event_id]
    assert all(0 <= r["value"] <= 1 and r["backend"] == "nli" and r["target"] == "response" for r in first.values())
    start, end = map(int, first["worst_support"]["label"].split(":"))
    assert resp[start:end] in {resp[s:e] for s, e in split_sentences(resp)}
    assert first["worst_support"]["value"] <= first["support"]["value"] + 1e-6
    assert all(r["value"] is None and r["label"] == "no_context" for r in by_event[events[1].event_id].values())
    assert by_event[events[2].event_id]["support"]["value"] is not None  # system message counts as context


async def test_embedding_fallback_separates_supported_from_unsupported(embedder, make_event) -> None:  # type: ignore[no-untyped-def]
    cfg = ScorersConfig(device="cpu")
    scorer = FactualityScorer(cfg, backend=EmbeddingSupport(embedder))
    await scorer.start()
    good = make_event("q", "The Eiffel Tower was completed in 1889.", context=[CONTEXT])
    bad = make_event("q", "Bananas are rich in potassium and grow in Ecuador.", context=[CONTEXT])
    rows = (await scorer.score([good, bad]))["scores"]
    val = {(r["event_id"], r["metric"]): r["value"] for r in rows}
    assert {r["backend"] for r in rows} == {"embedding+consistency"}
    assert val[(good.event_id, "support")] > val[(bad.event_id, "support")] + 0.2
    assert val[(good.event_id, "number_consistency")] == 1.0
    assert val[(bad.event_id, "number_consistency")] is None
