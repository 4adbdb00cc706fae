"""Each PII action; pseudonymization round trip; nothing that leaves a result carries a raw value."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
import regex

from gateway.errors import PolicyDenied
from gateway.redaction import PIIBlocked, PseudonymMap, Redactor

from .canaries import CANARIES, MIXED

pytestmark = pytest.mark.timeout(60)

SECRET = "unit-test-secret-0123456789"


@pytest.mark.parametrize(
    ("entity", "action", "expected"),
    [
        ("CREDIT_CARD", "redact", "<CREDIT_CARD>"),
        ("CREDIT_CARD", "mask", "**** **** **** 0004"),
        ("PHONE_NUMBER", "mask", "(***) ***-0147"),
        ("US_SSN", "mask", "***-**-8726"),
        ("IBAN_CODE", "mask", "**** **** **** **** **30 00"),
        ("EMAIL_ADDRESS", "mask", "*" * len("canary.user+tag@example.org")),
        ("IP_ADDRESS", "allow", "192.168.14.27"),
        ("EMAIL_ADDRESS", "pseudonymize", "<EMAIL_ADDRESS_1>"),
    ],
)
async def test_action_replacement(
    make_redactor: Callable[..., Redactor], entity: str, action: str, expected: str
) -> None:
    raw, text = CANARIES[entity]
    result = await make_redactor(entities={entity: action}).redact(text)
    assert result.text == text.replace(raw, expected)
    assert result.counts == ({} if action == "allow" else {entity: 1})


async def test_hash_is_keyed_stable_and_short(make_redactor: Callable[..., Redactor]) -> None:
    raw, text = CANARIES["US_SSN"]
    a = make_redactor(entities={"US_SSN": "hash"}, hash_secret=SECRET)
    b = make_redactor(entities={"US_SSN": "hash"}, hash_secret=SECRET)
    other = make_redactor(entities={"US_SSN": "hash"}, hash_secret=SECRET + "x")
    out_a, out_b, out_o = [(await r.redact(text)).text for r in (a, b, other)]
    token = regex.search(r"<US_SSN:([0-9a-f]{12})>", out_a)
    assert token is not None and raw not in out_a
    assert out_a == out_b != out_o


async def test_block_raises_with_types_only(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(entities={"US_SSN": "block", "EMAIL_ADDRESS": "redact", "CREDIT_CARD": "block"})
    with pytest.raises(PIIBlocked) as info:
        await redactor.redact(MIXED)
    assert isinstance(info.value, PolicyDenied) and info.value.status == 403
    assert info.value.entity_types == ("CREDIT_CARD", "US_SSN")
    body = str(info.value.to_body())
    assert all(raw not in body for raw, _ in CANARIES.values())
    # text without a blocked type passes
    assert (await redactor.redact(CANARIES["EMAIL_ADDRESS"][1])).counts == {"EMAIL_ADDRESS": 1}


async def test_actions_override_per_call(regex_redactor: Redactor) -> None:
    text = CANARIES["CREDIT_CARD"][1]
    assert (await regex_redactor.redact(text, {"CREDIT_CARD": "allow"})).text == text
    masked = (await regex_redactor.redact(text, {"CREDIT_CARD": "mask"})).text
    assert masked.endswith("**** 0004 and it expires next spring.")


async def test_pseudonymize_round_trip_across_messages(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(entities=dict.fromkeys(CANARIES, "pseudonymize"))
    email = CANARIES["EMAIL_ADDRESS"][0]
    texts = [MIXED, f"Again: {email}.", "nothing here"]
    results = await redactor.redact_many(texts)
    pmap = results[0].pseudonyms
    assert isinstance(pmap, PseudonymMap) and len(pmap) == len(CANARIES)
    assert results[1].text == "Again: <EMAIL_ADDRESS_1>."  # same value, same placeholder
    assert results[2].pseudonyms is None
    for raw, _ in CANARIES.values():
        assert raw not in results[0].text
    assert [pmap.restore(r.text) for r in results] == texts
    # a model answer mentioning placeholders gets the values back; unknown ones stay
    assert pmap.restore("Sent to <EMAIL_ADDRESS_1>, not <EMAIL_ADDRESS_9>.") == (
        f"Sent to {email}, not <EMAIL_ADDRESS_9>.")


async def test_pseudonym_map_shared_by_caller(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(entities={"US_SSN": "pseudonymize"})
    pmap = PseudonymMap()
    first = await redactor.redact("a 536-22-8726", pseudonyms=pmap)
    second = await redactor.redact("b 536-22-8726 c 219-09-9999", pseudonyms=pmap)
    assert (first.text, second.text) == ("a <US_SSN_1>", "b <US_SSN_1> c <US_SSN_2>")


async def test_no_raw_value_in_result_metadata(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(entities=dict.fromkeys(CANARIES, "pseudonymize"))
    result = await redactor.redact(MIXED)
    exposed = repr(result.spans) + repr(result.counts) + repr(result.pseudonyms)
    assert all(raw not in exposed for raw, _ in CANARIES.values())
    with pytest.raises(TypeError):
        pickle.dumps(result.pseudonyms)
