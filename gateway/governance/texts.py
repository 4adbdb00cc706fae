"""Every text a request or a non-streamed answer carries, as writable references (so redaction can
replace them in place): chat message content strings and parts, tool-call arguments, completions
prompts, embeddings inputs, Responses instructions / input items / function-call arguments and outputs,
and on every endpoint the end-user fields (``user``, ``safety_identifier``) and ``metadata`` values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_PART_KEYS = ("text", "input_text", "output_text")
_IDENTITY_KEYS = ("user", "safety_identifier")


@dataclass(slots=True)
class TextRef:
    container: Any  # dict or list
    key: Any  # str or int

    @property
    def text(self) -> str:
        return self.container[self.key]  # type: ignore[no-any-return]

    def set(self, value: str) -> None:
        self.container[self.key] = value


def _content(holder: dict[str, Any], key: str) -> Iterator[TextRef]:
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


def _calls(msg: dict[str, Any]) -> Iterator[TextRef]:
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            yield TextRef(fn, "arguments")
    fc = msg.get("function_call")
    if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
        yield TextRef(fc, "arguments")


def _strings(holder: dict[str, Any], key: str) -> Iterator[TextRef]:
    v = holder.get(key)
    if isinstance(v, str):
        yield TextRef(holder, key)
    elif isinstance(v, list):
        yield from (TextRef(v, i) for i, s in enumerate(v) if isinstance(s, str))


def _response_items(items: list[Any]) -> Iterator[TextRef]:
    for item in items:
        if not isinstance(item, dict):
            continue
        if "content" in item:
            yield from _content(item, "content")
        kind = item.get("type")
        if kind == "function_call" and isinstance(item.get("arguments"), str):
            yield TextRef(item, "arguments")
        elif kind == "function_call_output" and isinstance(item.get("output"), str):
            yield TextRef(item, "output")


def _identity(body: dict[str, Any]) -> list[TextRef]:
    """The OpenAI end-user fields and ``metadata`` values: forwarded upstream, so redacted like text."""
    refs = [TextRef(body, k) for k in _IDENTITY_KEYS if isinstance(body.get(k), str)]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        refs += [TextRef(meta, k) for k, v in meta.items() if isinstance(v, str)]
    return refs


def request_texts(endpoint: str, body: dict[str, Any]) -> list[TextRef]:
    refs = _identity(body) if any(k in body for k in (*_IDENTITY_KEYS, "metadata")) else []
    if endpoint == "chat.completions":
        for m in body.get("messages") or ():
            if isinstance(m, dict):
                refs += _content(m, "content")
                refs += _calls(m)
        return refs
    if endpoint == "completions":
        return refs + list(_strings(body, "prompt"))
    if endpoint == "embeddings":
        return refs + list(_strings(body, "input"))
    refs += _strings(body, "instructions")
    inp = body.get("input")
    if isinstance(inp, str):
        refs.append(TextRef(body, "input"))
    elif isinstance(inp, list):
        refs += _response_items(inp)
    return refs


def response_texts(endpoint: str, body: dict[str, Any]) -> list[TextRef]:
    """Texts of a non-streamed answer (chat, completions, Responses; embeddings carry none)."""
    if endpoint == "responses":
        out = body.get("output")
        return list(_response_items(out)) if isinstance(out, list) else []
    refs: list[TextRef] = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        msg = choice.get("message")
        if isinstance(msg, dict):
            refs += _content(msg, "content")
            refs += _calls(msg)
        elif isinstance(choice.get("text"), str):
            refs.append(TextRef(choice, "text"))
    return refs
