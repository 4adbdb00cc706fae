"""What replaces a detected entity, one small function per action (presidio-anonymizer style).

- redact: ``<EMAIL_ADDRESS>``
- mask: ``****-****-****-1111`` (last 4 kept for card/phone/IBAN/SSN; ``*`` for every other char)
- hash: ``<EMAIL_ADDRESS:3f1c0a9b2d4e>`` = HMAC-SHA256(secret, type + value), first 12 hex digits;
  keyed so a small value space (phone numbers, SSNs) cannot be brute-forced from the hash
- pseudonymize: ``<PERSON_1>``, stable within one ``PseudonymMap`` (one request), reversible
- block: never reaches an operator (``PIIBlocked`` is raised before any replacement)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import regex

from gateway.redaction.config import Action

KEEP_LAST: dict[str, int] = {"CREDIT_CARD": 4, "PHONE_NUMBER": 4, "IBAN_CODE": 4, "US_SSN": 4}
MASK_CHAR = "*"
HASH_HEX_DIGITS = 12
PLACEHOLDER_RE = regex.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")
PLACEHOLDER_MAX_CHARS = 64  # longest placeholder a restorer must wait for


def redact(entity: str, value: str) -> str:
    return f"<{entity}>"


def mask(entity: str, value: str) -> str:
    keep = KEEP_LAST.get(entity, 0)
    if keep == 0:
        return "".join(c if c.isspace() else MASK_CHAR for c in value)
    alnum_seen = 0
    out: list[str] = []
    for ch in reversed(value):
        if ch.isalnum():
            alnum_seen += 1
            out.append(ch if alnum_seen <= keep else MASK_CHAR)
        else:
            out.append(ch)
    return "".join(reversed(out))


class Hasher:
    """Keyed hash of an entity value. The key never leaves the process."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("hash secret must be at least 16 bytes")
        self._key = key

    def __call__(self, entity: str, value: str) -> str:
        digest = hmac.new(self._key, f"{entity}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"<{entity}:{digest[:HASH_HEX_DIGITS]}>"

    def __repr__(self) -> str:
        return "Hasher(<secret>)"


class PseudonymMap:
    """Per-request placeholder <-> value map. Lives only in memory; its repr never shows values."""

    __slots__ = ("_by_placeholder", "_by_value", "_next")

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._next: dict[str, int] = {}

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        found = self._by_value.get(key)
        if found is None:
            n = self._next.get(entity, 0) + 1
            self._next[entity] = n
            found = self._by_value[key] = f"<{entity}_{n}>"
            self._by_placeholder[found] = value
        return found

    def restore(self, text: str) -> str:
        """Put the original values back wherever a known placeholder appears; others stay as they are."""
        if not self._by_placeholder or "<" not in text:
            return text
        return PLACEHOLDER_RE.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __repr__(self) -> str:
        return f"PseudonymMap({len(self)} entries)"

    def __reduce__(self) -> object:
        raise TypeError("PseudonymMap must not be serialized")


Operator = Callable[[str, str], str]


def operator_for(action: Action, hasher: Hasher, pseudonyms: PseudonymMap | None) -> Operator:
    if action == "redact":
        return redact
    if action == "mask":
        return mask
    if action == "hash":
        return hasher
    if action == "pseudonymize":
        if pseudonyms is None:
            raise ValueError("pseudonymize needs a PseudonymMap")
        return pseudonyms.placeholder
    raise ValueError(f"no operator for action {action!r}")
