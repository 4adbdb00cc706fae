"""Blocked patterns and keyword lists, compiled once per policy; a hold-back filter for streams."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import regex

from gateway.governance.policy import PatternRule

REGEX_TIMEOUT_S = 0.5  # a pathological pattern fails closed instead of hanging the loop


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    action: str  # block | redact | flag
    rx: regex.Pattern[str]
    reason: str | None

    @property
    def replacement(self) -> str:
        return f"[REDACTED:{self.id}]"


def _keywords_regex(words: Iterable[str]) -> str:
    alts = []
    for w in sorted(words, key=len, reverse=True):
        e = regex.escape(w)
        alts.append(("\\b" if w[0].isalnum() else "") + e + ("\\b" if w[-1].isalnum() else ""))
    return "|".join(alts)


def compile_rule(rule: PatternRule) -> Rule:
    flags = 0 if rule.case_sensitive else regex.IGNORECASE
    source = rule.regex if rule.regex is not None else _keywords_regex(rule.keywords)
    return Rule(rule.id, rule.action, regex.compile(source, flags), rule.reason)


class PatternSet:
    """The rules for one direction (input or output)."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def scan(self, texts: Iterable[str]) -> list[Rule]:
        """Rules that match any text, in declaration order."""
        texts = [t for t in texts if t]
        return [r for r in self.rules if any(r.rx.search(t, timeout=REGEX_TIMEOUT_S) for t in texts)]

    def redact(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every match of a ``redact`` rule replaced; the ids of the rules that matched."""
        hit: list[str] = []
        for r in self.rules:
            if r.action != "redact":
                continue
            new = r.rx.sub(r.replacement, text, timeout=REGEX_TIMEOUT_S)
            if new != text:
                hit.append(r.id)
                text = new
        return text, hit


class PatternBlocked(Exception):
    def __init__(self, rule: Rule) -> None:
        super().__init__(rule.id)
        self.rule = rule


class StreamPatternFilter:
    """Applies output rules to a text stream with a hold-back window of ``hold`` chars: a match is
    acted on before any of it is released, as long as it is at most ``hold`` chars long.
    ``feed``/``finish`` raise PatternBlocked for a ``block`` rule; ``hits`` collects matched rule ids."""

    def __init__(self, patterns: PatternSet, hold: int) -> None:
        self._rules = patterns.rules
        self._hold = hold
        self._buf = ""
        self.hits: set[str] = set()

    def feed(self, delta: str) -> str:
        self._buf += delta
        if len(self._buf) <= self._hold:
            return ""
        return self._release(len(self._buf) - self._hold)

    def finish(self) -> str:
        return self._release(len(self._buf)) if self._buf else ""

    def _release(self, cut: int) -> str:
        buf = self._buf
        spans: list[tuple[int, int, Rule]] = []
        for r in self._rules:
            for m in r.rx.finditer(buf, timeout=REGEX_TIMEOUT_S):
                if m.end() > m.start():
                    spans.append((m.start(), m.end(), r))
        for start, end, _ in spans:
            if start < cut < end:
                cut = start
        acting = sorted((s for s in spans if s[1] <= cut), key=lambda s: s[0])
        out, pos = [], 0
        for start, end, r in acting:
            if r.action == "block":
                raise PatternBlocked(r)
            self.hits.add(r.id)
            if r.action == "redact" and start >= pos:
                out += [buf[pos:start], r.replacement]
                pos = end
        out.append(buf[pos:cut])
        self._buf = buf[cut:]
        return "".join(out)
