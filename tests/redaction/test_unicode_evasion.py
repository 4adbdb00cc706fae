"""Unicode variants of PII, as an attacker (or a copy-paste from a document) sends them, are redacted, and
exactly the original characters of the value are replaced: the text around it comes out byte-identical."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.redaction import Redactor
from gateway.redaction.engines import LANGUAGE
from gateway.redaction.normalize import normalize
from gateway.redaction.prefilter import PREFILTER_RECOGNIZERS, possible_entities

from .test_stream import PAD, random_splits, run_stream

pytestmark = pytest.mark.timeout(120)

DATASET = Path(__file__).resolve().parents[3] / "shared" / "data" / "pii" / "presidio_synth_dataset_v2.json"


def fw(s: str) -> str:  # every printable ASCII character in its full-width form
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def digits(s: str, zero: int) -> str:  # ASCII digits in another script (zero: that script's 0)
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in s)


def overlay(s: str) -> str:  # a combining long stroke on every digit
    return "".join(c + "\u0336" if c.isdigit() else c for c in s)


CARD, CARD2, SSN = "4111 1111 1111 1111", "4539 1488 0343 6467", "536-22-8726"
IBAN, IP = "DE89 3704 0044 0532 0130 00", "192.168.14.27"
FULL_WIDTH, ARABIC_INDIC, DEVANAGARI = 0xFF10, 0x0660, 0x0966

# (entity, case, value as sent)
CASES = [
    ("EMAIL_ADDRESS", "zwsp inside", "jo\u200bhn.smith@example.com"),
    ("EMAIL_ADDRESS", "soft hyphen and word joiner inside", "john\u00adsmith@exam\u2060ple.com"),
    ("EMAIL_ADDRESS", "full-width at", "john.smith\uff20example.com"),
    ("EMAIL_ADDRESS", "full-width", fw("john.smith@example.com")),
    ("CREDIT_CARD", "zwsp separators", CARD.replace(" ", "\u200b")),
    ("CREDIT_CARD", "zwsp inside groups", "4539\u200b14880343\u200b6467"),
    ("CREDIT_CARD", "full-width digits", digits(CARD2, FULL_WIDTH)),
    ("CREDIT_CARD", "arabic-indic digits", digits(CARD2, ARABIC_INDIC)),
    ("CREDIT_CARD", "devanagari digits", digits(CARD, DEVANAGARI)),
    ("CREDIT_CARD", "nbsp", CARD2.replace(" ", "\u00a0")),
    ("CREDIT_CARD", "narrow nbsp", CARD2.replace(" ", "\u202f")),
    ("CREDIT_CARD", "figure space", CARD.replace(" ", "\u2007")),
    ("CREDIT_CARD", "thin space", CARD2.replace(" ", "\u2009")),
    ("CREDIT_CARD", "non-breaking hyphen", CARD2.replace(" ", "\u2011")),
    ("CREDIT_CARD", "en dash", CARD.replace(" ", "\u2013")),
    ("CREDIT_CARD", "full-width, zwsp and nbsp", digits("4539\u00a01488\u200b0343\u00a06467", FULL_WIDTH)),
    ("CREDIT_CARD", "bidi override inside", "4539 1488\u202e 0343\u202c 6467"),
    ("CREDIT_CARD", "combining overlay", overlay(CARD2)),
    ("US_SSN", "non-breaking hyphen", SSN.replace("-", "\u2011")),
    ("US_SSN", "hyphen", SSN.replace("-", "\u2010")),
    ("US_SSN", "figure dash", SSN.replace("-", "\u2012")),
    ("US_SSN", "en dash", SSN.replace("-", "\u2013")),
    ("US_SSN", "minus sign", SSN.replace("-", "\u2212")),
    ("US_SSN", "nbsp", SSN.replace("-", "\u00a0")),
    ("US_SSN", "arabic-indic digits", digits(SSN, ARABIC_INDIC)),
    ("US_SSN", "full-width", fw(SSN)),
    ("US_SSN", "bidi isolates inside", "536\u2066-22-\u20698726"),
    ("PHONE_NUMBER", "non-breaking hyphen", "(212) 555\u20110147"),
    ("PHONE_NUMBER", "en dashes", "212\u2013555\u20130147"),
    ("PHONE_NUMBER", "nbsp and zwsp", "(212)\u00a0555\u200b-0147"),
    ("PHONE_NUMBER", "full-width", fw("(212) 555-0147")),
    ("IBAN_CODE", "nbsp groups", IBAN.replace(" ", "\u00a0")),
    ("IBAN_CODE", "narrow nbsp groups", IBAN.replace(" ", "\u202f")),
    ("IBAN_CODE", "zwsp groups", IBAN.replace(" ", "\u200b")),
    ("IBAN_CODE", "full-width", fw(IBAN)),
    ("IP_ADDRESS", "full-width digits", digits(IP, FULL_WIDTH)),
    ("IP_ADDRESS", "full-width", fw(IP)),
    ("IP_ADDRESS", "zwsp inside", "192.168\u200b.14.2\u200b7"),
]
IDS = [f"{e}: {case}" for e, case, _ in CASES]
# around the value: NFKC expansions (ligature, circled digit, MHz) shift every offset after them
BEFORE = "Hello \ufb01nance team \u2460 \u3392, the value is "
AFTER = " \u2014 please keep it private, \u00e9t\u00e9 2024."


def core(s: str) -> str:
    """The value's letters and digits in sequence, as detection sees them (case-folded)."""
    return "".join(c for c in normalize(s)[0] if c.isalnum()).casefold()


