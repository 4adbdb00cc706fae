"""Engines are built once per session (the NER engine takes seconds); redactors per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.redaction import EngineRegistry, RedactionConfig, Redactor

NER_ENTITIES = {
    "PERSON": "redact", "EMAIL_ADDRESS": "redact", "PHONE_NUMBER": "redact", "CREDIT_CARD": "redact",
    "US_SSN": "redact", "IBAN_CODE": "redact", "IP_ADDRESS": "redact",
}


@pytest.fixture(scope="session")
def engines() -> EngineRegistry:
    return EngineRegistry()


@pytest.fixture
async def make_redactor(engines: EngineRegistry) -> AsyncIterator[Callable[..., Redactor]]:
    made: list[Redactor] = []

    def make(**cfg: Any) -> Redactor:
        redactor = Redactor(RedactionConfig(**cfg), engines=engines)
        made.append(redactor)
        return redactor

    yield make
    for redactor in made:
        await redactor.close()


@pytest.fixture
def regex_redactor(make_redactor: Callable[..., Redactor]) -> Redactor:
    return make_redactor()


@pytest.fixture
def ner_redactor(make_redactor: Callable[..., Redactor]) -> Redactor:
    return make_redactor(engine="ner", entities=NER_ENTITIES)
