"""Recognizer pieces presidio lacks for a gateway: an offline email validator, tenant regex recognizers,
and a regex guard that turns a regex timeout into a failure instead of presidio's silent skip."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import regex
import tldextract
from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from gateway.redaction.config import CustomRecognizerConfig
from gateway.redaction.preconditions import Contains, Precondition

# The bundled public-suffix snapshot only: never fetch the list, never write a cache.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """presidio's EmailRecognizer with a tldextract that never touches the network."""

    precondition: ClassVar[Precondition] = Contains("@")

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


def build_custom_recognizer(cfg: CustomRecognizerConfig) -> PatternRecognizer:
    patterns = [Pattern(f"{cfg.name}_{i}", p.regex, p.score) for i, p in enumerate(cfg.patterns)]
    return PatternRecognizer(
        supported_entity=cfg.entity,
        name=cfg.name,
        patterns=patterns,
        context=list(cfg.context) or None,
    )


class RegexTimeout(Exception):
    """A guarded regex ran out of its budget while presidio analysed a text."""


class _Budget(threading.local):
    deadline: float = float("inf")
    timed_out: bool = False


_budget = _Budget()


class RegexBudget:
    """Per-thread deadline for every guarded regex within one ``with`` block.

    presidio catches ``TimeoutError`` from a pattern and skips the pattern (fail open); the guard
    records the timeout first, and ``__exit__`` raises ``RegexTimeout`` so the caller fails closed.
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __enter__(self) -> RegexBudget:
        _budget.deadline = time.monotonic() + self._seconds
        _budget.timed_out = False
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        timed_out = _budget.timed_out
        _budget.deadline = float("inf")
        _budget.timed_out = False
        if timed_out and exc_type is None:
            raise RegexTimeout("a PII regex exceeded its time budget")


class _GuardedRegex:
    """Stands in for ``Pattern.compiled_regex``: same ``finditer``, bounded by the thread's budget."""

    __slots__ = ("_compiled",)

    def __init__(self, compiled: regex.Pattern[str]) -> None:
        self._compiled = compiled

    def finditer(self, text: str, *args: Any, timeout: float | None = None, **kw: Any) -> Iterator[Any]:
        remaining = _budget.deadline - time.monotonic()
        if remaining <= 0:
            _budget.timed_out = True
            raise TimeoutError("regex budget spent")
        try:
            yield from self._compiled.finditer(text, *args, timeout=min(remaining, 3600.0), **kw)
        except TimeoutError:
            _budget.timed_out = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


def guard_patterns(recognizer: PatternRecognizer) -> None:
    """Precompile the recognizer's patterns with its flags and wrap them in the budget guard."""
    flags = recognizer.global_regex_flags
    for pattern in recognizer.patterns:
        pattern.compiled_regex = _GuardedRegex(regex.compile(pattern.regex, flags=flags))
        pattern.compiled_with_flags = flags
