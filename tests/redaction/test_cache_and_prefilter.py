"""The prefilter never skips an entity a recognizer would find; the detection cache answers exactly what an
analysis would, per tenant, never keeps text, and never keeps what a timed-out analysis left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gateway.redaction import RedactionFailed, Redactor
from gateway.redaction.engines import LANGUAGE
from gateway.redaction.prefilter import PREFILTER_RECOGNIZERS, possible_entities

pytestmark = pytest.mark.timeout(120)

DATASET = Path(__file__).resolve().parents[3] / "shared" / "data" / "pii" / "presidio_synth_dataset_v2.json"
PREFILTERED = sorted(PREFILTER_RECOGNIZERS)

def FW(digits: str) -> str:  # full-width digits (Unicode \d, not ASCII)
    return digits.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"})


# at and just past each rule's edge, and forms a rule could overlook
EDGES = [
    "card 4111 1111 1111 1111 and 4111-1111-1111-1", "amex 3714 496353 98431", "4012888888881",
    "ssn 123-45-6789, 123 45 6789, 123456789, 12345-6789, 123-456789", "ssn 078.05.1120",
    "ip 10.0.0.1, 1.2.3.4/24, ::1, ::, fe80::1ff:fe23:4567:890a, ::ffff:192.0.2.128, 2001:db8::7",
    "abcd::ef01 and ::abcd", "IBAN DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432",
    "de89370400440532013000 (lower case)", "phone +1 212-555-0199, (212) 555 0199, 030 1234567",
    "call " + FW("030 1234 5678") + " now", "full-width card " + FW("4111 1111 1111 1111"),
    "mail ann.lee@example.com or ann@例え.jp", "time 12:30, ratio 3:2, v1.2.3.4", "71 percent of 3.5 m",
]


def _texts() -> list[str]:
    records = json.loads(DATASET.read_text())
    return [r["full_text"] for r in records] + EDGES


def test_prefilter_never_drops_what_a_recognizer_finds(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor()
    analyzer = redactor._engine.analyzer
    assert redactor._engine.prefiltered == frozenset(PREFILTERED)
    found: dict[str, int] = dict.fromkeys(PREFILTERED, 0)
    skipped = 0
    for text in _texts():
        possible = set(possible_entities(text, PREFILTERED, redactor._engine.prefiltered))
        skipped += len(PREFILTERED) - len(possible)
        for r in analyzer.analyze(text=text, language=LANGUAGE, entities=PREFILTERED, score_threshold=0.0):
            found[r.entity_type] += 1
            assert r.entity_type in possible, (r.entity_type, text[r.start:r.end], text)
    # every rule was exercised by real detections, and the rules did skip work
    assert min(found.values()) >= 10 and sum(found.values()) > 250, found
    assert skipped > 4000, skipped


def test_custom_recognizer_for_a_prefiltered_entity_is_never_skipped(
        make_redactor: Callable[..., Redactor]) -> None:
    custom = {"name": "card_words", "entity": "CREDIT_CARD",
              "patterns": [{"regex": r"\bcard-[a-z]+\b", "score": 0.9}]}
    redactor = make_redactor(custom_recognizers=[custom])
    assert "CREDIT_CARD" not in redactor._engine.prefiltered
    assert "EMAIL_ADDRESS" in redactor._engine.prefiltered  # the others keep their rules
    spans = redactor.detect_sync(["my card-secret please"], redactor.cfg.entities, "t")[0]
    assert [(s.entity_type, s.start, s.end) for s in spans] == [("CREDIT_CARD", 3, 14)]


def _lookups(result: str) -> float:
    return REGISTRY.get_sample_value("gatewatch_pii_cache_lookups_total", {"result": result}) or 0.0


async def test_cached_answers_equal_fresh_analysis(make_redactor: Callable[..., Redactor]) -> None:
    cached, fresh = make_redactor(), make_redactor(cache_entries=0)
    texts = _texts()[::3]
    rounds = []
    for _ in range(2):  # the second round is answered from the cache
        h0, m0 = _lookups("hit"), _lookups("miss")
        for text in texts:
            a = await cached.redact(text, scope="acme")
            b = await fresh.redact(text)
            assert (a.text, a.counts, [(s.entity_type, s.start, s.end) for s in a.spans]) == \
                   (b.text, b.counts, [(s.entity_type, s.start, s.end) for s in b.spans])
        rounds.append((_lookups("hit") - h0, _lookups("miss") - m0))
    # texts where nothing can match are not looked up at all; every analysed one is a hit the second time
    (hits1, misses1), (hits2, misses2) = rounds
    assert misses1 > 100 and hits2 == misses1 + hits1 and misses2 == 0
    assert fresh._cache is None


async def test_scoped_per_tenant_and_keeps_no_text(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor()
    text = "Ann's card is 4111 1111 1111 1111, mail ann@example.com"
    h0, m0 = _lookups("hit"), _lookups("miss")
    await redactor.redact(text, scope="acme")
    await redactor.redact(text, scope="globex")  # another tenant: analysed again, no timing signal
    assert (_lookups("hit") - h0, _lookups("miss") - m0) == (0, 2)
    r = await redactor.redact(text, scope="acme")
    assert _lookups("hit") - h0 == 1 and r.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1}
    await redactor.redact(text)  # no scope: no cache
    assert (_lookups("hit") - h0, _lookups("miss") - m0) == (1, 2)
    cache = redactor._cache
    assert cache is not None and len(cache) == 2
    for key, spans in cache._data.items():  # digests and offsets only: no text, no fragment of it
        assert isinstance(key, bytes) and len(key) == 16
        assert all(set(vars(s) if hasattr(s, "__dict__") else {}) == set() for s in spans)
        assert "4111" not in repr(spans) and "ann@" not in repr(spans)


async def test_lru_bound(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(cache_entries=3)
    for i in range(10):
        await redactor.redact(f"call me at 212-555-01{i:02d}", scope="t")
    assert len(redactor._cache) == 3  # type: ignore[arg-type]
    h0 = _lookups("hit")
    await redactor.redact("call me at 212-555-0109", scope="t")  # the newest stayed
    await redactor.redact("call me at 212-555-0100", scope="t")  # the oldest went
    assert _lookups("hit") - h0 == 1


async def test_a_timed_out_analysis_is_not_cached(make_redactor: Callable[..., Redactor]) -> None:
    slow = {"name": "slow", "entity": "SLOW", "patterns": [{"regex": r"(a|aa)+c", "score": 0.9}]}
    redactor = make_redactor(custom_recognizers=[slow], entities={"SLOW": "redact", "EMAIL_ADDRESS": "redact"},
                             timeout_s=0.2)
    text = "x@example.com " + "a" * 60  # catastrophic backtracking: the regex budget runs out
    for _ in range(2):  # the second call must analyse again, and fail again, not reuse a partial answer
        with pytest.raises(RedactionFailed):
            await redactor.redact(text, scope="t")
    assert len(redactor._cache) == 0  # type: ignore[arg-type]
