"""POST /v1/responses: ``instructions`` plus ``input`` (a string or input items); answers carry ``output``
items; streams are typed events (``event:`` + ``type``) that end with a terminal event, usage inside
``response.completed``, errors as an ``error`` event."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

from gateway.endpoints import texts
from gateway.endpoints.base import TextSlots
from gateway.endpoints.common import invalid, message, read_head, read_usage, text_of
from gateway.endpoints.texts import TextRef
from gateway.exchange import Exchange, SSEEvent

TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})
_WITH_RESPONSE = ("response.completed", "response.incomplete", "response.failed", "response.created")


def output_text(output: Any) -> list[str]:
    parts: list[str] = []
    if isinstance(output, list):
        for item in output:
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                for c in item["content"]:
                    if isinstance(c, dict) and c.get("type") == "output_text" and isinstance(c.get("text"), str):
                        parts.append(c["text"])
    return parts


def _item_message(item: dict[str, Any]) -> dict[str, Any] | None:
    if "content" in item:
        return message(str(item.get("role", "user")), item.get("content"))
    if item.get("type") == "function_call_output":
        return {"role": "tool", "content": text_of(item.get("output")) or ""}
    if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
        return {"role": "assistant", "content": item["arguments"]}
    return None


class Responses:
    name = "responses"
    path = "/responses"
    items = "input"
    items_limit = "max_messages"
    injects_usage = False  # usage always comes in response.completed

    def validate(self, body: dict[str, Any]) -> None:
        inp = body.get("input")
        if inp is not None and not isinstance(inp, str | list):
            raise invalid("'input' must be a string or an array of input items.", "input")

    def request_texts(self, body: dict[str, Any]) -> list[TextRef]:
        refs = texts.identity(body)
        refs += texts.strings(body, "instructions")
        inp = body.get("input")
        if isinstance(inp, str):
            refs.append(TextRef(body, "input"))
        elif isinstance(inp, list):
            refs += texts.response_items(inp)
        return refs

    def response_texts(self, body: dict[str, Any]) -> list[TextRef]:
        out = body.get("output")
        return list(texts.response_items(out)) if isinstance(out, list) else []

    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        if isinstance(body.get("instructions"), str):
            out.append({"role": "system", "content": body["instructions"]})
        inp = body.get("input")
        if isinstance(inp, str):
            out.append({"role": "user", "content": inp})
        elif isinstance(inp, list):
            out += [m for m in (_item_message(i) for i in inp if isinstance(i, dict)) if m is not None]
        return out

    def prepare(self, ex: Exchange, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def read_body(self, ex: Exchange, body: dict[str, Any]) -> None:
        read_head(ex, body)
        ex.response_parts.extend(output_text(body.get("output")))
        status = body.get("status")
        if isinstance(status, str):
            ex.finish_reasons.append(status)

    def read_event(self, ex: Exchange, obj: dict[str, Any], event: str | None) -> None:
        kind = obj.get("type", event)
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            ex.response_parts.append(obj["delta"])
        elif kind in _WITH_RESPONSE:
            resp = obj.get("response")
            if isinstance(resp, dict):
                if isinstance(resp.get("model"), str):
                    ex.response_model = resp["model"]
                if isinstance(resp.get("id"), str):
                    ex.response_id = resp["id"]
                read_usage(ex, resp.get("usage"))
                if kind != "response.created" and isinstance(resp.get("status"), str):
                    ex.finish_reasons.append(resp["status"])

    def is_usage_chunk(self, obj: dict[str, Any]) -> bool:
        return False

    def is_error_chunk(self, obj: dict[str, Any]) -> bool:
        return False  # an error is the terminal `error` event, not a chunk inside a stream that goes on

    def is_terminal(self, ev: SSEEvent, obj: dict[str, Any]) -> bool:
        kind = ev.event or obj.get("type")
        return isinstance(kind, str) and kind in TERMINAL  # a hostile `type` (a list) must not raise

    def error_event(self, message: str, code: str, etype: str) -> SSEEvent:
        err = {"message": message, "type": etype, "code": code, "param": None}
        data = {"type": "error", "code": code, "message": message, "param": None, "error": err}
        return SSEEvent(data=orjson.dumps(data), obj=data, event="error")

    # ---- stream rewriting: slots (output index, content index, "t") for text, (output index, "f") for
    # function-call arguments; the ``.done`` events and the final response carry the full client-visible text
    async def rewrite_event(self, ev: SSEEvent, obj: dict[str, Any], slots: TextSlots) -> list[SSEEvent]:
        kind = obj.get("type", ev.event)
        oi, ci = obj.get("output_index", 0), obj.get("content_index", 0)
        before: list[SSEEvent] = []
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            obj["delta"] = await slots.feed((oi, ci, "t"), obj["delta"])
        elif kind == "response.function_call_arguments.delta" and isinstance(obj.get("delta"), str):
            obj["delta"] = await slots.feed((oi, "f"), obj["delta"])
        elif kind == "response.output_text.done" and isinstance(obj.get("text"), str):
            obj["text"] = await _done(slots, (oi, ci, "t"), obj, obj["text"], before)
        elif kind == "response.function_call_arguments.done" and isinstance(obj.get("arguments"), str):
            obj["arguments"] = await _done(slots, (oi, "f"), obj, obj["arguments"], before)
        elif kind == "response.content_part.done" and isinstance(obj.get("part"), dict):
            part = obj["part"]
            if isinstance(part.get("text"), str):
                part["text"] = await slots.full((oi, ci, "t"), part["text"])
        elif kind == "response.output_item.done" and isinstance(obj.get("item"), dict):
            await _item(slots, oi, obj["item"])
        elif isinstance(obj.get("response"), dict) and isinstance(obj["response"].get("output"), list):
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                before += await self.flush_events(slots, {})
                for i, item in enumerate(obj["response"]["output"]):
                    if isinstance(item, dict):
                        await _item(slots, i, item)
        elif kind == "error":
            before += await self.flush_events(slots, {})
        ev.data = orjson.dumps(obj)
        return [*before, ev]

    async def flush_events(self, slots: TextSlots, like: dict[str, Any]) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for key in slots.pending():
            text = await slots.flush(key)
            if text:
                out.append(_delta_event(key, text, None))
        return out


async def _done(slots: TextSlots, key: Hashable, obj: dict[str, Any], text: str, before: list[SSEEvent]) -> str:
    """A ``.done`` event: the slot's held-back tail goes out as a delta first; the event gets the full text."""
    tail = await slots.flush(key)
    if tail:
        before.append(_delta_event(key, tail, obj))
    return await slots.full(key, text)


async def _item(slots: TextSlots, oi: Any, item: dict[str, Any]) -> None:
    if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
        item["arguments"] = await slots.full((oi, "f"), item["arguments"])
    for ci, c in enumerate(item.get("content") or ()):
        if isinstance(c, dict) and isinstance(c.get("text"), str):
            c["text"] = await slots.full((oi, ci, "t"), c["text"])


def _delta_event(key: Hashable, text: str, like: dict[str, Any] | None) -> SSEEvent:
    """A delta event the gateway adds to carry held-back text, shaped like the upstream's."""
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


RESPONSES = Responses()
