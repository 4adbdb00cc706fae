"""Reading request bodies: the few fields the mock needs, checked by hand (no pydantic on the hot path)."""

from __future__ import annotations

from typing import Any

from mock_upstream.text import count_tokens


class BadRequest(ValueError):
    """Answered as a 400 OpenAI error object."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code or ("missing_required_parameter" if "required" in message else "invalid_value")


def require_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' is required and must be a non-empty string", param=name)
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_param(body: dict[str, Any], name: str, *, default: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value) or not 1 <= value <= high:
        raise BadRequest(f"'{name}' must be an integer between 1 and {high}", param=name)
    return int(value)


def limit_param(body: dict[str, Any], *names: str) -> int | None:
    """The first token limit present among ``names`` (None when the request sets none)."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < 0:
            raise BadRequest(f"'{name}' must be a non-negative integer", param=name)
        return int(value)
    return None


def include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _token_array(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(t) for t in value)


def _inputs(body: dict[str, Any], name: str) -> tuple[list[Any], int]:
    """A string, list of strings, token array or list of token arrays -> (items, token count)."""
    value = body.get(name)
    if isinstance(value, str):
        return [value], count_tokens(value)
    if isinstance(value, list) and value:
        if _token_array(value):
            return [value], len(value)
        if all(isinstance(v, str) for v in value):
            return value, sum(count_tokens(v) for v in value)
        if all(_token_array(v) and v for v in value):
            return value, sum(len(v) for v in value)
    raise BadRequest(f"'{name}' is required: a string, an array of strings, or (arrays of) token ids", param=name)


def completion_prompts(body: dict[str, Any]) -> tuple[list[Any], int]:
    return _inputs(body, "prompt")


def embedding_inputs(body: dict[str, Any]) -> tuple[list[Any], int]:
    return _inputs(body, "input")


def responses_prompt(body: dict[str, Any]) -> tuple[str | None, list[Any]]:
    """(instructions, input items); a string input becomes one item."""
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("'instructions' must be a string", param="instructions")
    value = body.get("input")
    if isinstance(value, str):
        return instructions, [value]
    if isinstance(value, list) and value:
        return instructions, value
    raise BadRequest("'input' is required: a string or an array of input items", param="input")
