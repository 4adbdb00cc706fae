"""The PII prefilter: drop the entities that cannot match a text before any NLP or analyzer work (most
prompts have no '@', many no digit, few 13).

Each built-in recognizer declares its ``precondition`` (gateway/redaction/preconditions.py); the prefilter
reads it from the recognizer class. An entity is prefiltered only when the recognizer that reports it is
exactly that built-in one (``prefilterable``, per engine): a custom recognizer for the same entity, or a
new presidio recognizer, turns the prefilter off for it, so it is never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gateway.redaction.phone import WindowedPhoneRecognizer
from gateway.redaction.preconditions import Declares
from gateway.redaction.predefined import CreditCard, Iban, Ip, UsSsn
from gateway.redaction.recognizers import OfflineEmailRecognizer

# entity -> the built-in recognizer that reports it and declares its precondition
PREFILTER_RECOGNIZERS: dict[str, type[Declares]] = {
    "EMAIL_ADDRESS": OfflineEmailRecognizer, "PHONE_NUMBER": WindowedPhoneRecognizer,
    "CREDIT_CARD": CreditCard, "US_SSN": UsSsn, "IBAN_CODE": Iban, "IP_ADDRESS": Ip,
}

_DIGIT = re.compile(r"\d")


def prefilterable(recognizers: Iterable[object]) -> frozenset[str]:
    """The entities of ``PREFILTER_RECOGNIZERS`` that no other recognizer in an engine reports."""
    ok = set(PREFILTER_RECOGNIZERS)
    for r in recognizers:
        for entity in getattr(r, "supported_entities", ()):
            if entity in ok and type(r) is not PREFILTER_RECOGNIZERS[entity]:
                ok.discard(entity)
    return frozenset(ok)


def count_digits(text: str) -> int:
    if text.isascii():
        return sum(map(text.count, "0123456789"))
    return len(_DIGIT.findall(text))  # any Unicode decimal digit, as the recognizers' \d


def possible_entities(text: str, entities: Sequence[str], prefiltered: frozenset[str]) -> list[str]:
    """``entities`` less those in ``prefiltered`` (the engine's ``prefilterable`` set) whose recognizer's
    precondition does not hold on ``text``: what the recognizers will see (``detect_sync`` passes the
    normalised text). Digits are counted once, and only if a precondition reads them."""
    out: list[str] = []
    digits = -1
    for e in entities:
        if e in prefiltered:
            pre = PREFILTER_RECOGNIZERS[e].precondition
            if pre.needs_digits and digits < 0:
                digits = count_digits(text)
            if not pre.holds(text, digits):
                continue
        out.append(e)
    return out
