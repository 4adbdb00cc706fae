"""Security probes of the gateway, sent as an attacker would (raw sockets where a client library refuses
to send the bytes): every answered exchange has its event, headers that are not UTF-8 are refused by name,
secrets never reach the log, the bookkeeping survives a client that hangs up, labels stay bounded."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from tests.governance.conftest import write_policy

from .conftest import Gateway, GatewayFactory, deployment

pytestmark = pytest.mark.timeout(90)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


async def raw_request(url: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a fresh connection, headers as raw bytes; the connection is closed by
    the client as soon as the whole answer is read. Returns (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: " + host.encode(), b"Connection: close",
            b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    head += [k + b": " + v for k, v in headers]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    head_bytes = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
    if "content-length" in fields:  # read exactly the answer, then hang up at once
        payload = await reader.readexactly(int(fields["content-length"]))
    else:  # a stream: to the end
        payload = await reader.read()
    writer.transport.abort()
    return int(status_line.split()[1]), payload


def auth(g: Gateway) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Bearer " + g.key.encode())


async def wait_events(g: Gateway, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    for _ in range(int(timeout / 0.02)):
        if len(g.emitter.events) >= n:
            break
        await asyncio.sleep(0.02)
    return g.emitter.events


BAD_HEADERS = [
    (b"x-gatewatch-end-user", b"caf\xe9"),  # Latin-1, not UTF-8
    (b"X-Gatewatch-Meta-Team", b"\xff\xfe"),
    (b"x-gatewatch-meta-purpose", b"ok\x80"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("header", BAD_HEADERS, ids=lambda h: h[0].decode())
async def test_non_utf8_header_is_refused_by_name_and_still_audited(
        gw: Gateway, header: tuple[bytes, bytes], stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    body = orjson.dumps({**CHAT, "stream": stream})
    with caplog.at_level(logging.DEBUG):
        status, payload = await raw_request(gw.url, "/v1/chat/completions", [auth(gw), header], body)
    assert status == 400, payload
    err = orjson.loads(payload)["error"]
    assert err["code"] == "invalid_header"
    assert err["param"] == header[0].decode().lower()
    assert header[0].decode().lower() in err["message"]
    events = await wait_events(gw, 1)
    assert len(events) == 1, "a refused request is still an exchange in the audit log"
    ev = events[0]
    assert ev["status"] == 400 and ev["outcome"] == "failed" and ev["error_type"] == "invalid_header"
    assert ev["tenant"] == "acme"
    assert ev["end_user"] is None and ev["metadata"] == {}
    assert gw.key not in caplog.text


async def test_valid_utf8_headers_are_kept(gw: Gateway) -> None:
    headers = [auth(gw), (b"x-gatewatch-end-user", "José".encode()), (b"x-gatewatch-meta-team", "Zürich".encode())]
    status, payload = await raw_request(gw.url, "/v1/chat/completions", headers, orjson.dumps(CHAT))
    assert status == 200, payload
    ev = (await wait_events(gw, 1))[0]
    assert ev["end_user"] == "José"
    assert ev["metadata"] == {"team": "Zürich"}


async def test_non_utf8_authorization_is_a_401_with_an_event(gw: Gateway) -> None:
    status, payload = await raw_request(gw.url, "/v1/chat/completions",
                                        [(b"Authorization", b"Bearer gw-\xff\xfe")], orjson.dumps(CHAT))
    assert status == 400, payload
    assert orjson.loads(payload)["error"]["param"] == "authorization"
    ev = (await wait_events(gw, 1))[0]
    assert ev["status"] == 400 and ev["tenant"] == "unauthenticated"


async def test_every_answered_exchange_has_an_event_even_when_it_cannot_be_serialised(gw: Gateway) -> None:
    """Defence in depth: a string orjson refuses (a lone surrogate) anywhere in the event must not drop
    the event; it is stored escaped and counted."""
    from gateway.chain import emit as emit_mod

    before = REGISTRY.get_sample_value("gatewatch_events_sanitized_total") or 0.0
    original = emit_mod.EmitStage.build

    def poisoned(self, ex, now, latency, ttft):  # type: ignore[no-untyped-def]
        out = original(self, ex, now, latency, ttft)
        out["metadata"] = {"x": "bad\udce9"}
        return out

    emit_mod.EmitStage.build = poisoned  # type: ignore[method-assign]
    try:
        async with gw.client() as c:
            await c.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    finally:
        emit_mod.EmitStage.build = original  # type: ignore[method-assign]
    ev = (await wait_events(gw, 1))[0]
    assert ev["metadata"] == {"x": "bad\\udce9"}
    assert (REGISTRY.get_sample_value("gatewatch_events_sanitized_total") or 0.0) == before + 1


def test_exchange_repr_carries_no_secret_or_text() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.exchange import Exchange

    headers = CIMultiDictProxy(CIMultiDict({"Authorization": "Bearer gw-secret-key", "api-key": "gw-other"}))
    ex = Exchange(request_id="r1", endpoint="chat.completions", body={"messages": [{"content": "my SSN"}]},
                  headers=headers)
    ex.captured_messages = [{"role": "user", "content": "my SSN"}]
    text = repr(ex)
    assert "r1" in text
    for secret in ("gw-secret-key", "gw-other", "my SSN"):
        assert secret not in text


async def test_events_survive_clients_that_close_right_after_reading(
        make_gateway: GatewayFactory, mock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """NER events redaction runs in a thread after the answer is written; a client that closes its fresh
    connection right after reading used to cancel that bookkeeping and lose the event."""
    write_policy(tmp_path / "home", "acme", {"pii": {"engine": "ner", "events": {"PERSON": "redact",
                                                                                 "EMAIL_ADDRESS": "redact"}}})
    g = await make_gateway({"gpt-4o-mini": {"deployments": [deployment(mock)]}})
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "My name is Alice Johnson and I live in Paris. " * 20}]})
    n = 20
    for _ in range(n):
        status, _ = await raw_request(g.url, "/v1/chat/completions", [auth(g)], body)
        assert status == 200
    events = await wait_events(g, n, timeout=30)
    assert len(events) == n
    for ev in events:
        assert "Alice Johnson" not in orjson.dumps(ev).decode()


async def test_identity_fields_get_the_events_policy_and_user_the_input_policy(gw: Gateway, mock) -> None:  # type: ignore[no-untyped-def]
    from tests.governance.conftest import upstream_bodies

    async with gw.client() as c:
        for stream in (False, True):
            out = await c.chat.completions.create(
                **CHAT, user="alice.smith@example.com", stream=stream,  # type: ignore[call-overload]
                metadata={"ticket_owner": "bob@example.org"},
                extra_headers={"x-gatewatch-meta-card": "4111 1111 1111 1111", "x-gatewatch-meta-team": "blue"},
                extra_body={"gatewatch": {"metadata": {"contact": "carol@example.net", "n": 7}}})
            if stream:
                async for _ in out:
                    pass
    events = await wait_events(gw, 2)
    assert len(events) == 2
    for ev in events:
        assert ev["end_user"] == "<EMAIL_ADDRESS>"
        assert ev["metadata"] == {"contact": "<EMAIL_ADDRESS>", "n": "7", "card": "<CREDIT_CARD>", "team": "blue"}
        assert ev["pii_counts"]["EMAIL_ADDRESS"] >= 2 and ev["pii_counts"]["CREDIT_CARD"] >= 1
    blob = orjson.dumps(events).decode() + orjson.dumps(upstream_bodies(mock)).decode()
    for raw in ("alice.smith@example.com", "carol@example.net", "bob@example.org", "4111 1111 1111 1111"):
        assert raw not in blob
    assert all(b["user"] == "<EMAIL_ADDRESS>" for b in upstream_bodies(mock))


async def test_identity_fields_of_a_refused_request_are_redacted_too(gw: Gateway) -> None:
    status, _ = await raw_request(gw.url, "/v1/chat/completions",
                                  [auth(gw), (b"x-gatewatch-end-user", b"dave@example.com")],
                                  orjson.dumps({**CHAT, "model": "no-such-model"}))
    assert status == 404
    ev = (await wait_events(gw, 1))[0]
    assert ev["status"] == 404 and ev["end_user"] == "<EMAIL_ADDRESS>"


async def test_identity_hash_mode_is_stable_and_stores_no_value(
        make_gateway: GatewayFactory, mock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_policy(tmp_path / "home", "acme", {"pii": {"identity": "hash"}})
    g = await make_gateway({"gpt-4o-mini": {"deployments": [deployment(mock)]}},
                           governance={"hash_secret": "0123456789abcdef0123"})
    async with g.client() as c:
        for user in ("u-1001", "u-1001", "u-2002"):
            await c.chat.completions.create(**CHAT, user=user,  # type: ignore[call-overload]
                                            extra_headers={"x-gatewatch-meta-account": "acct-77"})
    events = await wait_events(g, 3)
    users = [ev["end_user"] for ev in events]
    assert all(u.startswith("<END_USER:") for u in users)
    assert users[0] == users[1] != users[2]
    assert all(ev["metadata"]["account"].startswith("<METADATA:") for ev in events)
    assert "u-1001" not in orjson.dumps(events).decode() and "acct-77" not in orjson.dumps(events).decode()


async def test_an_event_too_large_for_kafka_is_cut_to_fit_not_dropped(
        make_gateway: GatewayFactory, mock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A long prompt must not hide its exchange from the audit log: Kafka refuses records over 1 MiB, so
    the event's texts are cut (and marked) to fit instead of the event being dropped."""
    from gateway.chain.emit import EVENT_MAX_BYTES
    from gateway.events.delivery import MAX_REQUEST_BYTES

    assert EVENT_MAX_BYTES < MAX_REQUEST_BYTES - 16_384
    write_policy(tmp_path / "home", "acme", {"pii": {"input": {}, "events": {}}})  # raw capture allowed
    g = await make_gateway({"gpt-4o-mini": {"deployments": [deployment(mock)]}})
    before = REGISTRY.get_sample_value("gatewatch_events_truncated_total") or 0.0
    big = "é" * 700_000  # 1.4 MB of UTF-8 in one message
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "short system prompt"}, {"role": "user", "content": big}]})
    status, _ = await raw_request(g.url, "/v1/chat/completions", [auth(g)], body)
    assert status == 200
    ev = (await wait_events(g, 1))[0]
    assert len(orjson.dumps(ev)) <= EVENT_MAX_BYTES
    system, user = ev["request"]["messages"]
    assert system["content"] == "short system prompt"  # short texts are kept whole
    assert user["content"].startswith("é" * 1000) and "more characters]" in user["content"]
    assert (REGISTRY.get_sample_value("gatewatch_events_truncated_total") or 0.0) == before + 1
