"""Normalisation for detection: what is folded, and that every normalised span maps back to exactly the
original characters that produced it (expansions, removed characters, combining sequences)."""

from __future__ import annotations

import random
import time

import pytest

from gateway.redaction.normalize import map_spans, normalize, visible_tail
from gateway.redaction.spans import Span


def original_span(text: str, value: str) -> tuple[str, tuple[int, int]]:
    """The normalised text and the original range of ``value``'s first occurrence in it."""
    seen, offsets = normalize(text)
    assert offsets is not None
    start = seen.index(value)
    return seen, offsets.span(start, start + len(value))


@pytest.mark.parametrize(("raw", "folded"), [
    ("jo\u200bhn\u2060\ufeff@example.com", "john@example.com"),  # ZWSP, word joiner, BOM
    ("so\u00adft \u200c\u200d \u200e\u200f\u202a\u202c\u2066\u2069 x", "soft   x"),  # soft hyphen, ZWNJ/ZWJ, bidi
    ("john\uff20example\uff0ecom", "john@example.com"),  # full-width at and full stop
    ("\uff14\uff11\uff11\uff11", "4111"),  # full-width digits
    ("\u0664\u0661\u0661\u0661 \u06f4\u06f1 \u0968\u0967", "4111 41 21"),  # Arabic-Indic, Persian, Devanagari
    ("a\u00a0b\u202fc\u2007d\u2009e\u3000f", "a b c d e f"),  # NBSP, narrow NBSP, figure, thin, ideographic
    ("1\u20102\u20113\u20124\u20135\u20146\u22127", "1-2-3-4-5-6-7"),  # dashes, non-breaking hyphen, minus
    ("\ufb01le \u2460 x\u00b2", "file 1 x2"),  # NFKC expansions
    ("e\u0301", "\u00e9"),  # composition
    ("4\u0336\u03361\ufe0f", "41"),  # marks left on an ASCII base are dropped
    ("\u00e9\u0336", "\u00e9\u0336"),  # ... but kept on other bases
])
def test_folds(raw: str, folded: str) -> None:
    assert normalize(raw)[0] == folded


def test_ascii_fast_path_returns_the_same_object() -> None:
    text = "Card 4111 1111 1111 1111, mail ann@example.com."
    seen, offsets = normalize(text)
    assert seen is text and offsets is None
    spans = [Span("CREDIT_CARD", 5, 24, 1.0)]
    assert map_spans(spans, None) == spans


def test_unchanged_non_ascii_text_has_no_map() -> None:
    text = "Caf\u00e9 na\u00efve, \u00bfqu\u00e9?"  # precomposed letters: nothing to fold
    seen, offsets = normalize(text)
    assert seen is text and offsets is None


def test_one_for_one_folds_need_no_map() -> None:
    """Full-width and Arabic-Indic digits, NBSP, dashes, other scripts: offsets do not move."""
    text = "\uff14\uff11\uff11\uff11\u00a0\u0661\u0662\u2011\u043f\u0440\u0438\u0432\u0435\u0442 \u4f60\u597d"
    assert normalize(text) == ("4111 12-\u043f\u0440\u0438\u0432\u0435\u0442 \u4f60\u597d", None)


def test_expansions_before_the_value_shift_offsets_exactly() -> None:
    text = "\ufb01\ufb02 \u2474 \u3392 card 4111"  # fi fl ligatures, (1), MHz: each one char, several out
    seen, (start, end) = original_span(text, "4111")
    assert seen == "fifl (1) MHz card 4111"
    assert text[start:end] == "4111"


def test_removed_characters_inside_are_covered_and_outside_are_not() -> None:
    text = "x \u200bjo\u200b\u200bhn@example.com\u200b y"
    _, (start, end) = original_span(text, "john@example.com")
    assert text[start:end] == "jo\u200b\u200bhn@example.com"


def test_part_of_an_expansion_maps_to_the_whole_character() -> None:
    text = "a\ufb01b"  # normalised "afib": "f" alone and "i" alone both came from the ligature
    seen, offsets = normalize(text)
    assert seen == "afib" and offsets is not None
    assert offsets.span(1, 2) == (1, 2) and offsets.span(2, 3) == (1, 2) and offsets.span(0, 2) == (0, 2)
    assert offsets.span(2, 4) == (1, 3)


