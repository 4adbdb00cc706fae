"""Each entity type is detected by its engine; custom recognizers; thresholds; config checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from gateway.redaction import EngineRegistry, RedactionConfig, Redactor

from .canaries import CANARIES, MIXED, PERSON_TEXTS

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("entity", "raw", "text"), [(e, r, t) for e, (r, t) in CANARIES.items()])
async def test_regex_engine_detects_each_default_entity(
    regex_redactor: Redactor, entity: str, raw: str, text: str
) -> None:
    result = await regex_redactor.redact(text)
    assert raw not in result.text
    assert f"<{entity}>" in result.text
    assert result.counts == {entity: 1}
    start = text.index(raw)
    assert [(s.entity_type, s.start, s.end) for s in result.spans] == [(entity, start, start + len(raw))]


@pytest.mark.parametrize(
    "text",
    [
        "Order 4111 1111 1111 1112 is not a card (Luhn fails).",
        "Version 1.2.3 shipped on 2024-05-01 with 42 fixes.",
        "Write to us at the office, no address here.",
    ],
)
async def test_regex_engine_leaves_non_pii_alone(regex_redactor: Redactor, text: str) -> None:
    assert (await regex_redactor.redact(text)).text == text


async def test_mixed_text_counts_every_type(regex_redactor: Redactor) -> None:
    result = await regex_redactor.redact(MIXED)
    assert result.counts == dict.fromkeys(CANARIES, 1)
    for raw, _ in CANARIES.values():
        assert raw not in result.text
    assert "order 1182" in result.text


@pytest.mark.parametrize(("name", "text"), PERSON_TEXTS)
async def test_ner_engine_detects_person(ner_redactor: Redactor, name: str, text: str) -> None:
    result = await ner_redactor.redact(text)
    assert name not in result.text
    assert result.counts.get("PERSON") == 1


async def test_ner_engine_also_runs_pattern_recognizers(ner_redactor: Redactor) -> None:
    result = await ner_redactor.redact(MIXED)
    for raw, _ in CANARIES.values():
        assert raw not in result.text
    # spaCy-sm would tag "SSN"/"IBAN" as ORG; ORG is ignored, so those words stay.
    assert "SSN <US_SSN>" in result.text


async def test_redact_many_batches_texts(ner_redactor: Redactor) -> None:
    texts = [t for _, t in PERSON_TEXTS] + [CANARIES["US_SSN"][1]]
    results = await ner_redactor.redact_many(texts)
    assert [r.counts for r in results] == [{"PERSON": 1}] * 3 + [{"US_SSN": 1}]


async def test_custom_recognizer_with_context(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(
        entities={"EMPLOYEE_ID": "redact", "EMAIL_ADDRESS": "redact"},
        custom_recognizers=[{"name": "employee_id", "entity": "EMPLOYEE_ID",
                             "patterns": [{"regex": r"\bEMP-\d{6}\b", "score": 0.8}],
                             "context": ["employee"]}],
    )
    result = await redactor.redact("employee EMP-004217 and EMP-12 and bob@example.com")
    assert result.text == "employee <EMPLOYEE_ID> and EMP-12 and <EMAIL_ADDRESS>"


async def test_score_thresholds(make_redactor: Callable[..., Redactor]) -> None:
    text = CANARIES["PHONE_NUMBER"][1]  # phone numbers score 0.4 without NLP context
    assert (await make_redactor().redact(text)).counts == {"PHONE_NUMBER": 1}
    strict = make_redactor(entity_thresholds={"PHONE_NUMBER": 0.5})
    assert (await strict.redact(text)).text == text
    assert (await make_redactor(score_threshold=0.9).redact(text)).text == text


def test_defaults_are_the_issue_defaults() -> None:
    cfg = RedactionConfig()
    assert cfg.engine == "regex"
    assert cfg.entities == dict.fromkeys(
        ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"], "redact")


@pytest.mark.parametrize(
    "bad",
    [
        {"entities": {"EMAIL_ADDRESS": "shred"}},
        {"entities": {"email": "redact"}},
        {"engine": "bert"},
        {"unknown_field": 1},
        {"score_threshold": 1.5},
        {"custom_recognizers": [{"name": "x", "entity": "X", "patterns": [{"regex": "(unclosed"}]}]},
        {"custom_recognizers": [{"name": "x", "entity": "X", "patterns": []}]},
    ],
)
def test_config_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RedactionConfig(**bad)  # type: ignore[arg-type]


def test_engine_must_detect_every_configured_entity(make_redactor: Callable[..., Redactor]) -> None:
    with pytest.raises(ValueError, match="PERSON"):
        make_redactor(entities={"PERSON": "redact"})  # the regex engine has no PERSON
    with pytest.raises(ValueError, match="NO_SUCH_THING"):
        make_redactor(entities={"NO_SUCH_THING": "redact"})


def test_each_engine_built_once(engines: object, make_redactor: Callable[..., Redactor]) -> None:
    first = make_redactor()
    second = make_redactor(max_concurrency=2)
    assert first._engine is second._engine


def test_missing_ner_model_is_refused_not_downloaded(engines: EngineRegistry) -> None:
    with pytest.raises(ValueError, match="not installed"):
        engines.get(RedactionConfig(engine="ner", ner_model="en_core_web_lg", entities={"PERSON": "redact"}))
