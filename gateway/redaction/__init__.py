"""PII redaction with presidio: a regex/checksum engine and a spaCy NER engine, per tenant config.

Build a ``Redactor`` per config at start (engines are cached per process), then
``await redactor.redact(text)``; streams go through ``StreamRedactor`` / ``StreamRestorer``.
"""

from gateway.redaction.config import Action, CustomRecognizerConfig, PatternConfig, RedactionConfig
from gateway.redaction.engines import EngineRegistry, default_registry
from gateway.redaction.errors import PIIBlocked, RedactionFailed
from gateway.redaction.operators import PseudonymMap
from gateway.redaction.redactor import RedactedSpan, RedactionResult, Redactor
from gateway.redaction.spans import Span
from gateway.redaction.stream import StreamRedactor, StreamRestorer

__all__ = [
    "Action",
    "CustomRecognizerConfig",
    "EngineRegistry",
    "PIIBlocked",
    "PatternConfig",
    "PseudonymMap",
    "RedactedSpan",
    "RedactionConfig",
    "RedactionFailed",
    "RedactionResult",
    "Redactor",
    "Span",
    "StreamRedactor",
    "StreamRestorer",
    "default_registry",
]
