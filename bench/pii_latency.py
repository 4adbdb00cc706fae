"""Added latency of ``Redactor.redact`` (thread-pool hop included) for 1 KB and 8 KB prompts, and per turn
of a multi-turn chat with and without the detection cache.

    .venv/bin/python bench/pii_latency.py [--engine regex|ner|both] [--iterations N] [--conversations N]

Prompts are ordinary prose with a few entities per KB (an email, a phone number, a card or an IBAN,
and for the NER engine a person's name). One request at a time; p50/p99 in milliseconds. Each size is
measured as ASCII and "pasted": the same prose as copied from a document (accented names, curly quotes,
en dashes, a no-break space in each number), which goes through Unicode normalisation (docs/pii.md).
Chat: a system prompt plus alternating user/assistant messages drawn from the same prose; turn t sends
the system prompt and the whole history (2t - 1 messages), as chat clients do. "cached" analyses with
the tenant scope (a conversation's earlier messages are cache hits), "uncached" without; each
conversation uses a fresh scope, so no hit crosses conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.redaction import RedactionConfig, Redactor

PARAGRAPHS = [
    "Hi team, I am following up on the onboarding questions from last week. Maria Gonzalez asked "
    "whether the quarterly report can be shared with the auditors before the board meeting, and I "
    "said we would confirm by Thursday. You can reach her at maria.gonzalez@example.com or on "
    "+1 415-555-0132 if anything is unclear. ",
    "The migration plan has three phases: first we freeze writes on the legacy cluster, then we copy "
    "the snapshots to the new region, and finally we switch the traffic over during the maintenance "
    "window. The rollback procedure is documented in the runbook and has been rehearsed twice. ",
    "For the refund, please use the card ending in the number below: 4111 1111 1111 1111, or wire it "
    "to the account DE89 3704 0044 0532 0130 00 instead. Peter Novak approved the exception this "
    "morning, and the ticket was escalated from host 10.24.7.19 according to the gateway logs. ",
    "Summarise the discussion above in five bullet points, keep the tone neutral, highlight the open "
    "risks and the owners of each action item, and suggest a realistic timeline for the next sprint "
    "given that two engineers are on holiday during the second week. ",
]


def prompt(size: int) -> str:
    text, i = "", 0
    while len(text) < size:
        text += PARAGRAPHS[i % len(PARAGRAPHS)]
        i += 1
    return text[:size].rsplit(" ", 1)[0]


def pasted(text: str) -> str:
    """``text`` as a word processor writes it: non-ASCII, same entities, about the same length."""
    return (text.replace("Maria Gonzalez", "Mar\u00eda Gonz\u00e1lez").replace("Peter Novak", "Peter Nov\u00e1k")
            .replace(" I am ", " I\u2019m ").replace("phases:", "phases \u2013").replace("+1 ", "+1\u00a0")
            .replace("1111 1111", "1111\u00a01111").replace("DE89 ", "DE89\u00a0").replace(", and ", " \u2013 "))


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1] if len(samples) > 1 else samples[0]


async def measure(redactor: Redactor, text: str, iterations: int) -> tuple[list[float], list[float]]:
    """Wall time of ``await redact`` and CPU time of the same work (detect + apply) in this thread:
    the CPU figure is what an idle core would show when the box is shared."""
    for _ in range(5):
        await redactor.redact(text)
    wall, cpu = [], []
    actions = redactor.cfg.entities
    for _ in range(iterations):
        started = time.perf_counter()
        await redactor.redact(text)
        wall.append((time.perf_counter() - started) * 1000)
        started = time.thread_time()
        redactor.apply(text, redactor.detect_sync([text], actions)[0], actions)
        cpu.append((time.thread_time() - started) * 1000)
    return wall, cpu


async def run(engine: str, iterations: int, conversations: int) -> None:
    entities = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"]
    if engine == "ner":
        entities.append("PERSON")
    print(f"building the {engine} engine ...", file=sys.stderr)
    cfg = RedactionConfig(engine=engine, entities=dict.fromkeys(entities, "redact"), timeout_s=10)  # type: ignore[arg-type]
    async with Redactor(cfg) as redactor:
        for size, kind in ((1024, "ascii"), (1024, "pasted"), (8192, "ascii"), (8192, "pasted")):
            text = prompt(size) if kind == "ascii" else pasted(prompt(size))
            n = iterations if size == 1024 else max(iterations // 4, 20)
            wall, cpu = await measure(redactor, text, n)
            counts = (await redactor.redact(text)).counts
            print(f"{engine:<6}{len(text):>6} chars {kind:<6} n={n:<4} wall p50 {pct(wall, 50):7.2f} ms  "
                  f"p99 {pct(wall, 99):7.2f} ms | cpu p50 {pct(cpu, 50):7.2f} ms  p99 {pct(cpu, 99):7.2f} ms"
                  f" | entities {sum(counts.values())}")
        if conversations:
            await chat(redactor, conversations if engine == "regex" else max(conversations // 4, 3))


SYSTEM = ("You are the support assistant of Example Corp. Escalate billing issues to billing@example.com or "
          "+1 415-555-0100, never promise refunds above 500 USD, and answer in at most 120 words. ")


async def chat(redactor: Redactor, conversations: int, turns: int = 10) -> None:
    """Per-turn wall time of redact_many over the history, cached (tenant scope) vs uncached."""
    history = [f"(message {i}) {PARAGRAPHS[i % len(PARAGRAPHS)]}" for i in range(2 * turns)]  # all distinct
    per_turn: dict[str, list[list[float]]] = {"uncached": [[] for _ in range(turns)],
                                              "cached": [[] for _ in range(turns)]}
    for c in range(conversations):
        for mode in ("uncached", "cached"):
            scope = f"bench-{c}" if mode == "cached" else None
            for t in range(turns):
                texts = [SYSTEM, *history[:2 * t + 1]]
                started = time.perf_counter()
                await redactor.redact_many(texts, scope=scope)
                per_turn[mode][t].append((time.perf_counter() - started) * 1000)
    chars = len(SYSTEM) + sum(len(h) for h in history[:2 * turns - 1])
    for mode, rows in per_turn.items():
        total = [sum(rows[t][c] for t in range(turns)) for c in range(conversations)]
        print(f"{redactor.cfg.engine:<6}chat {turns} turns ({chars} chars at the last) {mode:<8} "
              f"turn 1 p50 {pct(rows[0], 50):6.2f} ms  turn {turns} p50 {pct(rows[-1], 50):6.2f} ms  "
              f"all turns p50 {pct(total, 50):7.2f} ms  (n={conversations})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["regex", "ner", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=20, help="chats per mode (0: skip the chat case)")
    args = parser.parse_args()
    for engine in ("regex", "ner") if args.engine == "both" else (args.engine,):
        asyncio.run(run(engine, args.iterations, args.conversations))


if __name__ == "__main__":
    main()
