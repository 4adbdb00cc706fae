"""PII redaction with presidio: a regex/checksum engine and a spaCy NER engine, per tenant config.

Build a ``Redactor`` per config at start (engines are cached per process), then
``await redactor.redact(text)``; streams go through ``StreamRedactor`` / ``StreamRestorer``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy exports (PEP 562): importing the package (or its config module, which the CLI and the policy
# loader need) must not import presidio/spaCy — that costs seconds and ~100 MB.
_EXPORTS = {
    "Action": "config", "CustomRecognizerConfig": "config", "PatternConfig": "config", "RedactionConfig": "config",
    "EngineRegistry": "engines", "default_registry": "engines",
    "PIIBlocked": "errors", "RedactionFailed": "errors",
    "PseudonymMap": "operators",
    "RedactedSpan": "redactor", "RedactionResult": "redactor", "Redactor": "redactor",
    "Span": "spans",
    "StreamRedactor": "stream", "StreamRestorer": "stream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.redaction' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gateway.redaction.{module}"), name)
    globals()[name] = value
    return value
