"""What a text must contain before a recognizer's patterns can match it, declared by the recognizer
(``precondition`` on its class) and read by the prefilter (``prefilter.possible_entities``).

A precondition is data plus a cheap test: a character, a number of digits, a short regex head, or a
combination. It must never be false for a text the recognizer could match (that would skip real PII),
on the text the recognizers see (normalised; ``normalize.normalize``). The digit count is computed once
per text and only when some precondition asks for it (``needs_digits``), so testing costs at most one
pass over the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import regex


class Precondition(Protocol):
    needs_digits: bool  # holds() reads ``digits`` (else it is passed -1)

    def holds(self, text: str, digits: int) -> bool:
        """Whether the recognizer could match ``text``, which has ``digits`` decimal digits."""
        ...


class Declares(Protocol):
    """A recognizer class that declares its precondition."""

    precondition: ClassVar[Precondition]


@dataclass(frozen=True, slots=True)
class Contains:
    char: str
    needs_digits: bool = field(default=False, init=False)

    def holds(self, text: str, digits: int) -> bool:
        return self.char in text


@dataclass(frozen=True, slots=True)
class MinDigits:
    count: int
    needs_digits: bool = field(default=True, init=False)

    def holds(self, text: str, digits: int) -> bool:
        return digits >= self.count


@dataclass(frozen=True, slots=True)
class Matches:
    """A regex every match of the recognizer's patterns contains (searched, not anchored)."""

    rx: regex.Pattern[str]
    needs_digits: bool = field(default=False, init=False)

    def holds(self, text: str, digits: int) -> bool:
        return self.rx.search(text) is not None


@dataclass(frozen=True, slots=True)
class AnyOf:
    options: tuple[Precondition, ...]
    needs_digits: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs_digits", any(p.needs_digits for p in self.options))

    def holds(self, text: str, digits: int) -> bool:
        for p in self.options:  # a loop, not any(): no generator per text
            if p.holds(text, digits):
                return True
        return False


@dataclass(frozen=True, slots=True)
class AllOf:
    required: tuple[Precondition, ...]
    needs_digits: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs_digits", any(p.needs_digits for p in self.required))

    def holds(self, text: str, digits: int) -> bool:
        for p in self.required:
            if not p.holds(text, digits):
                return False
        return True
