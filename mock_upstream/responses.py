"""The Responses API: the ``response`` object and its SSE event sequence.

Stream: response.created, response.in_progress, response.output_item.added, response.content_part.added,
response.output_text.delta (one per token), response.output_text.done, response.content_part.done,
response.output_item.done, then response.completed (or response.incomplete when max_output_tokens cut
the reply). Every event carries ``sequence_number`` from 0 and is sent with an ``event:`` line.
"""

from __future__ import annotations

from typing import Any

import orjson

from mock_upstream.payloads import Event
from mock_upstream.text import Generation

_INPUT_DETAILS = {"cached_tokens": 0}
_OUTPUT_DETAILS = {"reasoning_tokens": 0}


def response_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": _INPUT_DETAILS,
        "output_tokens": output_tokens,
        "output_tokens_details": _OUTPUT_DETAILS,
        "total_tokens": input_tokens + output_tokens,
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def response_object(
    rid: str, created: int, body: dict[str, Any], gen: Generation | None, input_tokens: int
) -> dict[str, Any]:
    """The response; ``gen`` None means still in progress (no output, no usage yet)."""
    status, incomplete, output, usage = "in_progress", None, [], None
    if gen is not None:
        cut = gen.finish_reason == "length"
        status = "incomplete" if cut else "completed"
        incomplete = {"reason": "max_output_tokens"} if cut else None
        output = [_message("msg_" + rid[5:], status, [_part(gen.text)])]
        usage = response_usage(input_tokens, gen.tokens)
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": bool(body.get("store", False)),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def response_events(rid: str, created: int, body: dict[str, Any], gen: Generation, input_tokens: int) -> list[Event]:
    item_id = "msg_" + rid[5:]
    final = response_object(rid, created, body, gen, input_tokens)
    start = response_object(rid, created, body, None, input_tokens)
    text = gen.text
    added = {"output_index": 0, "item": _message(item_id, "in_progress", [])}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any], bool]] = [
        ("response.created", {"response": start}, False),
        ("response.in_progress", {"response": start}, False),
        ("response.output_item.added", added, False),
        ("response.content_part.added", {**where, "part": _part("")}, False),
    ]
    events += [("response.output_text.delta", {**where, "delta": piece, "logprobs": []}, True) for piece in gen.pieces]
    events += [
        ("response.output_text.done", {**where, "text": text, "logprobs": []}, False),
        ("response.content_part.done", {**where, "part": _part(text)}, False),
        ("response.output_item.done", {"output_index": 0, "item": final["output"][0]}, False),
        (f"response.{final['status']}", {"response": final}, False),
    ]
    return [_sse(name, seq, data, token) for seq, (name, data, token) in enumerate(events)]


def _sse(name: str, seq: int, data: dict[str, Any], token: bool) -> Event:
    payload = orjson.dumps({"type": name, **data, "sequence_number": seq})
    return b"event: %b\ndata: %b\n\n" % (name.encode(), payload), token
