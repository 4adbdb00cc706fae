"""OpenAI-shaped bodies and SSE events for chat completions, completions, embeddings, models and errors.

Events are ``(bytes, is_token)`` pairs: the writer in ``sse.py`` paces only the token-bearing ones.
Chunk bytes are a per-request prefix + the ``choices`` JSON + a suffix, so each chunk costs one small
``orjson.dumps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from mock_upstream.text import Generation

Event = tuple[bytes, bool]
FINGERPRINT = "fp_gatewatch_mock"
DONE: Event = (b"data: [DONE]\n\n", False)
MODEL_CREATED = 1_700_000_000
_PROMPT_DETAILS = {"cached_tokens": 0, "audio_tokens": 0}
_COMPLETION_DETAILS = {
    "reasoning_tokens": 0,
    "audio_tokens": 0,
    "accepted_prediction_tokens": 0,
    "rejected_prediction_tokens": 0,
}
_USAGE = (
    b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":'
    + orjson.dumps(_PROMPT_DETAILS)
    + b',"completion_tokens_details":'
    + orjson.dumps(_COMPLETION_DETAILS)
    + b"}"
)
_CHAT_TAIL = (
    b'"model":%b,"choices":%b,"usage":%b,"service_tier":"default","system_fingerprint":"' + FINGERPRINT.encode() + b'"}'
)
_ERROR_TYPES = {429: "requests", 401: "invalid_request_error", 404: "invalid_request_error"}


def error_body(message: str, status: int, code: str | None = None, param: str | None = None) -> bytes:
    kind = _ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    if status == 429 and code is None:
        code = "rate_limit_exceeded"
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code, "param": param}})


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": _PROMPT_DETAILS,
        "completion_tokens_details": _COMPLETION_DETAILS,
    }


def _usage_bytes(prompt: int, completion: int) -> bytes:
    return _USAGE % (prompt, completion, prompt + completion)


def chat_completion_tail(model: str, gens: Sequence[Generation], prompt: int) -> bytes:
    """A non-streamed chat reply after ``"created"`` — what stays the same for the same request (cacheable)."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": g.text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": g.finish_reason,
        }
        for i, g in enumerate(gens)
    ]
    usage_json = _usage_bytes(prompt, sum(g.tokens for g in gens))
    return _CHAT_TAIL % (orjson.dumps(model), orjson.dumps(choices), usage_json)


def chat_completion(cid: str, created: int, tail: bytes) -> bytes:
    return b'{"id":"%b","object":"chat.completion","created":%d,%b' % (cid.encode(), created, tail)


def text_completion(cid: str, created: int, model: str, gens: Sequence[Generation], prompt: int) -> bytes:
    choices = [
        {"text": g.text, "index": i, "logprobs": None, "finish_reason": g.finish_reason} for i, g in enumerate(gens)
    ]
    return orjson.dumps(
        {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage(prompt, sum(g.tokens for g in gens)),
            "system_fingerprint": FINGERPRINT,
        }
    )


def _chunker(cid: str, obj: str, created: int, model: str, with_usage: bool) -> tuple[bytes, bytes]:
    prefix = b'data: {"id":%b,"object":"%b","created":%d,"model":%b,"system_fingerprint":"%b","choices":' % (
        orjson.dumps(cid),
        obj.encode(),
        created,
        orjson.dumps(model),
        FINGERPRINT.encode(),
    )
    return prefix, (b',"usage":null}\n\n' if with_usage else b"}\n\n")


def _interleave(gens: Sequence[Generation]) -> list[tuple[int, str]]:
    """(choice index, piece) in stream order: one token of every choice per step."""
    longest = max((g.tokens for g in gens), default=0)
    return [(i, g.pieces[step]) for step in range(longest) for i, g in enumerate(gens) if step < g.tokens]


def _usage_event(prefix: bytes, prompt: int, gens: Sequence[Generation]) -> Event:
    tail = orjson.dumps(usage(prompt, sum(g.tokens for g in gens)))
    return prefix + b'[],"usage":' + tail + b"}\n\n", False


def chat_events(
    cid: str, created: int, model: str, gens: Sequence[Generation], prompt: int, with_usage: bool
) -> list[Event]:
    prefix, suffix = _chunker(cid, "chat.completion.chunk", created, model, with_usage)
    dumps = orjson.dumps

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return prefix + dumps([choice]) + suffix

    events: list[Event] = [
        (chunk(i, {"role": "assistant", "content": "", "refusal": None}, None), False) for i in range(len(gens))
    ]
    events += [(chunk(i, {"content": piece}, None), True) for i, piece in _interleave(gens)]
    events += [(chunk(i, {}, g.finish_reason), False) for i, g in enumerate(gens)]
    if with_usage:
        events.append(_usage_event(prefix, prompt, gens))
    events.append(DONE)
    return events


def completion_events(
    cid: str, created: int, model: str, gens: Sequence[Generation], prompt: int, with_usage: bool
) -> list[Event]:
    prefix, suffix = _chunker(cid, "text_completion", created, model, with_usage)
    dumps = orjson.dumps

    def chunk(index: int, text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
        return prefix + dumps([choice]) + suffix

    events: list[Event] = [(chunk(i, piece, None), True) for i, piece in _interleave(gens)]
    events += [(chunk(i, "", g.finish_reason), False) for i, g in enumerate(gens)]
    if with_usage:
        events.append(_usage_event(prefix, prompt, gens))
    events.append(DONE)
    return events


def embeddings_list(model: str, data: list[Any], prompt: int) -> bytes:
    items = [{"object": "embedding", "index": i, "embedding": vec} for i, vec in enumerate(data)]
    return orjson.dumps(
        {
            "object": "list",
            "data": items,
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
    )


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "gatewatch-mock"}


def models_list(models: Sequence[str]) -> bytes:
    return orjson.dumps({"object": "list", "data": [model_object(m) for m in models]})
