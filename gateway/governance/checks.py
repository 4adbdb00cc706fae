"""The policy stage's checks, one small function per rule, in the order they run.

Each check raises the refusal (through ``deny``, so the event names the rule) or records a flag, and
returns nothing otherwise. The order is part of the behaviour: the first refusal wins, so a request that
breaks several rules is refused for the first one listed here. ``REQUEST_CHECKS`` need only the body's
fields; ``TEXT_CHECKS`` need the prompt's texts, which are collected once, and only when the policy has a
rule that reads them (most requests pay nothing for them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gateway.endpoints import endpoint_for
from gateway.errors import InvalidRequest, PolicyDenied
from gateway.exchange import Exchange
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.decision import deny, flag

RequestCheck = Callable[[Exchange, CompiledPolicy], None]
TextCheck = Callable[[Exchange, CompiledPolicy, Sequence[str]], None]

_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_USER_FIELDS = ("end_user", "user")


def check_model(ex: Exchange, pol: CompiledPolicy) -> None:
    model = ex.request_model or ""
    rule = pol.model_allowed(model)
    if rule is not None:
        raise deny(ex, PolicyDenied(f"The model '{model}' is not allowed by this tenant's policy ({rule}).",
                                    param="model", code="model_not_allowed"), [rule])


def check_metadata(ex: Exchange, pol: CompiledPolicy) -> None:
    missing = [n for n in pol.policy.required_metadata
               if not (ex.end_user if n in _USER_FIELDS else ex.metadata.get(n))]
    if missing:
        raise deny(ex, InvalidRequest(
            f"This tenant's policy requires request metadata that is missing: {', '.join(missing)}. Send it "
            "as extra_body={'gatewatch': {'metadata': {...}}} or x-gatewatch-meta-<name> headers "
            "(end_user: the 'user' field).", param="gatewatch.metadata", code="missing_metadata"),
            ["required_metadata"])


def check_max_tokens(ex: Exchange, pol: CompiledPolicy) -> None:
    cap = pol.policy.limits.max_tokens
    if cap is None:
        return
    for f in _MAX_TOKEN_FIELDS:
        v = ex.body.get(f)
        if isinstance(v, int) and v > cap:
            raise deny(ex, InvalidRequest(f"'{f}' is {v}; this tenant's policy allows at most {cap}.", param=f,
                                          code="max_tokens_exceeded"), ["limits.max_tokens"])


def check_prompt_size(ex: Exchange, pol: CompiledPolicy, texts: Sequence[str]) -> None:
    """Characters, then tokens estimated as ceil(characters / 4): no tokenizer on the hot path."""
    lim = pol.policy.limits
    chars = sum(len(t) for t in texts)
    if lim.max_prompt_chars is not None and chars > lim.max_prompt_chars:
        raise deny(ex, InvalidRequest(f"The prompt has {chars} characters; this tenant's policy allows at most "
                                      f"{lim.max_prompt_chars}.", code="prompt_too_large"),
                   ["limits.max_prompt_chars"])
    tokens = math.ceil(chars / 4)
    if lim.max_prompt_tokens is not None and tokens > lim.max_prompt_tokens:
        raise deny(ex, InvalidRequest(f"The prompt has about {tokens} tokens (estimated as characters / 4); "
                                      f"this tenant's policy allows at most {lim.max_prompt_tokens}.",
                                      code="prompt_too_large"), ["limits.max_prompt_tokens"])


def check_input_patterns(ex: Exchange, pol: CompiledPolicy, texts: Sequence[str]) -> None:
    """Rules in declaration order: the first ``block`` refuses; ``redact`` hits are only recorded here
    (the redaction stage replaces them)."""
    for r in pol.input_patterns.scan(texts):
        if r.action == "block":
            raise deny(ex, PolicyDenied(r.reason or f"The request matches a pattern this tenant's policy "
                                        f"blocks (rule {r.id}).", code="pattern_blocked"), [r.id])
        if r.action == "flag":
            flag(ex, [r.id])
        else:
            ex.policy_rule_ids.append(r.id)


def check_injection(ex: Exchange, pol: CompiledPolicy, texts: Sequence[str]) -> None:
    if pol.injection is None:
        return
    hits = pol.injection.scan(texts)
    if hits and pol.policy.prompt_injection.action == "block":
        raise deny(ex, PolicyDenied("The request looks like a prompt-injection attempt and was refused "
                                    f"(rules: {', '.join(hits)}).", code="prompt_injection"), hits)
    if hits:
        flag(ex, hits)


REQUEST_CHECKS: tuple[RequestCheck, ...] = (check_model, check_metadata, check_max_tokens)
TEXT_CHECKS: tuple[TextCheck, ...] = (check_prompt_size, check_input_patterns, check_injection)


def reads_texts(pol: CompiledPolicy) -> bool:
    lim = pol.policy.limits
    return bool(lim.max_prompt_chars or lim.max_prompt_tokens or pol.input_patterns or pol.injection)


def run_checks(ex: Exchange, pol: CompiledPolicy) -> None:
    """Every check of ``pol`` on ``ex``, in order; raises the first refusal."""
    for check in REQUEST_CHECKS:
        check(ex, pol)
    if not reads_texts(pol):
        return
    texts = [r.text for r in endpoint_for(ex.endpoint).request_texts(ex.body)]
    for text_check in TEXT_CHECKS:
        text_check(ex, pol, texts)
