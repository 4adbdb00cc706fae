"""Streaming: an entity split anywhere across chunks is still redacted, and the output equals the
one-shot redaction; placeholders split anywhere are restored."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from gateway.redaction import PseudonymMap, Redactor, StreamRedactor, StreamRestorer
from gateway.redaction.spans import Span
from gateway.redaction.stream import safe_cut

from .canaries import CANARIES, MIXED, PERSON_TEXTS

pytestmark = pytest.mark.timeout(90)

# prose around each canary so releases happen before, inside and after the entity
PAD = "We reviewed the ticket together and agreed on the next steps for the migration. "
STREAM_TEXTS = [(e, raw, PAD + text + " " + PAD) for e, (raw, text) in CANARIES.items()]


async def run_stream(redactor: Redactor, chunks: Sequence[str], **kw: int) -> tuple[str, list[str]]:
    stream = StreamRedactor(redactor, **kw)
    released = [await stream.feed(c) for c in chunks]
    released.append(await stream.finish())
    return "".join(released), released


def random_splits(text: str, rng: random.Random, max_chunks: int = 24) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, max_chunks)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize(("entity", "raw", "text"), STREAM_TEXTS, ids=[e for e, _, _ in STREAM_TEXTS])
async def test_split_at_every_offset(make_redactor: Callable[..., Redactor], entity: str, raw: str,
                                     text: str) -> None:
    redactor = make_redactor(stream_holdback_chars=48)
    expected = (await redactor.redact(text)).text
    assert raw not in expected
    for i in range(len(text) + 1):
        out, _ = await run_stream(redactor, [text[:i], text[i:]], step=4)
        assert out == expected, i


@pytest.mark.parametrize("holdback", [32, 96])
async def test_random_multi_chunk_splits(make_redactor: Callable[..., Redactor], holdback: int) -> None:
    redactor = make_redactor(stream_holdback_chars=holdback)
    rng = random.Random(1234 + holdback)
    for text in [MIXED, *(t for _, _, t in STREAM_TEXTS)]:
        expected = (await redactor.redact(text)).text
        for _ in range(10):
            out, _ = await run_stream(redactor, random_splits(text, rng))
            assert out == expected


async def test_token_sized_deltas_release_early(regex_redactor: Redactor) -> None:
    text = PAD * 6 + CANARIES["US_SSN"][1]
    deltas = [text[i:i + 4] for i in range(0, len(text), 4)]
    stream = StreamRedactor(regex_redactor)
    first_release = None
    for n, delta in enumerate(deltas):
        if await stream.feed(delta) and first_release is None:
            first_release = n
    await stream.finish()
    hold = regex_redactor.holdback_chars
    assert first_release is not None and first_release * 4 <= hold + hold // 8 + 4
    assert stream.counts == {"US_SSN": 1}


async def test_text_without_whitespace_is_bounded(regex_redactor: Redactor) -> None:
    stream = StreamRedactor(regex_redactor, holdback=32)
    released = [await stream.feed("x" * 16) for _ in range(20)]
    assert sum(map(len, released)) > 0  # forced cut after 4 * holdback chars
    assert "".join(released) + await stream.finish() == "x" * 320


async def test_stream_pseudonymize_then_restore(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(entities=dict.fromkeys(CANARIES, "pseudonymize"), stream_holdback_chars=48)
    stream = StreamRedactor(redactor)
    out = "".join([await stream.feed(MIXED[i:i + 7]) for i in range(0, len(MIXED), 7)]) + await stream.finish()
    assert stream.pseudonyms is not None and len(stream.pseudonyms) == len(CANARIES)
    assert all(raw not in out for raw, _ in CANARIES.values())
    assert stream.pseudonyms.restore(out) == MIXED


async def test_ner_stream_never_leaks_names(ner_redactor: Redactor) -> None:
    name, text = PERSON_TEXTS[0]
    text = PAD + text + " " + PAD
    for i in range(0, len(text) + 1, 5):
        out, _ = await run_stream(ner_redactor, [text[:i], text[i:]], holdback=48, step=16)
        assert name not in out and "Margaret" not in out and "Thompson" not in out, i


@pytest.fixture
def pmap() -> PseudonymMap:
    m = PseudonymMap()
    for entity, (raw, _) in CANARIES.items():
        m.placeholder(entity, raw)
    return m


ANSWER = "Sure: <EMAIL_ADDRESS_1> and <US_SSN_1>, a < b, <unknown_2>, <IP_ADDRESS_1>"


def test_restorer_split_at_every_offset(pmap: PseudonymMap) -> None:
    expected = pmap.restore(ANSWER)
    assert CANARIES["US_SSN"][0] in expected and "<unknown_2>" in expected
    for i in range(len(ANSWER) + 1):
        restorer = StreamRestorer(pmap)
        assert restorer.feed(ANSWER[:i]) + restorer.feed(ANSWER[i:]) + restorer.finish() == expected, i


def test_restorer_random_chunks_and_single_chars(pmap: PseudonymMap) -> None:
    rng = random.Random(7)
    expected = pmap.restore(ANSWER)
    for chunks in [list(ANSWER), *(random_splits(ANSWER, rng, 30) for _ in range(50))]:
        restorer = StreamRestorer(pmap)
        assert "".join(restorer.feed(c) for c in chunks) + restorer.finish() == expected


def test_restorer_releases_plain_text_immediately(pmap: PseudonymMap) -> None:
    restorer = StreamRestorer(pmap)
    assert restorer.feed("Hello there") == "Hello there"
    assert restorer.feed(" see <US_S") == " see "
    assert restorer.feed("SN_1> ok") == f"{CANARIES['US_SSN'][0]} ok"


@pytest.mark.parametrize(
    ("text", "spans", "limit", "expected"),
    [
        ("aaa bbb ccc", [], 9, 8),
        ("aaa bbb ccc", [Span("X", 4, 11, 1.0)], 9, 4),
        ("aaa bbb ccc", [Span("X", 0, 7, 1.0)], 9, 8),
        ("aaabbbccc", [], 5, 0),
    ],
)
def test_safe_cut(text: str, spans: list[Span], limit: int, expected: int) -> None:
    assert safe_cut(text, spans, limit) == expected
