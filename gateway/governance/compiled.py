"""A tenant policy compiled for the request path: regexes compiled, action maps resolved, the PII
redactor built (engines are built once per process and shared by every policy that uses them)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.governance.injection import InjectionDetector
from gateway.governance.patterns import PatternSet, compile_rule
from gateway.governance.policy import PIIPolicy, TenantPolicy
from gateway.redaction import Action, RedactionConfig, Redactor

RedactorFactory = Callable[[RedactionConfig], Redactor]


def redaction_config(pii: PIIPolicy, hash_secret: str | None = None, max_concurrency: int = 4) -> RedactionConfig:
    acting = {e: "redact" for m in (pii.input, pii.output, pii.events) for e, a in m.items() if a != "allow"}
    extra: dict[str, object] = {"ner_model": pii.ner_model} if pii.ner_model else {}
    if hash_secret:
        extra["hash_secret"] = hash_secret
    return RedactionConfig(engine=pii.engine, entities=acting, custom_recognizers=pii.custom_recognizers,
                           score_threshold=pii.score_threshold, entity_thresholds=pii.entity_thresholds,
                           stream_holdback_chars=pii.stream_holdback_chars, max_input_chars=pii.max_input_chars,
                           timeout_s=pii.timeout_s, cache_entries=pii.cache_entries,
                           max_concurrency=max_concurrency, **extra)  # type: ignore[arg-type]


def _acting(actions: Mapping[str, Action]) -> dict[str, Action]:
    return {e: a for e, a in actions.items() if a != "allow"}


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    tenant: str  # the file's tenant ("default" for the defaults)
    version: str
    policy: TenantPolicy
    redactor: Redactor | None  # None: no PII action anywhere
    input_actions: Mapping[str, Action]  # only entities acted on (allow dropped)
    output_actions: Mapping[str, Action]
    events_actions: Mapping[str, Action]
    input_patterns: PatternSet
    output_patterns: PatternSet
    injection: InjectionDetector | None

    @classmethod
    def build(cls, tenant: str, version: str, policy: TenantPolicy, make_redactor: RedactorFactory) -> CompiledPolicy:
        pii = policy.pii
        inp, out, evs = _acting(pii.input_actions()), _acting(pii.output), _acting(pii.events)
        redactor = make_redactor(redaction_config(pii)) if (inp or out or evs) else None
        rules = [compile_rule(r) for r in policy.patterns]
        inj = policy.prompt_injection
        return cls(tenant, version, policy, redactor, inp, out, evs,
                   PatternSet([r for r, p in zip(rules, policy.patterns, strict=True) if p.on in ("input", "both")]),
                   PatternSet([r for r, p in zip(rules, policy.patterns, strict=True) if p.on in ("output", "both")]),
                   InjectionDetector(inj.extra_patterns) if inj.enabled else None)

    @property
    def pseudonymizing(self) -> bool:
        return "pseudonymize" in self.input_actions.values()

    @property
    def restores(self) -> bool:
        return self.pseudonymizing and self.policy.pii.restore_output

    @property
    def touches_output(self) -> bool:
        """Whether the answer to the client may change (otherwise streams pass through untouched)."""
        return bool(self.output_actions) or bool(self.output_patterns) or self.restores

    @property
    def input_redacts(self) -> bool:
        return bool(self.input_actions) or any(r.action == "redact" for r in self.input_patterns.rules)

    def model_allowed(self, model: str) -> str | None:
        """None if allowed, else the rule id that refuses it."""
        models = self.policy.models
        if any(fnmatch.fnmatchcase(model, p) for p in models.deny):
            return "models.deny"
        if models.allow is not None and not any(fnmatch.fnmatchcase(model, p) for p in models.allow):
            return "models.allow"
        return None
