"""Bad input: every case gets an OpenAI-shaped error with the right status, and exactly one event."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.app import KEYS
from tests.gateway.conftest import Gateway, GatewayFactory, deployment

CASES = [
    # (body bytes, content-type, expected status, expected param or None)
    (b'{"model": "gpt-4o-mini", "messages": [', "application/json", 400, None),
    (b"\xff\xfe{not utf8}", "application/json", 400, None),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xc3\x28"}]}', "application/json", 400,
     None),
    (b"[1, 2]", "application/json", 400, None),
    (b'{"model": 5, "messages": []}', "application/json", 400, "model"),
    (b'{"model": "gpt-4o-mini", "messages": "hi"}', "application/json", 400, "messages"),
    (b'{"model": "gpt-4o-mini", "messages": [{"content": "x"}]}', "application/json", 400, "messages[0]"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
     "application/json", 400, "stream"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
     "application/json", 400, "max_tokens"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
     "application/json", 400, "temperature"),
    (b"", "application/json", 400, None),
    (b'{"model": "unknown-model", "messages": [{"role": "user", "content": "x"}]}', "application/json", 404,
     "model"),
]


async def _post(gw: Gateway, body: bytes, ctype: str = "application/json", key: str | None = "default",
                path: str = "/chat/completions") -> tuple[int, dict, dict]:  # type: ignore[type-arg]
    headers = {"content-type": ctype}
    if key is not None:
        headers["authorization"] = f"Bearer {gw.key if key == 'default' else key}"
    async with aiohttp.ClientSession() as s, s.post(gw.base_url + path, data=body, headers=headers) as r:
        return r.status, await r.json(), r.headers.copy()


def _assert_openai_error(body: dict) -> None:  # type: ignore[type-arg]
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert {"message", "type", "code", "param"} <= set(err)


@pytest.mark.parametrize(("body", "ctype", "status", "param"), CASES)
async def test_bad_bodies(gw: Gateway, body: bytes, ctype: str, status: int, param: str | None) -> None:
    code, payload, headers = await _post(gw, body, ctype)
    assert code == status
    _assert_openai_error(payload)
    assert payload["error"]["param"] == param
    assert headers.get("x-request-id")
    assert len(gw.emitter.events) == 1
    assert gw.emitter.events[0]["status"] == status and gw.emitter.events[0]["outcome"] == "failed"


async def test_body_too_large(make_gateway: GatewayFactory, mock) -> None:  # type: ignore[no-untyped-def]
    g = await make_gateway({"m": {"deployments": [deployment(mock)]}}, gateway={"max_body_bytes": 10_000})
    big = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 50_000 + b'"}]}'
    code, payload, _ = await _post(g, big)
    assert code == 413 and payload["error"]["code"] == "request_too_large"
    assert g.emitter.events[0]["status"] == 413
    assert not mock.state.requests  # nothing went upstream


@pytest.mark.parametrize(("key", "code"), [(None, "missing_api_key"), ("gw-nope", "invalid_api_key"),
                                           ("", "missing_api_key")])
async def test_missing_or_wrong_key(gw: Gateway, key: str | None, code: str) -> None:
    status, payload, _ = await _post(gw, b'{"model": "gpt-4o-mini", "messages": []}', key=key)
    assert status == 401 and payload["error"]["code"] == code
    assert gw.emitter.events[0]["outcome"] == "denied"


async def test_unknown_path_and_method(gw: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.base_url + "/nope", data=b"{}") as r:
            assert r.status == 404
            _assert_openai_error(await r.json())
        async with s.get(gw.base_url + "/chat/completions") as r:
            assert r.status == 405
            _assert_openai_error(await r.json())


async def test_revoked_and_model_restricted_keys(gw: Gateway) -> None:
    from gateway.auth.keys import create_key, revoke_key

    secret, rec = create_key(gw.settings.keys_file, "acme", allowed_models=["other"])
    gw.runner.app[KEYS].reload()
    status, payload, _ = await _post(gw, b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}', key=secret)
    assert status == 404 and payload["error"]["code"] == "model_not_found"
    revoke_key(gw.settings.keys_file, rec.id)
    gw.runner.app[KEYS].reload()
    status, payload, _ = await _post(gw, b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}', key=secret)
    assert status == 401 and payload["error"]["code"] == "revoked_api_key"
