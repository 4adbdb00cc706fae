"""Recognizer preconditions: declared by each built-in recognizer, read by the prefilter; presidio's own
recognizers keep the state presidio configured them with (test_cache_and_prefilter.py checks the
preconditions never skip a real detection)."""

from __future__ import annotations

import pytest
from presidio_analyzer import RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider

from gateway.redaction import Redactor
from gateway.redaction.engines import LANGUAGE
from gateway.redaction.prefilter import PREFILTER_RECOGNIZERS, possible_entities


def test_every_prefiltered_entity_has_a_declared_precondition() -> None:
    for entity, cls in PREFILTER_RECOGNIZERS.items():
        assert hasattr(cls, "precondition"), entity


def test_engine_recognizers_are_presidios_own_with_the_precondition(regex_redactor: Redactor) -> None:
    """Adopted, not rebuilt: context words, patterns and regex flags are what presidio's loader set."""
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "no_op", "models": [{"lang_code": LANGUAGE, "model_name": "no_op"}]}).create_engine()
    plain = RecognizerRegistry(supported_languages=[LANGUAGE])
    plain.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp)
    ours = regex_redactor._engine.analyzer.registry.recognizers
    for entity, cls in PREFILTER_RECOGNIZERS.items():
        [mine] = [r for r in ours if entity in r.supported_entities]
        assert type(mine) is cls
        theirs = [r for r in plain.recognizers if type(r) is cls.__mro__[1]]
        if cls.__module__ == "gateway.redaction.predefined":  # presidio's (email and phone: ours)
            assert (mine.context, mine.name, mine.global_regex_flags) == (
                theirs[0].context, theirs[0].name, theirs[0].global_regex_flags)
            assert [p.regex for p in mine.patterns] == [p.regex for p in theirs[0].patterns]


@pytest.mark.parametrize(("text", "possible"), [
    ("no pii here", []),
    ("mail ann@example.com", ["EMAIL_ADDRESS"]),
    ("call 212 555", ["PHONE_NUMBER"]),
    ("ssn 536-22-8726", ["PHONE_NUMBER", "US_SSN"]),
    ("card 4111 1111 1111 1111", ["CREDIT_CARD", "PHONE_NUMBER", "US_SSN"]),
    ("iban de89", ["IBAN_CODE"]),
    ("host ::1", ["IP_ADDRESS"]),
    ("host 10.0.0.1", ["IP_ADDRESS"]),
    ("version 1.2", []),
])
def test_preconditions(text: str, possible: list[str]) -> None:
    entities = sorted(PREFILTER_RECOGNIZERS)
    assert possible_entities(text, entities, frozenset(entities)) == possible
    assert possible_entities(text, [*entities, "PERSON"], frozenset()) == [*entities, "PERSON"]  # none prefiltered