@pytest.mark.parametrize(("entity", "case", "value"), CASES, ids=IDS)
async def test_variant_is_redacted_exactly(regex_redactor: Redactor, entity: str, case: str, value: str) -> None:
    text = BEFORE + value + AFTER
    result = await regex_redactor.redact(text)
    assert result.counts == {entity: 1}, case
    assert [(s.start, s.end) for s in result.spans] == [(len(BEFORE), len(BEFORE) + len(value))]
    assert result.text == BEFORE + f"<{entity}>" + AFTER  # byte-identical outside the span
    assert core(value) not in core(result.text)


@pytest.mark.parametrize("action", ["mask", "hash", "pseudonymize"])
async def test_other_actions_replace_the_original_characters(
        make_redactor: Callable[..., Redactor], action: str) -> None:
    redactor = make_redactor(entities={"CREDIT_CARD": action, "EMAIL_ADDRESS": action})
    card, email = digits(CARD2, FULL_WIDTH), "jo\u200bhn@example.com"
    result = await redactor.redact(f"card {card} mail {email} end")
    assert result.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1}
    assert result.text.startswith("card ") and result.text.endswith(" end")
    assert core("45391488034") not in core(result.text) and "john" not in core(result.text)
    if action == "pseudonymize":
        assert result.pseudonyms is not None and result.pseudonyms.restore(result.text) == \
            f"card {card} mail {email} end"


async def test_ner_engine_on_normalised_text(ner_redactor: Redactor) -> None:
    text = (f"Yesterday Margaret\u00a0Thompson paid with {digits(CARD2, FULL_WIDTH)}, "
            "mail ma\u200brgaret@example.com or call (212)\u00a0555\u20110147.")
    result = await ner_redactor.redact(text)
    assert result.counts == {"PERSON": 1, "CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert result.text == ("Yesterday <PERSON> paid with <CREDIT_CARD>, mail <EMAIL_ADDRESS> or call "
                           "<PHONE_NUMBER>.")


async def test_cache_holds_spans_in_original_offsets(make_redactor: Callable[..., Redactor]) -> None:
    cached, fresh = make_redactor(), make_redactor(cache_entries=0)
    for _ in range(2):  # the second round is answered from the cache
        for _, _, value in CASES:
            text = BEFORE + value + AFTER
            a, b = await cached.redact(text, scope="acme"), await fresh.redact(text)
            assert (a.text, [(s.start, s.end) for s in a.spans]) == (b.text, [(s.start, s.end) for s in b.spans])
    assert len(cached._cache) == len(CASES)  # type: ignore[arg-type]  # keyed on the original text


# --- the synthetic dataset, rewritten the ways a document or an attacker writes it ------------------------

FW_DIGITS = {ord(c): FULL_WIDTH + int(c) for c in "0123456789"}
AR_DIGITS = {ord(c): ARABIC_INDIC + int(c) for c in "0123456789"}
REWRITES: dict[str, Callable[[str], str]] = {  # one character for one: offsets stay the same
    "full-width digits": lambda t: t.translate(FW_DIGITS),
    "arabic-indic digits": lambda t: t.translate(AR_DIGITS),
    "nbsp between digits": lambda t: re.sub(r"(?<=\d) (?=\d)", "\u00a0", t),
    "non-breaking hyphens": lambda t: t.replace("-", "\u2011"),
    "full-width at and dot": lambda t: t.replace("@", "\uff20").replace(".", "\uff0e"),
}


