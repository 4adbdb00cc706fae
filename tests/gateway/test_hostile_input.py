"""Hostile bodies get an OpenAI-shaped 4xx that names the limit, before any work — never a 5xx — and the
refusal is an exchange in the audit log like any other."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from gateway.chain.parse import too_deep

from .conftest import Gateway

pytestmark = pytest.mark.timeout(60)
MODEL = "gpt-4o-mini"


def nest(n: int, leaf: Any = "x") -> Any:
    for _ in range(n):
        leaf = [leaf]
    return leaf


def deep_dict(n: int) -> Any:
    v: Any = "x"
    for _ in range(n):
        v = {"a": v}
    return v


CASES = [  # (route, body, param prefix)
    ("chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": nest(300)}]}, "messages[0].content"),
    ("chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "foo": nest(300)}, "foo"),
    ("chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi", "x": deep_dict(300)}]},
     "messages[0].x"),
    ("chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                          "tools": [{"type": "function", "function": {"name": "f", "parameters": deep_dict(200)}}]},
     "tools[0].function.parameters"),
    ("responses", {"model": MODEL, "input": nest(300)}, "input"),
    ("responses", {"model": MODEL, "input": [{"role": "user", "content": nest(100)}]}, "input[0].content"),
    ("embeddings", {"model": MODEL, "input": nest(300)}, "input"),
    ("completions", {"model": MODEL, "prompt": nest(300)}, "prompt"),
]


async def post(g: Gateway, route: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(f"{g.base_url}/{route}", data=raw, headers={
            "authorization": f"Bearer {g.key}", "content-type": "application/json"}) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("route", "body", "param"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
async def test_nesting_too_deep_is_a_400_naming_where(gw: Gateway, route: str, body: dict[str, Any], param: str,
                                                      stream: bool) -> None:
    import json
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # the stdlib encoder recurses; orjson refuses past 254 levels
    try:
        raw = json.dumps({**body, "stream": stream}).encode()
    finally:
        sys.setrecursionlimit(old)
    status, out = await post(gw, route, raw)
    assert status == 400, out
    err = out["error"]
    assert err["code"] == "nesting_too_deep" and err["type"] == "invalid_request_error"
    assert err["param"].startswith(param)
    assert "64 levels" in err["message"] and "gateway.max_json_depth" in err["message"]
    ev = gw.emitter.events[-1]
    assert ev["status"] == 400 and ev["error_type"] == "nesting_too_deep" and ev["tenant"] == "acme"


@pytest.mark.parametrize(("dicts", "status"), [(60, 200), (61, 400)])
async def test_nesting_up_to_the_limit_is_accepted(gw: Gateway, dicts: int, status: int) -> None:
    # body(1) > tools(2) > tool(3) > function(4) > parameters(5) > 59 more dicts: 64 levels in all
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": deep_dict(dicts)}}]}
    got, out = await post(gw, "chat/completions", orjson.dumps(body))
    assert got == status, out


@pytest.mark.parametrize(("route", "field", "limit", "item"), [
    ("chat/completions", "messages", 4096, {"role": "user", "content": "hi"}),
    ("responses", "input", 4096, {"role": "user", "content": "hi"}),
    ("completions", "prompt", 4096, "hi"),
    ("embeddings", "input", 2048, "hi"),
])
async def test_too_many_items_is_a_400_naming_the_limit(gw: Gateway, route: str, field: str, limit: int,
                                                        item: Any) -> None:
    status, out = await post(gw, route, orjson.dumps({"model": MODEL, field: [item] * (limit + 1)}))
    assert status == 400, out
    assert out["error"]["code"] == "too_many_items" and out["error"]["param"] == field
    assert str(limit) in out["error"]["message"]
    assert gw.emitter.events[-1]["status"] == 400


async def test_twenty_thousand_messages(gw: Gateway) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}] * 20_000}
    status, out = await post(gw, "chat/completions", orjson.dumps(body))
    assert status == 400 and "20000 items" in out["error"]["message"]


def test_walk_is_iterative_and_finds_the_first_deep_path() -> None:
    assert too_deep(nest(100_000), 64) is not None  # no RecursionError
    assert too_deep({"a": [1, 2, {"b": "c"}]}, 3) is None
    assert too_deep({"a": [1, 2, {"b": ["c"]}]}, 3) == "a[2].b"


async def test_more_text_than_the_pii_limit_is_a_413_naming_it(gw: Gateway) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a b " * 2_000_000}]}  # 8 MB, under 8 MiB
    status, out = await post(gw, "chat/completions", orjson.dumps(body))
    assert status == 413, out
    assert out["error"]["code"] == "request_too_large" and out["error"]["type"] == "invalid_request_error"
    assert "pii.max_input_chars" in out["error"]["message"] and "200,000" in out["error"]["message"]
    ev = gw.emitter.events[-1]
    assert ev["status"] == 413 and ev["request"]["messages"] == []


async def test_body_over_max_body_bytes_is_a_413_naming_it(gw: Gateway) -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * (8 << 20) + b'"}]}'
    status, out = await post(gw, "chat/completions", raw)
    assert status == 413 and "8388608 bytes" in out["error"]["message"]
    assert gw.emitter.events[-1]["status"] == 413
