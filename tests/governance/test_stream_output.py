"""Pseudonymization round trip (upstream sees placeholders, the client the originals) and output
redaction / output patterns on streams, through a scripted upstream that echoes its input in odd-sized
deltas split at awkward byte offsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.redaction.canaries import CANARIES, MIXED

from .conftest import EchoUpstream, GatewayFactory, write_policy

pytestmark = pytest.mark.timeout(60)
PAD = "We reviewed the ticket together and agreed on the next steps for the migration. "
TEXT = PAD + MIXED + " " + PAD


async def call(g: Any, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, the text the client received: concatenated deltas for streams)."""
    h = {"authorization": f"Bearer {g.key}", **(headers or {})}
    async with aiohttp.ClientSession() as s, s.post(f"{g.base_url}/{path}", json=body, headers=h) as r:
        raw = await r.read()
    if not body.get("stream"):
        obj = orjson.loads(raw)
        if r.status != 200:
            return r.status, obj["error"]["code"]
        if path == "responses":
            return r.status, obj["output"][0]["content"][0]["text"]
        c = obj["choices"][0]
        return r.status, c["message"]["content"] if "message" in c else c["text"]
    text = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        obj = orjson.loads(line[6:])
        if "error" in obj and path != "responses":
            text.append("<<ERROR:" + obj["error"]["code"] + ">>")
        if path == "responses":
            if obj.get("type") == "response.output_text.delta":
                text.append(obj["delta"])
            elif obj.get("type") == "error":
                text.append("<<ERROR:" + obj["code"] + ">>")
            elif obj.get("type") == "response.completed":
                assert obj["response"]["output"][0]["content"][0]["text"] == "".join(text)
        for ch in obj.get("choices") or ():
            d = ch.get("delta")
            text.append((d.get("content") or "") if d else ch.get("text") or "")
    return r.status, "".join(text)


def bodies(text: str, stream: bool) -> list[tuple[str, dict[str, Any]]]:
    return [("chat/completions", {"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}),
            ("completions", {"model": "m", "stream": stream, "prompt": text}),
            ("responses", {"model": "m", "stream": stream, "input": text})]


async def gateway(make_gateway: GatewayFactory, echo: EchoUpstream, home: Path, policy: dict[str, Any]) -> Any:
    write_policy(home, "acme", policy)
    return await make_gateway({"m": {"deployments": [{"name": "echo", "base_url": echo.base_url}]}})


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
async def test_pseudonymization_round_trip(make_gateway: GatewayFactory, echo: EchoUpstream, tmp_path: Path,
                                           stream: bool) -> None:
    g = await gateway(make_gateway, echo, tmp_path / "home", {"pii": {"pseudonymize": True}})
    for path, body in bodies(TEXT, stream):
        status, got = await call(g, path, body)
        assert status == 200
        assert got == TEXT, path  # the client sees its own values back
        sent = orjson.dumps(echo.bodies[-1]).decode()
        assert "<EMAIL_ADDRESS_1>" in sent and "<US_SSN_1>" in sent
        for raw, _ in CANARIES.values():
            assert raw not in sent
    for ev in g.emitter.events:  # events: redacted, never the placeholders' values
        blob = orjson.dumps(ev).decode()
        assert all(raw not in blob for raw, _ in CANARIES.values())
        assert "<EMAIL_ADDRESS>" in blob


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
async def test_output_redaction(make_gateway: GatewayFactory, echo: EchoUpstream, tmp_path: Path,
                                stream: bool) -> None:
    entities = dict.fromkeys(CANARIES, "redact")
    g = await gateway(make_gateway, echo, tmp_path / "home",
                      {"pii": {"input": {}, "output": entities}})
    for path, body in bodies(TEXT, stream):
        status, got = await call(g, path, body)
        assert status == 200
        assert all(raw not in got for raw, _ in CANARIES.values()), (path, got)
        assert "<CREDIT_CARD>" in got and got.startswith(PAD) and got.endswith(PAD), path
        assert CANARIES["US_SSN"][0] in orjson.dumps(echo.bodies[-1]).decode()  # input left as it is
    assert all(ev["pii_counts"].get("EMAIL_ADDRESS") for ev in g.emitter.events)


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
async def test_output_patterns(make_gateway: GatewayFactory, echo: EchoUpstream, tmp_path: Path,
                               stream: bool) -> None:
    g = await gateway(make_gateway, echo, tmp_path / "home", {"version": "p1", "patterns": [
        {"id": "codename", "on": "output", "keywords": ["Project Falcon"], "action": "redact"},
        {"id": "secret", "on": "output", "regex": r"TOP-SECRET-\d+", "action": "block"},
        {"id": "comp", "on": "output", "keywords": ["competitor"], "action": "flag"}]})
    text = PAD + "the plan for project falcon beats the competitor. " + PAD
    for path, body in bodies("x", stream):
        status, got = await call(g, path, body, {"x-mock-echo": text})
        assert status == 200 and "[REDACTED:codename]" in got and "falcon" not in got.lower(), (path, got)
        ev = g.emitter.events[-1]
        assert ev["policy"]["decision"] == "flag" and set(ev["policy"]["rule_ids"]) == {"codename", "comp"}
        status, got = await call(g, path, body, {"x-mock-echo": PAD + "code TOP-SECRET-42 here " + PAD})
        assert "TOP-SECRET-42" not in got, path
        if stream:
            assert status == 200 and got.endswith("<<ERROR:policy_denied>>"), (path, got)
        else:
            assert (status, got) == (403, "pattern_blocked")
        ev = g.emitter.events[-1]
        assert ev["policy"]["decision"] == "deny" and ev["policy"]["rule_ids"] == ["secret"]
        assert "TOP-SECRET-42" not in orjson.dumps(ev).decode()
