"""What the client receives: output PII actions, output patterns and pseudonym restore, on whole
bodies and incrementally on streams (per choice / output item, with a bounded hold-back window).

Order per text: PII (output map) -> output patterns -> restore placeholders. Raises PatternBlocked or
PIIBlocked when the answer must be withheld; RedactionFailed when the engine fails (fail closed).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

from gateway.chain.base import SSEEvent
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


_HEAD = ("id", "object", "created", "model", "system_fingerprint")


class StreamOutput:
    """Rewrites a stream's events. ``process`` returns the events to send for one upstream event."""

    def __init__(self, endpoint: str, pol: CompiledPolicy, pm: PseudonymMap | None) -> None:
        self.endpoint = endpoint
        self.pol = pol
        self.pm = pm
        self.pipes: dict[Hashable, TextPipe] = {}
        self._open: dict[Hashable, TextPipe] = {}  # not flushed yet

    def _pipe(self, key: Hashable) -> TextPipe:
        p = self.pipes.get(key)
        if p is None:
            p = self.pipes[key] = self._open[key] = TextPipe(self.pol, self.pm)
        return p

    async def _feed(self, key: Hashable, delta: str) -> str:
        return await self._pipe(key).feed(delta)

    async def _flush(self, key: Hashable) -> str:
        p = self._open.pop(key, None)
        return await p.finish() if p is not None else ""

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

    async def process(self, ev: SSEEvent) -> list[SSEEvent]:
        obj = ev.obj
        if obj is None:
            return [*await self.flush_all(ev), ev] if ev.data == b"[DONE]" else [ev]
        if self.endpoint == "responses":
            return await self._responses(ev, obj)
        choices = obj.get("choices")
        if not choices:  # usage-only or error chunk: everything before it is complete
            return [*await self.flush_all(ev), ev]
        before: list[SSEEvent] = []
        for choice in choices:
            if isinstance(choice, dict):
                await self._choice(obj, choice, before)
        ev.data = orjson.dumps(obj)
        return [*before, ev]

    async def _choice(self, obj: dict[str, Any], choice: dict[str, Any], before: list[SSEEvent]) -> None:
        idx = choice.get("index", 0)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                delta["content"] = await self._feed((idx, "c"), delta["content"])
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    fn["arguments"] = await self._feed((idx, "t", tc.get("index", 0)), fn["arguments"])
        elif isinstance(choice.get("text"), str):
            choice["text"] = await self._feed((idx, "c"), choice["text"])
        if choice.get("finish_reason") is not None:
            extra = await self._flush_choice(obj, idx)
            if extra is not None:
                before.append(extra)

    async def _flush_choice(self, obj: dict[str, Any], idx: Any) -> SSEEvent | None:
        content = await self._flush((idx, "c"))
        calls = []
        for key in [k for k in self._open if isinstance(k, tuple) and k[0] == idx and k[1] == "t"]:
            args = await self._flush(key)
            if args:
                calls.append({"index": key[2], "function": {"arguments": args}})
        if not content and not calls:
            return None
        head = {k: obj[k] for k in _HEAD if k in obj}
        if self.endpoint == "completions":
            choice: dict[str, Any] = {"index": idx, "text": content, "finish_reason": None}
        else:
            delta: dict[str, Any] = {"content": content} if content else {}
            if calls:
                delta["tool_calls"] = calls
            choice = {"index": idx, "delta": delta, "finish_reason": None}
        data = {**head, "choices": [choice]}
        return SSEEvent(data=orjson.dumps(data), obj=data)

    async def flush_all(self, like: SSEEvent | None = None) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        obj = like.obj if like is not None and like.obj is not None else {}
        if self.endpoint == "responses":
            for key in list(self._open):
                text = await self._flush(key)
                if text:
                    out.append(_delta_event(key, text, None))
            return out
        for idx in sorted({k[0] for k in self._open if isinstance(k, tuple)}, key=str):
            extra = await self._flush_choice(obj, idx)
            if extra is not None:
                out.append(extra)
        return out

    # ---- Responses API ----------------------------------------------------------------------
    async def _full(self, key: Hashable, fallback: str) -> str:
        """The client-visible full text of a slot (flushing it); a slot never streamed goes through now."""
        if key not in self.pipes:
            p = self._pipe(key)
            await p.feed(fallback)
        await self._flush(key)
        return self.pipes[key].text

    async def _responses(self, ev: SSEEvent, obj: dict[str, Any]) -> list[SSEEvent]:
        kind = obj.get("type", ev.event)
        oi, ci = obj.get("output_index", 0), obj.get("content_index", 0)
        before: list[SSEEvent] = []
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            obj["delta"] = await self._feed((oi, ci, "t"), obj["delta"])
        elif kind == "response.function_call_arguments.delta" and isinstance(obj.get("delta"), str):
            obj["delta"] = await self._feed((oi, "f"), obj["delta"])
        elif kind == "response.output_text.done" and isinstance(obj.get("text"), str):
            key = (oi, ci, "t")
            tail = await self._flush(key) if key in self._open else ""
            if tail:
                before.append(_delta_event(key, tail, obj))
            obj["text"] = await self._full(key, obj["text"])
        elif kind == "response.function_call_arguments.done" and isinstance(obj.get("arguments"), str):
            key = (oi, "f")
            tail = await self._flush(key) if key in self._open else ""
            if tail:
                before.append(_delta_event(key, tail, obj))
            obj["arguments"] = await self._full(key, obj["arguments"])
        elif kind == "response.content_part.done" and isinstance(obj.get("part"), dict):
            part = obj["part"]
            if isinstance(part.get("text"), str):
                part["text"] = await self._full((oi, ci, "t"), part["text"])
        elif kind == "response.output_item.done" and isinstance(obj.get("item"), dict):
            await self._item(oi, obj["item"])
        elif isinstance(obj.get("response"), dict) and isinstance(obj["response"].get("output"), list):
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                before += await self.flush_all()
                for i, item in enumerate(obj["response"]["output"]):
                    if isinstance(item, dict):
                        await self._item(i, item)
        elif kind == "error":
            before += await self.flush_all()
        ev.data = orjson.dumps(obj)
        return [*before, ev]

    async def _item(self, oi: Any, item: dict[str, Any]) -> None:
        if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
            item["arguments"] = await self._full((oi, "f"), item["arguments"])
        for ci, c in enumerate(item.get("content") or ()):
            if isinstance(c, dict) and isinstance(c.get("text"), str):
                c["text"] = await self._full((oi, ci, "t"), c["text"])


def _delta_event(key: Hashable, text: str, like: dict[str, Any] | None) -> SSEEvent:
    k = key if isinstance(key, tuple) else (0,)
    fn = len(k) == 2 and k[1] == "f"
    data: dict[str, Any] = {"type": "response.function_call_arguments.delta" if fn else "response.output_text.delta"}
    if like is not None and "item_id" in like:
        data["item_id"] = like["item_id"]
    data["output_index"] = k[0]
    if not fn:
        data["content_index"] = k[1]
    data["delta"] = text
    if like is not None and "sequence_number" in like:
        data["sequence_number"] = like["sequence_number"]
    return SSEEvent(data=orjson.dumps(data), obj=data, event=data["type"])
