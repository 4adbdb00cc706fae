"""Governance fixtures: the gateway factory from tests/gateway, policy files, and a scripted upstream
that streams back the text it received (or the ``x-mock-echo`` header), split at awkward byte offsets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from tests.gateway.conftest import GatewayFactory, RecordingEmitter, deployment, make_gateway, mock  # noqa: F401

SPLITS = (1, 5, 2, 9, 3, 17, 4, 7)


def upstream_bodies(mock: Any) -> list[Any]:  # noqa: F811 - a parameter, not the fixture
    """Every request body the mock upstream received (oldest first)."""
    return [e["body"] for e in mock.state.snapshot()["recent"]]


def write_policy(home: Path, name: str, policy: dict[str, Any]) -> Path:
    d = home / "policies"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(yaml.safe_dump(policy))
    return p


def pieces(text: str) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        n = SPLITS[k % len(SPLITS)]
        out.append(text[i:i + n])
        i, k = i + n, k + 1
    return out


def _last_user_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        c = body["messages"][-1].get("content")
        return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    if "prompt" in body:
        return body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
    inp = body.get("input")
    return inp if isinstance(inp, str) else str(inp[-1].get("content"))


class EchoUpstream:
    """Scripted upstream: answers with the text it received; streams it in odd-sized deltas and writes
    the SSE bytes in slices that cut lines and UTF-8 sequences."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> EchoUpstream:
        app = web.Application()
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
            app.router.add_post(path, self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        text = request.headers.get("x-mock-echo") or _last_user_text(body)
        kind = request.path.rsplit("/", 1)[-1]
        usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        head = {"id": "x1", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            if kind == "completions" and "prompt" in body:
                return web.json_response({**head, "object": "text_completion", "usage": usage,
                                          "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
            if kind == "responses":
                return web.json_response(self._response(head, text, usage))
            return web.json_response({**head, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        events = self._events(kind, body, head, text, usage)
        raw = b"".join(events)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        i, k = 0, 0
        while i < len(raw):
            n = SPLITS[k % len(SPLITS)] * 3
            await resp.write(raw[i:i + n])
            await asyncio.sleep(0)
            i, k = i + n, k + 1
        await resp.write_eof()
        return resp

    def _response(self, head: dict[str, Any], text: str, usage: dict[str, int]) -> dict[str, Any]:
        return {"id": "resp_1", "object": "response", "created_at": head["created"], "model": head["model"],
                "status": "completed", "output": [{"type": "message", "id": "msg_1", "role": "assistant",
                                                   "status": "completed",
                                                   "content": [{"type": "output_text", "text": text,
                                                                "annotations": []}]}],
                "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}}

    def _events(self, kind: str, body: dict[str, Any], head: dict[str, Any], text: str,
                usage: dict[str, int]) -> list[bytes]:
        def data(obj: dict[str, Any], event: str | None = None) -> bytes:
            prefix = b"event: " + event.encode() + b"\n" if event else b""
            return prefix + b"data: " + orjson.dumps(obj) + b"\n\n"

        if kind == "responses":
            final = self._response(head, text, usage)
            where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
            out = [data({"type": "response.created", "response": {**final, "status": "in_progress", "output": []}},
                        "response.created")]
            out += [data({"type": "response.output_text.delta", **where, "delta": p}, "response.output_text.delta")
                    for p in pieces(text)]
            out += [data({"type": "response.output_text.done", **where, "text": text}, "response.output_text.done"),
                    data({"type": "response.completed", "response": final}, "response.completed")]
            return out
        obj = "text_completion" if kind == "completions" else "chat.completion.chunk"
        out = []
        for p in pieces(text):
            choice = {"index": 0, "text": p, "finish_reason": None} if kind == "completions" else \
                {"index": 0, "delta": {"content": p}, "finish_reason": None}
            out.append(data({**head, "object": obj, "choices": [choice]}))
        last = {"index": 0, "text": "", "finish_reason": "stop"} if kind == "completions" else \
            {"index": 0, "delta": {}, "finish_reason": "stop"}
        out.append(data({**head, "object": obj, "choices": [last]}))
        out.append(data({**head, "object": obj, "choices": [], "usage": usage}))
        out.append(b"data: [DONE]\n\n")
        return out


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    async with EchoUpstream() as e:
        yield e
