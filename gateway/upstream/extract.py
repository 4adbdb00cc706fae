"""Read usage, text and finish reasons out of OpenAI-shaped answers (non-streamed bodies and stream events)."""

from __future__ import annotations

from typing import Any

from gateway.chain.base import Exchange


def _usage_into(ex: Exchange, usage: Any) -> None:
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


def _responses_output_text(output: Any) -> list[str]:
    parts: list[str] = []
    if isinstance(output, list):
        for item in output:
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                for c in item["content"]:
                    if isinstance(c, dict) and c.get("type") == "output_text" and isinstance(c.get("text"), str):
                        parts.append(c["text"])
    return parts


def _choices_into(ex: Exchange, choices: Any, part: str) -> None:
    """Text, tool-call arguments and finish reasons of chat/completions choices (`message` in bodies,
    `delta` in stream chunks; completions carry `text`)."""
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


def from_body(ex: Exchange, body: dict[str, Any]) -> None:
    """Fill the exchange from a non-streamed answer."""
    ex.response_model = body.get("model") if isinstance(body.get("model"), str) else ex.response_model
    ex.response_id = body.get("id") if isinstance(body.get("id"), str) else ex.response_id
    _usage_into(ex, body.get("usage"))
    if ex.endpoint == "responses":
        ex.response_parts.extend(_responses_output_text(body.get("output")))
        status = body.get("status")
        if isinstance(status, str):
            ex.finish_reasons.append(status)
        return
    _choices_into(ex, body.get("choices"), "message")


def from_stream_event(ex: Exchange, obj: dict[str, Any], event: str | None) -> None:
    """Fill the exchange from one streamed event (chat/completions chunk or Responses API event)."""
    if ex.endpoint == "responses":
        kind = obj.get("type", event)
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            ex.response_parts.append(obj["delta"])
        elif kind in ("response.completed", "response.incomplete", "response.failed", "response.created"):
            resp = obj.get("response")
            if isinstance(resp, dict):
                if isinstance(resp.get("model"), str):
                    ex.response_model = resp["model"]
                if isinstance(resp.get("id"), str):
                    ex.response_id = resp["id"]
                _usage_into(ex, resp.get("usage"))
                if kind != "response.created" and isinstance(resp.get("status"), str):
                    ex.finish_reasons.append(resp["status"])
        return
    if ex.response_model is None and isinstance(obj.get("model"), str):
        ex.response_model = obj["model"]
        ex.response_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if obj.get("usage") is not None:
        _usage_into(ex, obj["usage"])
    _choices_into(ex, obj.get("choices"), "delta")


def is_injected_usage_chunk(obj: dict[str, Any]) -> bool:
    """The final usage-only chunk that `stream_options.include_usage` adds (empty choices + usage)."""
    return obj.get("usage") is not None and not obj.get("choices")
