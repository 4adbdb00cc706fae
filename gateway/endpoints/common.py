"""Pieces every OpenAI-shaped endpoint adapter shares: the 400 it raises, the usage object it reads,
the flat ``{role, content}`` messages it records, and the answer's model and id."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.exchange import Exchange


def invalid(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value" if param else "invalid_request")


def read_usage(ex: Exchange, usage: Any) -> None:
    """Chat/completions name the counts ``prompt_tokens`` / ``completion_tokens``, Responses and
    embeddings ``input_tokens`` / ``output_tokens``; both land in ``ex.usage``."""
    if not isinstance(usage, dict):
        return
    inp = usage.get("prompt_tokens", usage.get("input_tokens"))
    out = usage.get("completion_tokens", usage.get("output_tokens"))
    if isinstance(inp, int):
        ex.usage.input_tokens = inp
    if isinstance(out, int):
        ex.usage.output_tokens = out
    total = usage.get("total_tokens")
    if isinstance(total, int):
        ex.usage.total_tokens = total
    elif ex.usage.input_tokens is not None:
        ex.usage.total_tokens = ex.usage.input_tokens + (ex.usage.output_tokens or 0)


def read_head(ex: Exchange, body: dict[str, Any]) -> None:
    """Model, id and usage of a non-streamed answer (every endpoint puts them at the top)."""
    ex.response_model = body.get("model") if isinstance(body.get("model"), str) else ex.response_model
    ex.response_id = body.get("id") if isinstance(body.get("id"), str) else ex.response_id
    read_usage(ex, body.get("usage"))


def text_of(content: Any) -> str | None:
    """The text of a content string or parts array, parts joined by newlines."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict):
                for key in ("text", "input_text", "output", "refusal"):
                    if isinstance(p.get(key), str):
                        parts.append(p[key])
                        break
        return "\n".join(parts)
    return None


def message(role: str, content: Any, name: Any = None, tool_calls: Any = None) -> dict[str, Any]:
    """One event message: its text, with tool-call arguments appended (they carry user data too)."""
    text = text_of(content) or ""
    for call in tool_calls or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            text += ("\n" if text else "") + fn["arguments"]
    out: dict[str, Any] = {"role": role, "content": text}
    if isinstance(name, str):
        out["name"] = name
    return out


def strings_as(role: str, value: Any) -> list[dict[str, Any]]:
    """A string-or-array field (prompts, embeddings inputs) as one message per string."""
    values = value if isinstance(value, list) else [value]
    return [{"role": role, "content": v} for v in values if isinstance(v, str)]
