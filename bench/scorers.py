"""gatewatch bench scorers: events/s through the scorer code vs the bare models on the same batches.

Events go in batches as from the Kafka source (JSON bytes -> ``Event.model_validate_json``), through the
scorers, into a recording sink (no warehouse: rows are counted, not written). The same texts are then
run through the bare models on the same padded batches, already on the device, and the ratio printed.
Models are random-weight copies of the real architectures (bench/gpu/models.py), built offline.

    python3 bench/scorers.py --events 200              # CPU smoke run
    python3 bench/gpu/run.py --events 50000            # GPU (see bench/gpu/README.md)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench" / "gpu")]

import torch  # noqa: E402
from models import build_all, sentence, vocabulary  # noqa: E402
from stages import Stages  # noqa: E402


class RecordingSink:
    """Counts rows per table (the warehouse write is timed separately, not here)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    async def write(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        for table, batch in rows.items():
            self.rows[table] = self.rows.get(table, 0) + len(batch)


def payloads(n: int, words: list[str], tokens: int, seed: int = 0) -> list[bytes]:
    from schemas.events import Event, Message, RequestCapture, ResponseCapture

    rnd, t0 = random.Random(seed), datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        ts = t0 + timedelta(milliseconds=i)
        ev = Event(
            event_id=f"ev-{i}", request_id=f"r-{i}", gateway_instance="bench", sequence=i, ts_start=ts,
            ts_end=ts, tenant=f"tenant-{i % 8}", endpoint="chat.completions", operation="chat",
            request_model=f"model-{i % 2}", status=200, outcome="completed", latency_ms=1.0,
            request=RequestCapture(
                messages=[Message(role="user", content=sentence(words, rnd, tokens - 2))],
                context=[Message(role="document", content=sentence(words, rnd, tokens - 4))]),
            response=ResponseCapture(text=sentence(words, rnd, tokens - 2)),
        )
        out.append(ev.to_json())
    return out


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


async def through(
    scorers: list[Any], batches: list[list[bytes]], concurrent: bool = False, stages: Stages | None = None
) -> tuple[float, dict[str, int]]:
    """Validate each batch as the source does, score it (one scorer after the other, or all at once as
    the worker's concurrent pipelines do), hand the rows to the sink."""
    from schemas.events import Event

    sink = RecordingSink()
    sync()
    t = time.perf_counter()
    for raw in batches:
        v = time.perf_counter()
        events = [Event.model_validate_json(b) for b in raw]
        if stages is not None:
            stages.add("validate (Event.model_validate_json)", time.perf_counter() - v)
        if concurrent:
            results = await asyncio.gather(*(s.score(events) for s in scorers))
        else:
            results = [await s.score(events) for s in scorers]
        rows: dict[str, list[dict[str, Any]]] = {}
        for result in results:
            for table, r in result.items():
                rows.setdefault(table, []).extend(r)
        await sink.write(rows)
    sync()
    return time.perf_counter() - t, sink.rows


def bare(runner: Any, texts: list[Any]) -> float:
    """The runner's own tokenization + padding (untimed), tensors moved to the device, then forward only."""
    batches = runner.batches(runner.tokenize(texts))
    dev = [{k: v.to(runner._device) for k, v in b.inputs.items()} for b in batches]
    with torch.inference_mode():
        runner._forward(dev[0])
        sync()
        t = time.perf_counter()
        outs = [runner._forward(inputs) for inputs in dev]
        sync()
    del outs
    return time.perf_counter() - t


def config(args: argparse.Namespace, paths: dict[str, Path]) -> Any:
    from consumers.scorers.config import ScorersConfig

    return ScorersConfig.model_validate({
        "device": args.device, "batch_size": args.batch_size, "cuda_batch_size": args.batch_size,
        "max_length": 256, "compile": args.compile, "tokenizer_threads": args.threads,
        "toxicity": {"backend": "detoxify", "checkpoint_path": str(paths["ckpt"]),
                     "base_model_dir": str(paths["base"])},
        "factuality": {"backend": "nli", "nli_model": str(paths["nli"]), "unit": "response"},
        "drift": {"embed_model": str(paths["minilm"]), "window_seconds": None, "baseline_events": 500,
                  "window_events": 200, "permutations": 200},
    })


def line(name: str, events: int, secs: float, bsecs: float, rows: dict[str, int]) -> str:
    return (f"{name:<34} {events / secs:>9.1f} ev/s  bare {events / bsecs:>9.1f} ev/s  "
            f"ratio {bsecs / secs:.2f}  rows {rows}")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from consumers.scorers import SCORER_FACTORIES
    from schemas.events import Event

    vocab, words = vocabulary()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gw-bench-"))
    t = time.perf_counter()
    paths = build_all(workdir, vocab, tiny=args.tiny)
    print(f"models built in {time.perf_counter() - t:.1f}s under {workdir}"
          f"{' (TINY dims: overhead profile, not model speed)' if args.tiny else ''}", flush=True)
    cfg = config(args, paths)
    scorers = {name: SCORER_FACTORIES[name](cfg) for name in ("toxicity", "factuality", "drift")}
    for s in scorers.values():
        await s.start()
    raw = payloads(args.events + args.batch_events, words, args.tokens)
    warm, raw = [raw[: args.batch_events]], raw[args.batch_events :]
    batches = [raw[i : i + args.batch_events] for i in range(0, len(raw), args.batch_events)]
    print(f"{args.events} events, {len(batches)} batches of {args.batch_events}, device {cfg.device}, "
          f"forward batch {cfg.batch_size}", flush=True)
    await through(list(scorers.values()), warm)  # every bucket shape seen once

    events = [Event.model_validate_json(b) for b in raw]
    prompts = [e.request.messages[0].content for e in events]
    responses = [e.response.text for e in events]
    pairs = [(e.request.context[0].content, e.response.text) for e in events]
    work = {"toxicity": (scorers["toxicity"].backend._runner, prompts + responses),
            "factuality": (scorers["factuality"].backend._runner, pairs),
            "drift": (scorers["drift"]._embedder._runner, prompts + responses)}
    res: dict[str, Any] = {"events": args.events, "tiny": args.tiny, "scorers": {},
                           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    stages = Stages().install() if args.stages else None
    n = args.events
    for name, s in scorers.items():
        if stages:
            stages.reset()
        secs, rows = await through([s], batches, stages=stages)
        bsecs = bare(*work[name])
        res["scorers"][name] = {"events_s": n / secs, "bare_events_s": n / bsecs, "ratio": bsecs / secs,
                                "rows": rows}
        print(line(name, n, secs, bsecs, rows), flush=True)
        if stages:
            res["scorers"][name]["stages_s"] = dict(stages.seconds)
            print(stages.report(secs, n), flush=True)
    bsecs = sum(n / v["bare_events_s"] for v in res["scorers"].values())  # sequential bare: the GPU's work
    for key, label, concurrent in (("all", "all three (sequential)", False),
                                   ("all_concurrent", "all three (concurrent, as the worker)", True)):
        if stages:
            stages.reset()
        secs, rows = await through(list(scorers.values()), batches, concurrent=concurrent, stages=stages)
        res[key] = {"events_s": n / secs, "bare_events_s": n / bsecs, "ratio": bsecs / secs}
        print(line(label, n, secs, bsecs, rows), flush=True)
        if stages:
            res[key]["stages_s"] = dict(stages.seconds)
            print(stages.report(secs, n), flush=True)
    if stages:
        stages.uninstall()
    return res


def main(argv: list[str] | None = None) -> int:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000 if gpu else 200)
    p.add_argument("--batch-events", type=int, default=2048 if gpu else 64, help="events per source batch")
    p.add_argument("--batch-size", type=int, default=512 if gpu else 32, help="sequences per forward pass")
    p.add_argument("--tokens", type=int, default=128, help="tokens per prompt / response / context")
    p.add_argument("--threads", type=int, default=min(16, os.cpu_count() or 2), help="tokenizer threads")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true", help="torch.compile(dynamic=True) on GPU")
    p.add_argument("--workdir", help="where the random-weight models are built (reused when present)")
    p.add_argument("--tiny", action="store_true",
                   help="same architectures with tiny dims: the model costs ~nothing, what is left is overhead")
    p.add_argument("--stages", action="store_true", help="print busy seconds per stage of the scorer code")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    res = asyncio.run(bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