@pytest.fixture(scope="module")
def dataset() -> list[str]:
    return [r["full_text"] for r in json.loads(DATASET.read_text())]


@pytest.mark.parametrize("rewrite", list(REWRITES))
def test_rewritten_dataset_finds_the_same_spans(regex_redactor: Redactor, dataset: list[str], rewrite: str) -> None:
    acts = regex_redactor.cfg.entities
    plain = [[(s.entity_type, s.start, s.end) for s in spans] for spans in regex_redactor.detect_sync(dataset, acts)]
    rewritten = [REWRITES[rewrite](t) for t in dataset]
    found = [[(s.entity_type, s.start, s.end) for s in spans]
             for spans in regex_redactor.detect_sync(rewritten, acts)]
    assert found == plain
    assert sum(map(len, plain)) > 250


def test_zwsp_between_digits_in_the_dataset_finds_the_same_entities(regex_redactor: Redactor,
                                                                     dataset: list[str]) -> None:
    acts = regex_redactor.cfg.entities
    rewritten = [re.sub(r"(?<=\d)(?=\d)", "\u200b", t) for t in dataset]
    plain = Counter(s.entity_type for spans in regex_redactor.detect_sync(dataset, acts) for s in spans)
    found = Counter(s.entity_type for spans in regex_redactor.detect_sync(rewritten, acts) for s in spans)
    assert found == plain


@pytest.mark.parametrize("rewrite", list(REWRITES))
def test_prefilter_is_sound_on_normalised_text(regex_redactor: Redactor, dataset: list[str], rewrite: str) -> None:
    """What detect_sync hands the prefilter (the normalised text) never rules out what a recognizer finds."""
    entities = sorted(PREFILTER_RECOGNIZERS)
    analyzer = regex_redactor._engine.analyzer
    texts = [REWRITES[rewrite](t) for t in dataset[::3]] + [BEFORE + v + AFTER for _, _, v in CASES]
    found = 0
    for text in texts:
        seen = normalize(text)[0]
        possible = set(possible_entities(seen, entities, regex_redactor._engine.prefiltered))
        for r in analyzer.analyze(text=seen, language=LANGUAGE, entities=entities, score_threshold=0.0):
            found += 1
            assert r.entity_type in possible, (r.entity_type, text)
    assert found > 100


# --- streams ---------------------------------------------------------------------------------------------

STREAMED = [c for c in CASES if c[1] in {"zwsp inside", "full-width at", "zwsp separators", "arabic-indic digits",
                                         "narrow nbsp", "combining overlay", "non-breaking hyphen", "nbsp groups",
                                         "full-width"}]


@pytest.mark.parametrize(("entity", "case", "value"), STREAMED, ids=[f"{e}: {c}" for e, c, _ in STREAMED])
async def test_stream_split_at_every_offset(make_redactor: Callable[..., Redactor], entity: str, case: str,
                                            value: str) -> None:
    redactor = make_redactor(stream_holdback_chars=48)
    text = PAD + BEFORE + value + AFTER + " " + PAD
    expected = (await redactor.redact(text)).text
    assert f"<{entity}>" in expected
    for i in range(len(text) + 1):
        out, _ = await run_stream(redactor, [text[:i], text[i:]], step=4)
        assert out == expected, i


async def test_stream_random_splits(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(stream_holdback_chars=32)
    rng = random.Random(4321)
    for _, _, value in CASES:
        text = PAD + BEFORE + value + AFTER + " " + PAD
        expected = (await redactor.redact(text)).text
        for _ in range(5):
            out, _ = await run_stream(redactor, random_splits(text, rng))
            assert out == expected


async def test_stream_holdback_counts_visible_characters(make_redactor: Callable[..., Redactor]) -> None:
    """A card padded with zero-width spaces to more than the holdback is still held back whole: counted in
    characters, 48 after a release point could be the last group's padding, and the first three groups
    would be released before the card was whole in the buffer."""
    redactor = make_redactor(stream_holdback_chars=48)
    value = "4111 1111 1111 1" + "\u200b" * 40 + "111"  # 59 characters, 19 of them visible
    text = PAD + "card " + value + " " + PAD
    expected = (await redactor.redact(text)).text
    assert expected == PAD + "card <CREDIT_CARD> " + PAD
    for i in range(len(text) + 1):
        out, _ = await run_stream(redactor, [text[:i], text[i:]], step=4)
        assert out == expected, i
