"""Parse and validate the request body; take out the gateway extension field before anything upstream.

Extension field (send with the openai SDK as ``extra_body={"gatewatch": {...}}``)::

    "gatewatch": {"context": ["retrieved document", ...],      # for factuality scoring
                  "metadata": {"purpose": "support"},           # free-form request metadata
                  "end_user": "user-123"}

It is always stripped before the upstream call. End user also comes from the OpenAI ``user`` /
``safety_identifier`` fields or the ``x-gatewatch-end-user`` header; metadata also from
``x-gatewatch-meta-<name>`` headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.chain.base import Next
from gateway.endpoints import Endpoint, endpoint_for
from gateway.endpoints.common import invalid as _bad
from gateway.errors import GatewayError, InvalidRequest, ModelNotFound
from gateway.exchange import Exchange, Reply

_INT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n", "seed", "top_logprobs",
               "dimensions")
_NUM_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
META_HEADER = "x-gatewatch-meta-"


def undecodable(value: str) -> bool:
    """True for a header value that was not valid UTF-8 on the wire (aiohttp keeps such bytes as lone
    surrogates, which no JSON encoder, Kafka record or log line can carry faithfully)."""
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_headers(headers: Any) -> None:
    """Refuse a request any of whose header values is not UTF-8, naming the header (lower case) in
    ``param``: such a value can be neither recorded in the audit log nor forwarded as sent."""
    for name, value in headers.items():
        if undecodable(value):
            header = name.lower() if not undecodable(name) else "<undecodable name>"
            raise InvalidRequest(f"The header '{header}' is not valid UTF-8; send header values as UTF-8 "
                                 "(ASCII for API keys).", param=header, code="invalid_header")


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def validate(api: Endpoint, body: Any) -> None:
    """The checks every endpoint shares, then the endpoint's own (``api.validate``)."""
    if not isinstance(body, dict):
        raise _bad(f"The request body must be a JSON object, not {_type_name(body)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a non-empty string.", "model")
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        raise _bad(f"'stream' must be a boolean, not {_type_name(body['stream'])}.", "stream")
    for name in _INT_FIELDS:
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or (v < 0 and name != "seed")):
            raise _bad(f"'{name}' must be a non-negative integer.", name)
    for name in _NUM_FIELDS:
        v = body.get(name)
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
            raise _bad(f"'{name}' must be a number.", name)
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise _bad("'stream_options' must be an object.", "stream_options")
    api.validate(body)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Structure limits checked right after decoding, before any other work (gateway config)."""

    max_json_depth: int = 64
    max_messages: int = 4096  # chat messages, Responses input items, completions prompts
    max_inputs: int = 2048  # embeddings inputs


def too_deep(body: Any, max_depth: int) -> str | None:
    """The path (``messages[0].content[0]``) of the first value nested deeper than ``max_depth``, or None.
    The walk recurses at most ``max_depth`` frames (it stops there), so a hostile body cannot exhaust the
    stack; it looks only at containers (a typical chat body: a few microseconds)."""
    found = _deep(body, max_depth - 1) if isinstance(body, dict | list) else None
    if found is None:
        return None
    path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(found)).lstrip(".")
    return (path if len(path) <= 96 else path[:96] + "…") or "<root>"


def _deep(value: dict[str, Any] | list[Any], budget: int) -> list[str | int] | None:
    """Keys from the too-deep point back up to ``value`` (innermost first), or None."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        if type(v) is dict or type(v) is list:
            if budget == 0:
                return [k]
            found = _deep(v, budget - 1)
            if found is not None:
                found.append(k)
                return found
    return None


def check_structure(api: Endpoint, body: Any, limits: BodyLimits) -> None:
    """400 naming the limit: too many messages / inputs (counted first: cheap), then nesting too deep."""
    if not isinstance(body, dict):
        return
    name, limit_name = api.items, api.items_limit
    items = body.get(name)
    limit = getattr(limits, limit_name)
    if isinstance(items, list) and len(items) > limit:
        raise InvalidRequest(f"'{name}' has {len(items)} items; this gateway accepts at most {limit} per request "
                             f"(gateway.{limit_name}). Split the request.", param=name, code="too_many_items")
    where = too_deep(body, limits.max_json_depth)
    if where is not None:
        raise InvalidRequest(f"The request body is nested more than {limits.max_json_depth} levels deep at "
                             f"'{where}' (gateway.max_json_depth).", param=where, code="nesting_too_deep")


def _extension(ex: Exchange, ext: Any) -> None:
    if ext is None:
        return
    if not isinstance(ext, dict):
        raise _bad("'gatewatch' must be an object.", "gatewatch")
    ctx = ext.get("context", [])
    if isinstance(ctx, str):
        ctx = [ctx]
    if not isinstance(ctx, list) or not all(isinstance(d, str) for d in ctx):
        raise _bad("'gatewatch.context' must be an array of strings.", "gatewatch.context")
    ex.context_docs = ctx
    meta = ext.get("metadata", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str | int | float | bool) for v in meta.values()):
        raise _bad("'gatewatch.metadata' must be an object of scalar values.", "gatewatch.metadata")
    ex.metadata.update({str(k): str(v) for k, v in meta.items()})
    if isinstance(ext.get("end_user"), str):
        ex.end_user = ext["end_user"]


class ParseStage:
    name = "parse"

    def __init__(self, limits: BodyLimits | None = None) -> None:
        self.limits = limits or BodyLimits()

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply:
        error = ex.scratch.pop("body_error", None)
        if isinstance(error, GatewayError):
            raise error
        check_headers(ex.headers)
        raw: bytes = ex.scratch.pop("raw", b"")
        if not raw:
            raise _bad("The request body is empty; send a JSON object.")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _bad(f"The request body is not valid JSON (UTF-8 expected): {exc}") from None
        api = endpoint_for(ex.endpoint)
        check_structure(api, body, self.limits)
        validate(api, body)
        _extension(ex, body.pop("gatewatch", None))
        ex.body = body
        ex.request_model = body["model"]
        ex.stream = bool(body.get("stream"))
        user = body.get("user") or body.get("safety_identifier") or ex.headers.get("x-gatewatch-end-user")
        if ex.end_user is None and isinstance(user, str):
            ex.end_user = user
        for name, value in ex.headers.items():
            if name.lower().startswith(META_HEADER):
                ex.metadata[name[len(META_HEADER):].lower()] = value
        if ex.allowed_models is not None and ex.request_model not in ex.allowed_models:
            raise ModelNotFound(f"The model '{ex.request_model}' does not exist or you do not have access to it.",
                                param="model")
        return await call_next(ex)
