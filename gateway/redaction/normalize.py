"""Unicode normalisation for detection, with an exact map back to the original text.

PII recognizers are written for ASCII: ``4111 1111 1111 1111`` matches, the same number with full-width
or Arabic-Indic digits, no-break spaces, or a zero-width space between the groups does not, and neither
does ``john@example.com`` with a full-width at (U+FF20). So detection runs on a normalised copy of the
text and every span found is mapped back to the original characters, which are the ones replaced
(``Redactor.apply``). Nothing here changes what is sent upstream except through those spans.

``normalize(text)`` folds, segment by segment (a segment is one character with the combining marks that
follow it):

- NFKC (full-width forms, ligatures, circled and super/subscript digits, compatibility spaces);
- format characters (category Cf: ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen, bidi marks and
  isolates, tag characters) are removed;
- decimal digits of any script (category Nd) become ASCII digits;
- space separators (Zs) become ``' '``; dashes (Pd) and the minus sign U+2212 become ``'-'``;
- combining marks left on an ASCII base after composition (``4̶``, variation selectors) are removed.

Guarantee: every segment of ``text`` becomes one (possibly empty) piece of the normalised text, in
order, so a character at normalised offset ``j`` came from exactly one original segment.
``OffsetMap.span(start, end)`` returns the smallest original range holding every segment that produced
normalised ``[start, end)``: characters removed inside the value (a ZWSP between two digits) lie inside
it, an expansion (``ﬁ`` -> ``fi``, ``①`` -> ``1``) maps back whole, and characters outside the value are
never included.

Cost: a pure-ASCII text is returned as is (the same object, no map): ``str.isascii`` is the whole cost.
A text whose characters each fold to one (accents, curly quotes, NBSP, full-width forms, other scripts;
marks of other scripts in NFKC text) takes one or two ``str.translate`` passes (~35-60 ns per character)
and needs no map. Anything else (format characters, expansions, marks on ASCII) is folded segment by
segment, ~1 us per non-ASCII character, linear: a segment's NFKC is bounded to 30 marks (UAX #15's
stream-safe limit), since NFKC orders a long run of marks in quadratic time.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import regex

from gateway.redaction.spans import Span

_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_MARK_ON_ASCII = regex.compile(r"[\x00-\x7f]\p{M}")  # the regex module knows every mark unicodedata does
_MAX_SEGMENT = 31  # a character and 30 combining marks
_DIGITS = "0123456789"
_MINUS = "\u2212"


@dataclass(frozen=True, slots=True)
class OffsetMap:
    """Pieces of the normalised text, in order. Piece ``i`` is normalised ``[norm[i], norm[i + 1])`` and
    came from original ``[orig[i], orig_end[i])``; an ``exact`` piece maps character by character (same
    length), any other (an expansion, a composition, dropped marks) only as a whole."""

    norm: tuple[int, ...]  # piece starts, then the normalised length
    orig: tuple[int, ...]
    orig_end: tuple[int, ...]
    exact: tuple[bool, ...]

    def start(self, j: int) -> int:
        """Original offset where the character at normalised offset ``j`` begins."""
        i = bisect_right(self.norm, j) - 1
        return self.orig[i] + (j - self.norm[i]) if self.exact[i] else self.orig[i]

    def end(self, j: int) -> int:
        """Original offset where the character at normalised offset ``j - 1`` ends."""
        i = bisect_right(self.norm, j - 1) - 1
        return self.orig[i] + (j - self.norm[i]) if self.exact[i] else self.orig_end[i]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original range of normalised ``[start, end)`` (``start < end``)."""
        return self.start(start), self.end(end)


def normalize(text: str) -> tuple[str, OffsetMap | None]:
    """``(normalised text, map back)``. The map is None when offsets do not change: always for ASCII (the
    same object comes back), and when every character folds to exactly one on its own (full-width forms,
    other scripts' digits, Unicode spaces and dashes, letters and, in NFKC text, marks of other scripts)."""
    if text.isascii():
        return text, None
    out = text.translate(_ONE)  # one C pass; the tables fill once per code point
    if _SLOW not in out:
        return (text if out == text else out), None
    if _SLOW not in (out := text.translate(_ONE_OR_MARK)) and unicodedata.is_normalized("NFKC", text) \
            and _MARK_ON_ASCII.search(out) is None:  # marks that neither compose nor sit on ASCII
        return (text if out == text else out), None
    return _fold_segments_of(text)


def map_spans(spans: Iterable[Span], offsets: OffsetMap | None) -> list[Span]:
    """``spans`` found in the normalised text, in original offsets (may overlap where two spans share an
    expanded character: resolve overlaps afterwards)."""
    if offsets is None:
        return list(spans)
    return [Span(s.entity_type, *offsets.span(s.start, s.end), s.score) for s in spans]


def visible_tail(text: str, count: int) -> int:
    """How many trailing characters of ``text`` hold its last ``count`` characters that normalisation
    keeps (format and other non-ASCII control characters and combining marks do not count: padding a
    value with them must not push it out of a stream's holdback window). ``len(text)`` when it has fewer."""
    if text.isascii():
        return min(count, len(text))
    seen = 0
    for k in range(len(text) - 1, -1, -1):
        if unicodedata.category(text[k])[0] not in "CM" or text[k].isascii():
            seen += 1
            if seen == count:
                return len(text) - k
    return len(text)


