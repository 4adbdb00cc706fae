"""What an event stores of a request, per capture mode: sampling parameters, messages (or their hashes),
texts. The flat message list itself comes from the endpoint adapter (``Endpoint.messages``)."""

from __future__ import annotations

from typing import Any

from schemas.events import sha256_text

# sampling parameters copied into events (numbers and booleans only: strings could carry user text)
PARAM_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "seed",
              "presence_penalty", "frequency_penalty", "stream", "logprobs", "top_logprobs", "parallel_tool_calls",
              "dimensions")


def params_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in PARAM_KEYS if isinstance(body.get(k), int | float | bool)}


def apply_capture(mode: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if mode == "full":
        return messages
    if mode == "none":
        return []
    return [{"role": m["role"], "content": None, "content_sha256": sha256_text(m.get("content") or ""),
             **({"name": m["name"]} if "name" in m else {})} for m in messages]


def capture_text(mode: str, text: str | None) -> tuple[str | None, str | None]:
    """(text, sha256) as stored for the capture mode."""
    if text is None or mode == "none":
        return None, None
    if mode == "hashes":
        return None, sha256_text(text)
    return text, None
