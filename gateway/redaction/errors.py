"""Redaction errors. Both fail closed: the request is refused, the unredacted text never goes on."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.errors import PolicyDenied, ServiceUnavailable


class RedactionFailed(ServiceUnavailable):
    """The redaction engine could not finish (oversize input, timeout, engine error): 503."""

    code = "redaction_failed"


class RedactionInputTooLarge(RedactionFailed):
    """More text than the policy lets the engine analyse (``pii.max_input_chars``): the caller's to fix,
    so a 413 that names the limit; still a ``RedactionFailed``, so every fail-closed path refuses it."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class PIIBlocked(PolicyDenied):
    """The text holds an entity type whose action is ``block``: 403. Carries types, never values."""

    code = "pii_blocked"

    def __init__(self, entity_types: Iterable[str]) -> None:
        self.entity_types: tuple[str, ...] = tuple(sorted(set(entity_types)))
        super().__init__(f"request contains blocked PII: {', '.join(self.entity_types)}")
