"""What the client receives: output PII actions, output patterns and pseudonym restore, on whole
bodies and incrementally on streams (per choice / output item, with a bounded hold-back window).

Order per text: PII (output map) -> output patterns -> restore placeholders. Raises PatternBlocked or
PIIBlocked when the answer must be withheld; RedactionFailed when the engine fails (fail closed).
"""

from __future__ import annotations

from collections.abc import Hashable

from gateway.endpoints import endpoint_for
from gateway.exchange import DONE, SSEEvent
from gateway.governance.compiled import CompiledPolicy
from gateway.governance.patterns import PatternBlocked, StreamPatternFilter
from gateway.redaction import PseudonymMap, StreamRedactor, StreamRestorer


async def process_texts(pol: CompiledPolicy, pm: PseudonymMap | None, texts: list[str],
                        counts: dict[str, int], hits: set[str], tenant: str | None = None) -> list[str]:
    """Whole texts (non-streamed answers). ``tenant``: the scope of the detection cache (None: no cache)."""
    if pol.output_actions and pol.redactor is not None and any(texts):
        results = await pol.redactor.redact_many(texts, pol.output_actions, scope=tenant)
        texts = [r.text for r in results]
        for r in results:
            for e, n in r.counts.items():
                counts[e] = counts.get(e, 0) + n
    if pol.output_patterns:
        for r in pol.output_patterns.scan(texts):
            if r.action == "block":
                raise PatternBlocked(r)
            hits.add(r.id)
        texts = [pol.output_patterns.redact(t)[0] for t in texts]
    if pm is not None and pol.restores:
        texts = [pm.restore(t) for t in texts]
    return texts


class TextPipe:
    """One text slot of a stream (a choice's content, one tool call's arguments, ...)."""

    __slots__ = ("_pat", "_pii", "_res", "sent")

    def __init__(self, pol: CompiledPolicy, pm: PseudonymMap | None) -> None:
        self._pii = (StreamRedactor(pol.redactor, pol.output_actions)
                     if pol.output_actions and pol.redactor is not None else None)
        hold = pol.policy.pii.stream_holdback_chars
        self._pat = StreamPatternFilter(pol.output_patterns, hold) if pol.output_patterns else None
        self._res = StreamRestorer(pm) if pm is not None and pol.restores else None
        self.sent: list[str] = []

    async def feed(self, delta: str) -> str:
        t = await self._pii.feed(delta) if self._pii is not None else delta
        if self._pat is not None:
            t = self._pat.feed(t)
        if self._res is not None and t:
            t = self._res.feed(t)
        self.sent.append(t)
        return t

    async def finish(self) -> str:
        t = await self._pii.finish() if self._pii is not None else ""
        if self._pat is not None:
            t = self._pat.feed(t) + self._pat.finish()
        if self._res is not None:
            t = self._res.feed(t) + self._res.finish()
        self.sent.append(t)
        return t

    def counts(self) -> dict[str, int]:
        return dict(self._pii.counts) if self._pii is not None else {}

    def hits(self) -> set[str]:
        return self._pat.hits if self._pat is not None else set()

    @property
    def text(self) -> str:
        return "".join(self.sent)


class StreamOutput:
    """Rewrites a stream's events: the endpoint adapter walks each event's texts (``Endpoint.rewrite_event``)
    and this object is its ``TextSlots``, one ``TextPipe`` per slot. ``process`` returns the events to send
    for one upstream event."""

    def __init__(self, endpoint: str, pol: CompiledPolicy, pm: PseudonymMap | None) -> None:
        self.api = endpoint_for(endpoint)
        self.pol = pol
        self.pm = pm
        self.pipes: dict[Hashable, TextPipe] = {}
        self._open: dict[Hashable, TextPipe] = {}  # not flushed yet

    def _pipe(self, key: Hashable) -> TextPipe:
        p = self.pipes.get(key)
        if p is None:
            p = self.pipes[key] = self._open[key] = TextPipe(self.pol, self.pm)
        return p

    # ---- TextSlots ------------------------------------------------------------------------------
    async def feed(self, key: Hashable, delta: str) -> str:
        return await self._pipe(key).feed(delta)

    async def flush(self, key: Hashable) -> str:
        p = self._open.pop(key, None)
        return await p.finish() if p is not None else ""

    async def full(self, key: Hashable, fallback: str) -> str:
        if key not in self.pipes:
            await self._pipe(key).feed(fallback)
        await self.flush(key)
        return self.pipes[key].text

    def pending(self) -> list[Hashable]:
        return list(self._open)

    # ---- the stream ---------------------------------------------------------------------------------
    async def process(self, ev: SSEEvent) -> list[SSEEvent]:
        obj = ev.obj
        if obj is None:
            return [*await self.flush_all(ev), ev] if ev.data == DONE else [ev]
        return await self.api.rewrite_event(ev, obj, self)

    async def flush_all(self, like: SSEEvent | None = None) -> list[SSEEvent]:
        """Every slot's held-back text, as events to send before ``like`` (or at the end of the stream)."""
        obj = like.obj if like is not None and like.obj is not None else {}
        return await self.api.flush_events(self, obj)

    def text(self) -> str:
        return "".join(p.text for p in self.pipes.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pipes.values():
            for e, n in p.counts().items():
                out[e] = out.get(e, 0) + n
        return out

    def hits(self) -> set[str]:
        return set().union(*(p.hits() for p in self.pipes.values())) if self.pipes else set()
