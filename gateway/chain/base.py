"""The request chain: ordered stages around a terminal upstream call (Bifrost/Envoy-style pre/post hooks).

A stage is ``async (ex, call_next) -> Reply``. It may short-circuit by returning a Reply or raising a
GatewayError without calling ``call_next``; it changes a streamed answer by wrapping ``reply.chunks``.
Per-request state lives on the Exchange; stages keep none. The vocabulary they speak (Exchange, Reply,
SSEEvent, Usage) is ``gateway.exchange``'s.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.exchange import Exchange, Reply

__all__ = ["Next", "Stage", "build_chain", "run_after", "step_name"]

log = logging.getLogger(__name__)


async def run_after(reply: Reply) -> None:
    """Run a reply's deferred bookkeeping in order; one failing step is logged and does not stop the rest.
    The log line names the step, never its arguments (an Exchange holds the caller's headers and text)."""
    for step in reply.after:
        try:
            res = step()
            if res is not None:
                await res
        except Exception:  # the client has its answer; later steps (the event) must still run
            log.exception("post-response step %s failed", step_name(step))


def step_name(step: Callable[..., object]) -> str:
    fn = getattr(step, "func", step)  # functools.partial
    return str(getattr(fn, "__qualname__", type(fn).__name__))


Next = Callable[[Exchange], Awaitable[Reply]]


class Stage(Protocol):
    name: str

    async def __call__(self, ex: Exchange, call_next: Next) -> Reply: ...


def build_chain(stages: Sequence[Stage], terminal: Next) -> Next:
    """Built once in create_app; the first listed stage is the outermost."""
    handler = terminal
    for stage in reversed(stages):
        handler = functools.partial(stage, call_next=handler)
    return handler
