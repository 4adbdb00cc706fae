"""The OpenAI endpoints, each a plain function of a ``Call``; raise ``BadRequest`` for a 400."""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from mock_upstream import payloads as p
from mock_upstream.call import Call
from mock_upstream.params import (
    BadRequest,
    completion_prompts,
    embedding_inputs,
    include_usage,
    int_param,
    limit_param,
    require_str,
    responses_prompt,
)
from mock_upstream.responses import response_events, response_object
from mock_upstream.text import (
    Generation,
    count_tokens,
    embedding,
    encode_base64,
    generate_many,
    messages_text,
    prompt_key,
)


def _new_id() -> str:
    return os.urandom(12).hex()


class ChatReply(NamedTuple):
    """What a chat request always gets back, whatever its id and time (cached per raw body)."""

    model: str
    gens: list[Generation]
    prompt_tokens: int
    tail: bytes  # the non-streamed body after "created"


def _chat_reply(body: dict[str, Any], natural: int) -> ChatReply:
    model = require_str(body, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    n = int_param(body, "n", default=1, high=128)
    limit = limit_param(body, "max_completion_tokens", "max_tokens")
    gens = generate_many(prompt_key(model, messages), n, natural, limit)
    prompt = count_tokens(messages_text(messages))
    return ChatReply(model, gens, prompt, p.chat_completion_tail(model, gens, prompt))


async def chat_completions(call: Call) -> web.StreamResponse:
    cache, key = call.shared.chat_replies, (call.raw, call.natural_tokens)
    reply = cache.get(key)
    if reply is None:
        reply = _chat_reply(call.body, call.natural_tokens)
        cache.put(key, reply)
    cid, created = "chatcmpl-" + _new_id(), int(time.time())
    if call.body.get("stream") is True:
        with_usage = include_usage(call.body)
        return await call.stream(p.chat_events(cid, created, reply.model, reply.gens, reply.prompt_tokens, with_usage))
    await call.generation_time(max(g.tokens for g in reply.gens))
    return call.json(p.chat_completion(cid, created, reply.tail))


async def completions(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    prompts, prompt_tokens = completion_prompts(body)
    n = int_param(body, "n", default=1, high=128)
    limit = limit_param(body, "max_tokens")
    natural = call.natural_tokens
    gens = [g for item in prompts for g in generate_many(prompt_key(model, item), n, natural, limit)]
    cid, created = "cmpl-" + _new_id(), int(time.time())
    if body.get("stream") is True:
        events = p.completion_events(cid, created, model, gens, prompt_tokens, include_usage(body))
        return await call.stream(events)
    await call.generation_time(max(g.tokens for g in gens))
    return call.json(p.text_completion(cid, created, model, gens, prompt_tokens))


async def embeddings(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    inputs, prompt_tokens = embedding_inputs(body)
    dims = int_param(body, "dimensions", default=call.shared.cfg.embedding_dimensions, high=16_384)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
    vectors: list[Any] = [embedding(prompt_key(model, item), dims) for item in inputs]
    if fmt == "base64":
        vectors = [encode_base64(v) for v in vectors]
    await call.generation_time(0)
    return call.json(p.embeddings_list(model, vectors, prompt_tokens))


async def responses(call: Call) -> web.StreamResponse:
    body = call.body
    model = require_str(body, "model")
    instructions, items = responses_prompt(body)
    limit = limit_param(body, "max_output_tokens")
    gen = generate_many(prompt_key(model, [instructions, items]), 1, call.natural_tokens, limit)[0]
    input_tokens = count_tokens(messages_text([instructions or "", *items]))
    rid, created = "resp_" + _new_id(), int(time.time())
    if body.get("stream") is True:
        return await call.stream(response_events(rid, created, body, gen, input_tokens))
    await call.generation_time(gen.tokens)
    return call.json(orjson.dumps(response_object(rid, created, body, gen, input_tokens)))


async def list_models(call: Call) -> web.StreamResponse:
    return call.json(call.shared.models_body)


async def get_model(call: Call) -> web.StreamResponse:
    return call.json(orjson.dumps(p.model_object(call.request.match_info["model"])))
