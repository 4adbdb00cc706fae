"""A well-known prompt-injection pattern list (declared as data: rule id -> regex, case-insensitive).

Heuristics, not a classifier: they catch the common copy-paste attacks (instruction override, DAN-style
role play, system-prompt exfiltration, delimiter spoofing). Tenants add their own with
``prompt_injection.extra_patterns``.
"""

from __future__ import annotations

from collections.abc import Iterable

import regex

INJECTION_PATTERNS: dict[str, str] = {
    "prompt_injection.ignore_instructions":
        r"\b(?:ignore|disregard|forget|skip|override)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+)*"
        r"(?:previous|prior|above|earlier|preceding|initial|original|system)\s+"
        r"(?:instructions?|prompts?|rules|directions|guidelines|context|messages?)",
    "prompt_injection.new_instructions":
        r"\b(?:new|updated|real)\s+instructions\s*:|\bfrom\s+now\s+on,?\s+you\s+(?:will|must|are)\b",
    "prompt_injection.dan":
        r"\byou\s+are\s+(?:now\s+)?(?:DAN|STAN|DUDE|AIM)\b|\bdo\s+anything\s+now\b|\bjailbr(?:ea|o)k(?:en)?\b",
    "prompt_injection.developer_mode":
        r"\b(?:developer|god|sudo|admin|unrestricted)\s+mode\s+(?:enabled|on|activated)\b"
        r"|\benable\s+(?:developer|god|sudo)\s+mode\b",
    "prompt_injection.system_prompt_exfiltration":
        r"\b(?:reveal|print|show|repeat|output|display|leak|tell\s+me|what\s+(?:is|are|was))\s+"
        r"(?:me\s+)?(?:your|the)\s+(?:initial\s+|original\s+|hidden\s+|secret\s+)?"
        r"(?:system\s+prompt|system\s+message|instructions|prompt)\b"
        r"|\brepeat\s+(?:the\s+)?(?:words|text)\s+above\b",
    "prompt_injection.role_override":
        r"\bpretend\s+(?:that\s+)?you\s+(?:are|have)\s+no\s+(?:rules|restrictions|limits|filters)\b"
        r"|\bact\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?an?\s+(?:unfiltered|uncensored|unrestricted)\b",
    "prompt_injection.delimiter_spoof":
        r"<\|im_start\|>\s*system|\[/?INST\]|<<SYS>>|^\s*###\s*(?:system|instruction)\s*:",
}


class InjectionDetector:
    """Compiled once per policy: one alternation finds whether anything matches, then per-rule ids."""

    __slots__ = ("_any", "_rules")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        rules = dict(INJECTION_PATTERNS)
        for i, pattern in enumerate(extra, 1):
            rules[f"prompt_injection.custom.{i}"] = pattern
        flags = regex.IGNORECASE | regex.MULTILINE
        self._rules = [(rid, regex.compile(p, flags)) for rid, p in rules.items()]
        self._any = regex.compile("|".join(f"(?:{p})" for p in rules.values()), flags)

    def scan(self, texts: Iterable[str]) -> list[str]:
        """Rule ids that match any of ``texts`` (empty when none: the common case costs one search per text)."""
        hits: list[str] = []
        for text in texts:
            if text and self._any.search(text, timeout=1.0):
                hits.extend(rid for rid, rx in self._rules if rid not in hits and rx.search(text, timeout=1.0))
        return hits