def test_combining_sequences_map_whole() -> None:
    text = "Jose\u0301 q\u0336\u0336 Zo\u00eb 4\u0336111"
    seen, offsets = normalize(text)
    assert seen == "Jos\u00e9 q Zo\u00eb 4111" and offsets is not None
    assert offsets.span(0, 4) == (0, 5)  # "José" is five original characters
    assert offsets.span(5, 6) == (6, 9)  # "q" and both of its marks
    assert offsets.span(7, 10) == (10, 13)  # "Zoë": precomposed, one to one
    start = seen.index("4111")
    assert text[slice(*offsets.span(start, start + 4))] == "4\u0336111"


def test_marks_at_the_start_and_lone_surrogates() -> None:
    assert normalize("\u0301abc")[0] == "\u0301abc"
    assert normalize("x\ud800y\u200b")[0] == "x\ud800y"


def test_map_spans_keeps_type_and_score() -> None:
    text = "\u2460 536\u201122\u20118726"
    seen, offsets = normalize(text)
    start = seen.index("536")
    [span] = map_spans([Span("US_SSN", start, start + 11, 0.5)], offsets)
    assert span == Span("US_SSN", 2, 13, 0.5) and text[span.start:span.end] == "536\u201122\u20118726"


POOL = ["a", "b", "1", " ", "-", "@", ".", "\u200b", "\u00ad", "\u202e", "\ufeff", "\u00a0", "\u202f", "\u2011",
        "\u2013", "\uff14", "\uff20", "\u0664", "\ufb01", "\u2460", "\u3392", "\u0301", "\u0336", "\ufe0f", "e",
        "\u00e9", "\u1100", "\u1161", "\u00bd"]


@pytest.mark.parametrize("seed", range(5))
def test_random_texts_map_back_exactly(seed: int) -> None:
    """For every normalised range: the original range it maps to, normalised on its own, holds it; the map
    is monotone; and the original characters outside every mapped range are only ones normalisation drops."""
    rng = random.Random(seed)
    for _ in range(200):
        text = "".join(rng.choice(POOL) for _ in range(rng.randint(1, 24)))
        seen, offsets = normalize(text)
        if offsets is None:  # the identity: every character folded to one, on its own
            assert seen == "".join(normalize(c)[0] for c in text) and len(seen) == len(text)
            continue
        starts = [offsets.start(j) for j in range(len(seen))]
        ends = [offsets.end(j + 1) for j in range(len(seen))]
        assert starts == sorted(starts) and ends == sorted(ends)
        assert all(0 <= s < e <= len(text) for s, e in zip(starts, ends, strict=True))
        for a in range(len(seen)):
            for b in range(a + 1, len(seen) + 1):
                lo, hi = offsets.span(a, b)
                assert seen[a:b] in normalize(text[lo:hi])[0], (text, a, b)
        covered = {k for s, e in zip(starts, ends, strict=True) for k in range(s, e)}
        assert all(normalize(text[k])[0] == "" for k in range(len(text)) if k not in covered)


def test_visible_tail_skips_what_normalisation_drops() -> None:
    assert visible_tail("abcdef", 4) == 4 and visible_tail("ab", 4) == 2
    assert visible_tail("xx4\u200b\u200b1\u00ad1\u03361", 4) == 8  # four digits, four dropped characters
    assert visible_tail("\u200b" * 10, 3) == 10


def test_long_mark_sequences_fold_in_linear_time() -> None:
    """NFKC orders a run of combining marks in quadratic time (32k out-of-order marks: 0.9 s here, so
    200k ~35 s); segments are folded with a bounded head, so the largest input the redactor takes stays
    cheap."""
    text = "a" + "\u0301\u0316" * 100_000
    started = time.perf_counter()
    seen, offsets = normalize(text)
    assert time.perf_counter() - started < 3.0
    assert seen[0] == "\u00e1" and offsets is not None and offsets.span(0, len(seen)) == (0, len(text))
    # marks past the head on an ASCII base go with the others: a stroked card number still folds
    assert normalize("4" + "\u0336" * 40 + "1" + "\u0336" * 40)[0] == "41"
