"""Stream output rewriting called directly: ``StreamOutput`` holds the text slots, each endpoint adapter's
``rewrite_event`` / ``flush_events`` walks its API's events (tests/governance/test_stream_output.py runs
the same through the gateway against an upstream that splits streams at awkward offsets)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.exchange import SSEEvent
from gateway.governance.output import StreamOutput

from .fakes import compile_policy

POLICY = compile_policy({"patterns": [{"id": "sec", "keywords": ["secret"], "on": "output", "action": "redact"}]})
HEAD = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def event(obj: dict[str, Any], name: str | None = None) -> SSEEvent:
    return SSEEvent(data=orjson.dumps(obj), obj=obj, event=name)


async def run(endpoint: str, events: list[SSEEvent]) -> list[SSEEvent]:
    out = StreamOutput(endpoint, POLICY, None)
    sent = [e for ev in events for e in await out.process(ev)]
    return sent + await out.flush_all()


def sent_objs(sent: list[SSEEvent]) -> list[dict[str, Any]]:
    """What the client parses: each event's bytes, not its obj (the rewrite must re-encode)."""
    return [orjson.loads(e.data) for e in sent if e.data != b"[DONE]"]


async def test_chat_held_back_text_goes_out_before_the_finishing_chunk() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
        return event({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    call = {"index": 0, "function": {"arguments": '{"q": "secret'}}
    sent = await run("chat.completions", [
        chunk({"content": "my sec"}), chunk({"content": "ret is out", "tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}), chunk({}, "stop"),
        event({**HEAD, "choices": [], "usage": {"total_tokens": 3}}), SSEEvent(data=b"[DONE]")])
    objs = sent_objs(sent)
    text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs if o["choices"])
    args = "".join(c["function"]["arguments"] for o in objs if o["choices"]
                   for c in o["choices"][0]["delta"].get("tool_calls", ()))
    assert (text, args) == ("my [REDACTED:sec] is out", '{"q": "[REDACTED:sec]"}')
    added = objs[-3]  # the gateway's chunk, then the upstream's finishing chunk and usage chunk
    assert {k: added[k] for k in HEAD} == HEAD and added["choices"][0]["finish_reason"] is None
    assert objs[-2]["choices"][0]["finish_reason"] == "stop" and objs[-1]["usage"] == {"total_tokens": 3}
    assert sent[-1].data == b"[DONE]"


async def test_completions_flush_in_its_own_shape() -> None:
    def chunk(text: str, finish: str | None = None) -> SSEEvent:
        return event({**HEAD, "object": "text_completion", "choices": [
            {"index": 0, "text": text, "finish_reason": finish}]})

    objs = sent_objs(await run("completions", [chunk("a secr"), chunk("et"), chunk("", "stop"),
                                                SSEEvent(data=b"[DONE]")]))
    assert "".join(o["choices"][0]["text"] for o in objs) == "a [REDACTED:sec]"
    assert objs[-2]["choices"] == [{"index": 0, "text": "a [REDACTED:sec]", "finish_reason": None}]


async def test_upstream_ending_without_done_still_flushes() -> None:
    chunk = event({**HEAD, "choices": [{"index": 0, "delta": {"content": "the secret"}, "finish_reason": None}]})
    objs = sent_objs(await run("chat.completions", [chunk]))
    assert "".join(o["choices"][0]["delta"].get("content", "") for o in objs) == "the [REDACTED:sec]"


async def test_responses_deltas_done_and_final_output_agree() -> None:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}

    def typed(obj: dict[str, Any]) -> SSEEvent:
        return event(obj, obj["type"])

    final = {"output": [{"type": "message", "content": [{"type": "output_text", "text": "one secret"}]}]}
    sent = await run("responses", [
        typed({"type": "response.output_text.delta", **where, "delta": "one sec"}),
        typed({"type": "response.output_text.delta", **where, "delta": "ret"}),
        typed({"type": "response.output_text.done", **where, "text": "one secret"}),
        typed({"type": "response.completed", "response": final})])
    objs = sent_objs(sent)
    deltas = [o for o in objs if o["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "one [REDACTED:sec]"
    assert deltas[-1]["item_id"] == "msg_1" and sent[len(deltas) - 1].event == "response.output_text.delta"
    done = next(o for o in objs if o["type"] == "response.output_text.done")
    assert done["text"] == "one [REDACTED:sec]"
    assert objs[-1]["response"]["output"][0]["content"][0]["text"] == "one [REDACTED:sec]"


async def test_responses_error_event_flushes_first() -> None:
    sent = await run("responses", [
        event({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "secret"}),
        event({"type": "error", "code": "x", "message": "upstream failed"}, "error")])
    objs = sent_objs(sent)
    assert [o["type"] for o in objs][-2:] == ["response.function_call_arguments.delta", "error"]
    assert "".join(o.get("delta", "") for o in objs) == "[REDACTED:sec]"
