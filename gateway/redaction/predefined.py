"""presidio's predefined recognizers the prefilter knows, each declaring its precondition.

presidio builds these from its own YAML configuration (per-language context words, registry regex
flags), so an instance built here would differ from the one it loads. ``adopt`` therefore keeps
presidio's instance and only moves it to the subclass below: same state, same behaviour, plus the
declared ``precondition``. The subclasses add no state (no ``__init__``, no slots), which is what makes
the class change safe.
"""

from __future__ import annotations

from typing import ClassVar

import regex
from presidio_analyzer import EntityRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    IbanRecognizer,
    IpRecognizer,
    UsSsnRecognizer,
)

from gateway.redaction.preconditions import AllOf, AnyOf, Contains, Matches, MinDigits, Precondition


class CreditCard(CreditCardRecognizer):
    precondition: ClassVar[Precondition] = MinDigits(13)  # 4 + 3 + 3 + 3 in presidio's pattern


class UsSsn(UsSsnRecognizer):
    precondition: ClassVar[Precondition] = MinDigits(9)  # every one of its patterns


class Iban(IbanRecognizer):
    # the pattern's head (two letters, two digits); the registry compiles it case-insensitively with the
    # ``regex`` module, whose Unicode case folding this mirrors (lower-case IBANs match)
    precondition: ClassVar[Precondition] = Matches(regex.compile(r"[A-Z]{2}[0-9]{2}", flags=regex.IGNORECASE))


class Ip(IpRecognizer):
    # IPv6 and mapped forms have a ':'; IPv4 a '.' and 4 digits
    precondition: ClassVar[Precondition] = AnyOf((Contains(":"), AllOf((Contains("."), MinDigits(4)))))


_ADOPTED: dict[type, type] = {c.__mro__[1]: c for c in (CreditCard, UsSsn, Iban, Ip)}


def adopt(recognizer: EntityRecognizer) -> EntityRecognizer:
    """presidio's instance, as the subclass that declares its precondition (others are returned as they are)."""
    declaring = _ADOPTED.get(type(recognizer))
    if declaring is not None:
        recognizer.__class__ = declaring
    return recognizer
