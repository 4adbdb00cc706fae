"""Redaction fails closed: oversize input, slow engine, pathological regex, engine errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.redaction import EngineRegistry, RedactionConfig, RedactionFailed, Redactor
from gateway.redaction.errors import RedactionInputTooLarge
from gateway.redaction.recognizers import RegexTimeout

pytestmark = pytest.mark.timeout(60)

EVIL = {"name": "evil", "entity": "EVIL", "patterns": [{"regex": r"(a|aa)+c", "score": 0.9}]}


async def test_oversize_input_fails_closed(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(max_input_chars=100)
    with pytest.raises(RedactionFailed) as info:
        await redactor.redact("x" * 101)
    # still fails closed (a RedactionFailed), but the caller sent too much: 413 naming the limit
    assert isinstance(info.value, RedactionInputTooLarge) and info.value.status == 413
    assert "pii.max_input_chars" in info.value.message
    with pytest.raises(RedactionFailed):
        await redactor.redact_many(["x" * 60, "y" * 60])
    assert (await redactor.redact("x" * 100)).text == "x" * 100


async def test_pathological_regex_fails_closed(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor(entities={"EVIL": "redact"}, custom_recognizers=[EVIL], timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(RedactionFailed):
        await redactor.redact("a" * 60)
    assert time.monotonic() - started < 2


def test_regex_timeout_is_an_error_not_a_skip(make_redactor: Callable[..., Redactor]) -> None:
    # presidio itself logs and skips a timed-out pattern; the guard turns that into a failure
    redactor = make_redactor(entities={"EVIL": "redact"}, custom_recognizers=[EVIL], timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(RegexTimeout):
        redactor.detect_sync(["a" * 60], redactor.cfg.entities)
    assert time.monotonic() - started < 1.5  # the thread itself stops, not only the waiter


async def test_slow_engine_times_out_and_keeps_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    engines = EngineRegistry()  # own engine: the analyzer is patched below
    cfg = RedactionConfig(timeout_s=0.2, max_concurrency=1, inline_max_chars=0)  # the pool path
    async with Redactor(cfg, engines=engines) as redactor:
        analyzer = redactor._engine.analyzer
        real = analyzer.analyze

        def slow(*args: Any, **kw: Any) -> Any:
            time.sleep(0.6)
            return real(*args, **kw)

        monkeypatch.setattr(analyzer, "analyze", slow)
        with pytest.raises(RedactionFailed, match="timed out"):
            await redactor.redact("call 212-555-0199")
        monkeypatch.setattr(analyzer, "analyze", real)
        with pytest.raises(RedactionFailed):  # the one worker is still busy: no slot
            await redactor.redact("call 212-555-0199")
        await asyncio.sleep(0.6)
        assert (await redactor.redact("call 212-555-0199")).text == "call <PHONE_NUMBER>"


async def test_engine_error_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    engines = EngineRegistry()
    async with Redactor(RedactionConfig(), engines=engines) as redactor:
        assert redactor._engine is not Redactor(RedactionConfig())._engine  # not the process-wide one

        def boom(*args: Any, **kw: Any) -> Any:
            raise RuntimeError("secret 536-22-8726 in a message")

        monkeypatch.setattr(redactor._engine.analyzer, "analyze", boom)
        with pytest.raises(RedactionFailed) as info:
            await redactor.redact("ssn 536-22-8726")
        assert "536-22-8726" not in info.value.message


async def test_closed_redactor_refuses(make_redactor: Callable[..., Redactor]) -> None:
    redactor = make_redactor()
    await redactor.close()
    await redactor.close()  # idempotent
    with pytest.raises(RedactionFailed):
        await redactor.redact("hello")


async def test_unknown_entity_in_call_override_fails_closed(regex_redactor: Redactor) -> None:
    with pytest.raises(RedactionFailed):
        await regex_redactor.redact("hi", {"PERSON": "redact"})


async def test_inline_path_fails_closed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short texts run inline on the loop (no thread hop); errors there fail closed the same way."""
    engines = EngineRegistry()
    async with Redactor(RedactionConfig(inline_max_chars=4096), engines=engines) as redactor:
        assert (await redactor.redact("call 212-555-0199")).text == "call <PHONE_NUMBER>"

        def boom(*args: Any, **kw: Any) -> Any:
            raise RuntimeError("engine down")

        monkeypatch.setattr(redactor._engine.analyzer, "analyze", boom)
        with pytest.raises(RedactionFailed, match="RuntimeError"):
            await redactor.redact("ssn 536-22-8726")
