"""Turn request bodies into the flat message list an event stores (after redaction, per capture mode)."""

from __future__ import annotations

from typing import Any

from schemas.events import sha256_text

# sampling parameters copied into events (numbers and booleans only: strings could carry user text)
PARAM_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "seed",
              "presence_penalty", "frequency_penalty", "stream", "logprobs", "top_logprobs", "parallel_tool_calls",
              "dimensions")


def _text_of(content: Any) -> str | None:
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


def _message(role: str, content: Any, name: Any = None, tool_calls: Any = None) -> dict[str, Any]:
    text = _text_of(content) or ""
    for call in tool_calls or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            text += ("\n" if text else "") + fn["arguments"]
    out: dict[str, Any] = {"role": role, "content": text}
    if isinstance(name, str):
        out["name"] = name
    return out


def messages_of(endpoint: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """All text a request carries, as [{role, content, name?}]."""
    if endpoint == "chat.completions":
        return [_message(str(m.get("role", "user")), m.get("content"), m.get("name"), m.get("tool_calls"))
                for m in body.get("messages") or () if isinstance(m, dict)]
    if endpoint == "completions":
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return [{"role": "prompt", "content": p} for p in prompts if isinstance(p, str)]
    if endpoint == "embeddings":
        inp = body.get("input")
        inputs = inp if isinstance(inp, list) else [inp]
        return [{"role": "input", "content": p} for p in inputs if isinstance(p, str)]
    out = []
    if isinstance(body.get("instructions"), str):
        out.append({"role": "system", "content": body["instructions"]})
    inp = body.get("input")
    if isinstance(inp, str):
        out.append({"role": "user", "content": inp})
    elif isinstance(inp, list):
        for item in inp:
            if not isinstance(item, dict):
                continue
            if "content" in item:
                out.append(_message(str(item.get("role", "user")), item.get("content")))
            elif item.get("type") == "function_call_output":
                out.append({"role": "tool", "content": _text_of(item.get("output")) or ""})
            elif item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
                out.append({"role": "assistant", "content": item["arguments"]})
    return out


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
