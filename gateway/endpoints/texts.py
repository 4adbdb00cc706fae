"""Writable references to the texts inside OpenAI-shaped bodies, so redaction can replace them in place.

These are the walkers the endpoint adapters compose: message content strings and parts, tool-call
arguments, string-or-list fields, Responses items, and on every endpoint the end-user fields (``user``,
``safety_identifier``) and ``metadata`` values, which are forwarded upstream and so redacted like text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_PART_KEYS = ("text", "input_text", "output_text")
_IDENTITY_KEYS = ("user", "safety_identifier")
_IDENTITY_FIELDS = (*_IDENTITY_KEYS, "metadata")


@dataclass(slots=True)
class TextRef:
    container: Any  # dict or list
    key: Any  # str or int

    @property
    def text(self) -> str:
        return self.container[self.key]  # type: ignore[no-any-return]

    def set(self, value: str) -> None:
        self.container[self.key] = value


def content(holder: dict[str, Any], key: str) -> Iterator[TextRef]:
    """A content string, or the text of each part of a content array."""
    c = holder.get(key)
    if isinstance(c, str):
        yield TextRef(holder, key)
    elif isinstance(c, list):
        for i, part in enumerate(c):
            if isinstance(part, str):
                yield TextRef(c, i)
            elif isinstance(part, dict):
                for k in _PART_KEYS:
                    if isinstance(part.get(k), str):
                        yield TextRef(part, k)
                        break


def calls(msg: dict[str, Any]) -> Iterator[TextRef]:
    """The arguments of a chat message's tool calls (and of the legacy ``function_call``)."""
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            yield TextRef(fn, "arguments")
    fc = msg.get("function_call")
    if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
        yield TextRef(fc, "arguments")


def strings(holder: dict[str, Any], key: str) -> Iterator[TextRef]:
    """A field that is a string or an array of strings (prompts, embeddings inputs, instructions)."""
    v = holder.get(key)
    if isinstance(v, str):
        yield TextRef(holder, key)
    elif isinstance(v, list):
        yield from (TextRef(v, i) for i, s in enumerate(v) if isinstance(s, str))


def response_items(items: list[Any]) -> Iterator[TextRef]:
    """Responses API items (input or output): message content, function-call arguments and outputs."""
    for item in items:
        if not isinstance(item, dict):
            continue
        if "content" in item:
            yield from content(item, "content")
        kind = item.get("type")
        if kind == "function_call" and isinstance(item.get("arguments"), str):
            yield TextRef(item, "arguments")
        elif kind == "function_call_output" and isinstance(item.get("output"), str):
            yield TextRef(item, "output")


def identity(body: dict[str, Any]) -> list[TextRef]:
    """The OpenAI end-user fields and ``metadata`` values: forwarded upstream, so redacted like text.
    Most bodies carry none of them; the membership test keeps that case to three dict lookups."""
    if not any(k in body for k in _IDENTITY_FIELDS):
        return []
    refs = [TextRef(body, k) for k in _IDENTITY_KEYS if isinstance(body.get(k), str)]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        refs += [TextRef(meta, k) for k, v in meta.items() if isinstance(v, str)]
    return refs
