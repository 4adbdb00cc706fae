"""Tenant policy: pydantic models (frozen, extra=forbid), validated once per file load.

A policy file is YAML; ``default.yaml`` holds the defaults every tenant inherits and ``<tenant>.yaml``
is deep-merged over it (mappings merge, lists and scalars replace). See docs/governance.md.
"""

from __future__ import annotations

from typing import Literal

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from gateway.redaction.config import DEFAULT_ENTITIES, Action, CustomRecognizerConfig, EngineKind

_frozen = ConfigDict(frozen=True, extra="forbid")

RuleAction = Literal["block", "redact", "flag"]
Capture = Literal["full", "hashes", "none"]


def _default_pii() -> dict[str, Action]:
    return dict.fromkeys(DEFAULT_ENTITIES, "redact")


class ModelsPolicy(BaseModel):
    """Model aliases the tenant may call; shell-style globs (``gpt-4o*``). Deny wins over allow."""

    model_config = _frozen
    allow: tuple[str, ...] | None = None  # None = every model the gateway routes
    deny: tuple[str, ...] = ()


class LimitsPolicy(BaseModel):
    model_config = _frozen
    max_prompt_chars: PositiveInt | None = None
    max_prompt_tokens: PositiveInt | None = None  # estimated as ceil(chars / 4): no tokenizer on the hot path
    max_tokens: PositiveInt | None = None  # cap on max_tokens / max_completion_tokens / max_output_tokens


class PatternRule(BaseModel):
    """A blocked pattern or keyword list. ``redact`` replaces each match with ``[REDACTED:<id>]``."""

    model_config = _frozen
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    on: Literal["input", "output", "both"] = "input"
    regex: str | None = None
    keywords: tuple[str, ...] = ()
    case_sensitive: bool = False
    action: RuleAction = "block"
    reason: str | None = None  # shown to the caller on block; default names the rule

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile(value)
            except regex.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_of(self) -> PatternRule:
        if (self.regex is None) == (not self.keywords):
            raise ValueError(f"pattern {self.id!r}: set exactly one of 'regex' or 'keywords'")
        if any(not k.strip() for k in self.keywords):
            raise ValueError(f"pattern {self.id!r}: empty keyword")
        return self


class PIIPolicy(BaseModel):
    """PII actions per entity type, separately for the request (before the upstream), the response
    (before the client) and the stored event. An entity not listed is left as it is."""

    model_config = _frozen
    engine: EngineKind = "regex"
    ner_model: str | None = None  # None -> the redaction library's default spaCy package
    input: dict[str, Action] = Field(default_factory=_default_pii)
    output: dict[str, Action] = Field(default_factory=dict)
    events: dict[str, Action] = Field(default_factory=_default_pii)
    # shorthand: every input entity whose action is `redact` is pseudonymized instead (<EMAIL_ADDRESS_1>),
    # and the placeholders are put back in the response to the client (also on streams)
    pseudonymize: bool = False
    restore_output: bool = True  # put pseudonymized values back in the client's response
    # the event's end user and metadata values: `scan` = the events map above, `hash` = a keyed hash of
    # each whole value (gateway/chain/identity.py)
    identity: Literal["scan", "hash"] = "scan"
    custom_recognizers: tuple[CustomRecognizerConfig, ...] = ()
    score_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    entity_thresholds: dict[str, float] = Field(default_factory=dict)
    stream_holdback_chars: int = Field(default=96, ge=16, le=4096)
    max_input_chars: PositiveInt = 200_000
    timeout_s: PositiveFloat = 2.0
    # detections remembered per tenant (keyed digests, never text) so a repeated system prompt or chat
    # history is analysed once; 0 turns the cache off for this policy
    cache_entries: NonNegativeInt = 8192

    @model_validator(mode="after")
    def _check(self) -> PIIPolicy:
        for where in ("output", "events"):
            bad = sorted(e for e, a in getattr(self, where).items() if a == "pseudonymize")
            if bad:
                raise ValueError(f"pii.{where}: 'pseudonymize' is only an input action (got it for {bad})")
        bad = sorted(e for e, a in self.events.items() if a == "block")
        if bad:
            raise ValueError(f"pii.events: 'block' is not an events action (got it for {bad}); block on input")
        return self

    def input_actions(self) -> dict[str, Action]:
        if not self.pseudonymize:
            return dict(self.input)
        return {e: ("pseudonymize" if a == "redact" else a) for e, a in self.input.items()}


class InjectionPolicy(BaseModel):
    model_config = _frozen
    enabled: bool = False
    action: Literal["block", "flag"] = "block"
    extra_patterns: tuple[str, ...] = ()  # more regexes (case-insensitive), rule id prompt_injection.custom.<n>

    @field_validator("extra_patterns")
    @classmethod
    def _compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for p in value:
            try:
                regex.compile(p)
            except regex.error as exc:
                raise ValueError(f"invalid regex {p!r}: {exc}") from exc
        return value


class RateLimits(BaseModel):
    model_config = _frozen
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None


class Budgets(BaseModel):
    """Per UTC day / calendar month. Tokens are prompt + completion as the upstream reports them."""

    model_config = _frozen
    tokens_per_day: PositiveInt | None = None
    tokens_per_month: PositiveInt | None = None
    cost_per_day_usd: NonNegativeFloat | None = None
    cost_per_month_usd: NonNegativeFloat | None = None


class TenantPolicy(BaseModel):
    model_config = _frozen
    version: str | None = None  # None -> a hash of the files' contents
    models: ModelsPolicy = ModelsPolicy()
    limits: LimitsPolicy = LimitsPolicy()
    required_metadata: tuple[str, ...] = ()  # names in gatewatch.metadata / x-gatewatch-meta-*; `end_user`
    patterns: tuple[PatternRule, ...] = ()
    pii: PIIPolicy = PIIPolicy()
    prompt_injection: InjectionPolicy = InjectionPolicy()
    capture: Capture | None = None  # None -> tenants.<name>.capture from gatewatch.yaml
    rate_limits: RateLimits = RateLimits()  # for the whole tenant (keys carry their own)
    budgets: Budgets = Budgets()  # for the whole tenant (keys carry their own)

    @model_validator(mode="after")
    def _unique_ids(self) -> TenantPolicy:
        ids = [p.id for p in self.patterns]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate pattern ids: {dupes}")
        return self
