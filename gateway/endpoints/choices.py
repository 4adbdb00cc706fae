"""What chat completions, completions and embeddings share: answers as ``choices`` (``message`` in bodies,
``delta`` in stream chunks, ``text`` for completions), streams that end with ``[DONE]``, errors as
``{"error": {...}}`` chunks, and usage only when ``stream_options.include_usage`` asks for it."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.endpoints import texts
from gateway.endpoints.base import TextSlots
from gateway.endpoints.common import read_head, read_usage
from gateway.endpoints.texts import TextRef
from gateway.exchange import Exchange, SSEEvent

_HEAD = ("id", "object", "created", "model", "system_fingerprint")  # copied into an event the gateway adds


def read_choices(ex: Exchange, choices: Any, part: str) -> None:
    """Text, tool-call arguments and finish reasons of choices (``part`` is ``message`` or ``delta``)."""
    for choice in choices or ():
        if not isinstance(choice, dict):
            continue
        msg = choice.get(part)
        if isinstance(msg, dict):
            content = msg.get("content")
            if isinstance(content, str):
                ex.response_parts.append(content)
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    ex.response_parts.append(fn["arguments"])
        elif isinstance(choice.get("text"), str):
            ex.response_parts.append(choice["text"])
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            ex.finish_reasons.append(reason)


class ChoicesEndpoint:
    """The shared half of the Endpoint protocol; subclasses add name, path, validation and request texts."""

    injects_usage = True

    def response_texts(self, body: dict[str, Any]) -> list[TextRef]:
        refs: list[TextRef] = []
        for choice in body.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            msg = choice.get("message")
            if isinstance(msg, dict):
                refs += texts.content(msg, "content")
                refs += texts.calls(msg)
            elif isinstance(choice.get("text"), str):
                refs.append(TextRef(choice, "text"))
        return refs

    def prepare(self, ex: Exchange, body: dict[str, Any]) -> dict[str, Any]:
        if not (ex.stream and self.injects_usage):
            return body
        so = body.get("stream_options") or {}
        ex.client_wants_usage = bool(so.get("include_usage"))
        if ex.client_wants_usage:
            return body
        return {**body, "stream_options": {**so, "include_usage": True}}

    def read_body(self, ex: Exchange, body: dict[str, Any]) -> None:
        read_head(ex, body)
        read_choices(ex, body.get("choices"), "message")

    def read_event(self, ex: Exchange, obj: dict[str, Any], event: str | None) -> None:
        if ex.response_model is None and isinstance(obj.get("model"), str):
            ex.response_model = obj["model"]
            ex.response_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        if obj.get("usage") is not None:
            read_usage(ex, obj["usage"])
        read_choices(ex, obj.get("choices"), "delta")

    def is_usage_chunk(self, obj: dict[str, Any]) -> bool:
        return obj.get("usage") is not None and not obj.get("choices")

    def is_error_chunk(self, obj: dict[str, Any]) -> bool:
        return "error" in obj

    def is_terminal(self, ev: SSEEvent, obj: dict[str, Any]) -> bool:
        return False  # only [DONE] ends these streams

    def error_event(self, message: str, code: str, etype: str) -> SSEEvent:
        data = {"error": {"message": message, "type": etype, "code": code, "param": None}}
        return SSEEvent(data=orjson.dumps(data), obj=data)

    # ---- stream rewriting: slots (index, "c") for content/text, (index, "t", call index) for tool calls
    async def rewrite_event(self, ev: SSEEvent, obj: dict[str, Any], slots: TextSlots) -> list[SSEEvent]:
        choices = obj.get("choices")
        if not choices:  # usage-only or error chunk: everything before it is complete
            return [*await self.flush_events(slots, obj), ev]
        before: list[SSEEvent] = []
        for choice in choices:
            if isinstance(choice, dict):
                await self._rewrite_choice(obj, choice, slots, before)
        ev.data = orjson.dumps(obj)
        return [*before, ev]

    async def flush_events(self, slots: TextSlots, like: dict[str, Any]) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for idx in sorted({k[0] for k in slots.pending() if isinstance(k, tuple)}, key=str):
            extra = await self._flush_choice(like, idx, slots)
            if extra is not None:
                out.append(extra)
        return out

    async def _rewrite_choice(self, obj: dict[str, Any], choice: dict[str, Any], slots: TextSlots,
                              before: list[SSEEvent]) -> None:
        idx = choice.get("index", 0)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                delta["content"] = await slots.feed((idx, "c"), delta["content"])
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    fn["arguments"] = await slots.feed((idx, "t", tc.get("index", 0)), fn["arguments"])
        elif isinstance(choice.get("text"), str):
            choice["text"] = await slots.feed((idx, "c"), choice["text"])
        if choice.get("finish_reason") is not None:  # the held-back text goes before the finishing chunk
            extra = await self._flush_choice(obj, idx, slots)
            if extra is not None:
                before.append(extra)

    async def _flush_choice(self, obj: dict[str, Any], idx: Any, slots: TextSlots) -> SSEEvent | None:
        content = await slots.flush((idx, "c"))
        calls = []
        for key in [k for k in slots.pending() if isinstance(k, tuple) and k[0] == idx and k[1] == "t"]:
            args = await slots.flush(key)
            if args:
                calls.append({"index": key[2], "function": {"arguments": args}})
        if not content and not calls:
            return None
        data = {**{k: obj[k] for k in _HEAD if k in obj}, "choices": [self.flushed_choice(idx, content, calls)]}
        return SSEEvent(data=orjson.dumps(data), obj=data)

    def flushed_choice(self, idx: Any, content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
        """The choice of an added chunk that carries a choice's held-back text (chat shape: a ``delta``)."""
        delta: dict[str, Any] = {"content": content} if content else {}
        if calls:
            delta["tool_calls"] = calls
        return {"index": idx, "delta": delta, "finish_reason": None}
