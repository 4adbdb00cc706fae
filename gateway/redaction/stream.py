"""Incremental redaction of a text stream, and restoring pseudonyms in one.

StreamRedactor keeps the last ``holdback`` chars unreleased. Each release point ``cut`` satisfies:
- at least ``holdback`` chars follow it in the buffer, so an entity up to ``holdback`` chars long
  that crosses it is wholly in the buffer and is detected;
- it is not inside a detected span (it moves before the span);
- it follows whitespace, so the next buffer starts at a word boundary and regexes anchored on ``\\b``
  see the same text as a one-shot pass (cutting inside ``john.smith@x.io`` would release ``john.``).
Without any whitespace the buffer grows to ``4 * holdback`` chars, then is cut anyway (never inside a
span). So entities longer than ``holdback`` chars can be missed when split; pick the window to fit.
Detection sees the buffer normalised (``normalize.py``) and spans come back in buffer offsets. The
holdback counts characters normalisation keeps: format characters and combining marks inside a value
(a zero-width space after every digit) do not push it out of the window, up to ``4 * holdback`` chars
held in all.
Time to first token: the first release comes once ``holdback + step`` chars have arrived.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import regex

from gateway.redaction.config import Action
from gateway.redaction.normalize import visible_tail
from gateway.redaction.operators import PLACEHOLDER_MAX_CHARS, PseudonymMap
from gateway.redaction.redactor import Redactor
from gateway.redaction.spans import Span


def safe_cut(text: str, spans: Sequence[Span], limit: int, *, force: bool = False) -> int:
    """The largest release point <= ``limit`` after whitespace and outside every span (0 if none).
    ``force``: without a whitespace boundary, fall back to the largest point outside every span."""
    cut = max(0, min(limit, len(text)))
    while cut > 0:
        inside = next((s for s in spans if s.start < cut < s.end), None)
        if inside is not None:
            cut = inside.start
            continue
        if text[cut - 1].isspace():
            return cut
        ws = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut), text.rfind("\t", 0, cut))
        if ws < 0:
            break
        cut = ws + 1
    if not force:
        return 0
    cut = max(0, min(limit, len(text)))
    for s in reversed(spans):
        if s.start < cut < s.end:
            cut = s.start
    return cut


class StreamRedactor:
    """One per stream (per choice). ``feed`` returns what may be released now; ``finish`` the rest.
    ``counts`` sums the entity types replaced so far."""

    def __init__(
        self,
        redactor: Redactor,
        actions: Mapping[str, Action] | None = None,
        *,
        pseudonyms: PseudonymMap | None = None,
        holdback: int | None = None,
        step: int | None = None,
    ) -> None:
        self._redactor = redactor
        self._actions = redactor.actions(actions)
        if pseudonyms is None and "pseudonymize" in self._actions.values():
            pseudonyms = PseudonymMap()
        self.pseudonyms = pseudonyms
        self._hold = holdback if holdback is not None else redactor.holdback_chars
        self._step = step if step is not None else max(8, self._hold // 8)
        self._pending = ""
        self.counts: Counter[str] = Counter()

    async def feed(self, delta: str) -> str:
        self._pending += delta
        if len(self._pending) < self._hold + self._step:
            return ""
        return await self._release(final=False)

    async def finish(self) -> str:
        if not self._pending:
            return ""
        return await self._release(final=True)

    async def _release(self, *, final: bool) -> str:
        text = self._pending
        spans = await self._redactor.detect(text, self._actions)
        if final:
            cut = len(text)
        else:
            tail = min(visible_tail(text, self._hold), 4 * self._hold)  # == holdback for ASCII
            cut = safe_cut(text, spans, len(text) - tail, force=len(text) > 4 * self._hold)
            if cut == 0:
                return ""
        result = self._redactor.apply(text[:cut], [s for s in spans if s.end <= cut], self._actions,
                                      self.pseudonyms)
        self.counts.update(result.counts)
        self._pending = text[cut:]
        return result.text


_PARTIAL_PLACEHOLDER = regex.compile(r"<[A-Z0-9_]*\Z")


class StreamRestorer:
    """Replaces pseudonym placeholders in a stream, also when one is split across chunks.
    Holds back only a trailing ``<...`` that could still become a placeholder (at most 64 chars)."""

    def __init__(self, pseudonyms: PseudonymMap) -> None:
        self._map = pseudonyms
        self._pending = ""

    def feed(self, delta: str) -> str:
        text = self._pending + delta
        i = text.rfind("<")
        if i >= 0 and len(text) - i < PLACEHOLDER_MAX_CHARS and _PARTIAL_PLACEHOLDER.match(text, i):
            self._pending = text[i:]
            text = text[:i]
        else:
            self._pending = ""
        return self._map.restore(text)

    def finish(self) -> str:
        text, self._pending = self._pending, ""
        return self._map.restore(text)