class _Builder:
    __slots__ = ("exact", "norm", "orig", "orig_end", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.norm: list[int] = []
        self.orig: list[int] = []
        self.orig_end: list[int] = []
        self.exact: list[bool] = []
        self.size = 0

    def copy(self, text: str, lo: int, hi: int) -> None:
        if hi > lo:
            self.piece(text[lo:hi], lo, hi, exact=True)

    def piece(self, out: str, lo: int, hi: int, *, exact: bool) -> None:
        """``out`` replaces original ``[lo, hi)``; ``exact``: character for character."""
        if not out:
            return  # removed: a gap between pieces in original offsets
        if exact and self.exact and self.exact[-1] and self.orig_end[-1] == lo:
            self.orig_end[-1] = hi  # extends the previous exact piece
        else:
            self.norm.append(self.size)
            self.orig.append(lo)
            self.orig_end.append(hi)
            self.exact.append(exact)
        self.parts.append(out)
        self.size += len(out)

    def build(self, length: int) -> OffsetMap:
        return OffsetMap((*self.norm, length), tuple(self.orig), tuple(self.orig_end), tuple(self.exact))


def _fold_segments_of(text: str) -> tuple[str, OffsetMap | None]:
    """The general case, segment by segment, with a map."""
    b = _Builder()
    pos = 0
    for run in _NON_ASCII.finditer(text):
        lo, hi = run.span()
        if lo > pos and _is_mark(text[lo]):
            lo -= 1  # the ASCII base the marks sit on belongs to their segment
        b.copy(text, pos, lo)
        if text[lo:hi].translate(_MARKS):
            _fold_segments(text, lo, hi, b)
        else:
            _fold_run(text, lo, hi, b)
        pos = hi
    b.copy(text, pos, len(text))
    out = "".join(b.parts)
    return out, (None if out == text else b.build(len(out)))


def _fold_segments(text: str, lo: int, hi: int, b: _Builder) -> None:
    i = lo
    while i < hi:
        j = i + 1
        while j < hi and _is_mark(text[j]):
            j += 1
        segment = text[i:j]
        if j == i + 1:
            out = _FOLD[ord(segment)]
        elif j - i <= _MAX_SEGMENT:
            out = _fold_segment(segment)
        else:  # NFKC orders marks in quadratic time: fold a bounded head (UAX #15's stream-safe limit)
            out = _fold_segment(segment[:_MAX_SEGMENT])
            if not out[:1].isascii():  # marks beyond it stay as sent; on an ASCII base they go with the rest
                out += segment[_MAX_SEGMENT:]
        # a multi-character segment is exact only when unchanged: marks may be composed, reordered, dropped
        b.piece(out, i, j, exact=len(out) == 1 if j == i + 1 else out == segment)
        i = j


def _is_mark(ch: str) -> bool:
    return not ch.isascii() and unicodedata.category(ch)[0] == "M"


def _fold_run(text: str, lo: int, hi: int, b: _Builder) -> None:
    """Characters ``[lo, hi)`` (no marks), each a segment of its own."""
    run = text[lo:hi]
    if not run.translate(_ODD):  # every character folds to exactly one: one exact piece
        b.piece(run.translate(_FOLD), lo, hi, exact=True)
        return
    for k, ch in enumerate(run, lo):
        out = _FOLD[ord(ch)]
        b.piece(out, k, k + 1, exact=len(out) == 1)


class _Table(dict[int, str | None]):
    """A ``str.translate`` table filled on first use of each code point (bounded: cleared when full)."""

    def __init__(self, entry: Callable[[str], str | None]) -> None:
        super().__init__()
        self._entry = entry

    def __missing__(self, code: int) -> str | None:
        if len(self) >= 65536:
            self.clear()
        value = self[code] = self._entry(chr(code))
        return value


@lru_cache(maxsize=4096)
def _fold_segment(segment: str) -> str:
    out = "".join(map(_fold_one, unicodedata.normalize("NFKC", segment)))
    if out[:1].isascii() and not out.isascii():  # marks left on an ASCII base
        out = "".join(c for c in out if c.isascii() or unicodedata.category(c)[0] != "M")
    return out


_FOLD = _Table(_fold_segment)
# filters: a character that does not fold to exactly one (removed, expanded), or also a mark, stays
_ODD = _Table(lambda ch: None if len(_FOLD[ord(ch)]) == 1 else ch)
_MARKS = _Table(lambda ch: ch if _is_mark(ch) else None)
# the fast paths: what a character folds to when that is one character (and not a mark), else _SLOW
_SLOW = "\uffff"  # a noncharacter; itself sent to the general case, so its presence means just that
_ONE = _Table(lambda ch: _SLOW if _ODD[ord(ch)] or _MARKS[ord(ch)] or ch == _SLOW else _FOLD[ord(ch)])
_ONE_OR_MARK = _Table(lambda ch: ch if _MARKS[ord(ch)] else _ONE[ord(ch)])


def _fold_one(ch: str) -> str:
    if ch.isascii():
        return ch
    cat = unicodedata.category(ch)
    if cat == "Cf":
        return ""
    if cat == "Nd":
        return _DIGITS[unicodedata.decimal(ch)]
    if cat == "Zs":
        return " "
    if cat == "Pd" or ch == _MINUS:
        return "-"
    return ch
