"""Pipeline lag: time from a request's end at the gateway to its row in ClickHouse (archiver) and its scores.

    gatewatch bench pipeline_lag [--rate 1000] [--duration 30] [--pipelines archiver,toxicity,...]
                                 [--max-wait-ms 1000] [--max-records 500] [--scorer-process inline|child]
                                 [--direct]                                   (or: python -m bench.pipeline_lag)

What it starts (and stops again, also on Ctrl-C): a Tansu broker (memory://), the mock upstream,
``gatewatch worker`` (its own GATEWATCH_HOME with a chdb warehouse; pipelines archiver + toxicity +
factuality + drift by default, CPU scorers) and ``gatewatch gateway`` (real configuration: API key,
default governance policy, events to Kafka). No CPU pinning: everything shares the machine's cores.

Then:
  1. warm-up: 50 requests, and waits (bounded) until every pipeline has consumed them (group assigned,
     models loaded);
  2. open-loop load with bench/loadgen.py at --rate for --duration s (small non-streamed chat requests),
     while the worker's console /metrics is polled every second (consumer lag and events per pipeline);
  3. waits until the archiver has consumed everything (lag 0 and its events counter at what the gateway
     emitted) or --drain-timeout; scorers that are behind are not waited for (``--wait-scorers`` does);
  4. stops the worker gracefully (SIGTERM: it finishes its batch, commits, closes the warehouse);
  5. opens the warehouse in a fresh subprocess (chdb: one process per data directory) and computes
     quantiles of ``ingested_at - ts_end`` over the run's events and ``scored_at - ts`` per scorer.

What the timestamps mean:
- ``ts_end``: the gateway's clock when the response was complete (the event's end), before emission.
- ``ingested_at``: ``DEFAULT now64(3)``, evaluated by ClickHouse when it processes the archiver's insert;
  the rows become visible when that insert commits its part, a few ms later. chdb admits one process per
  data directory and has no ``system.part_log``, so visibility cannot be polled from outside the worker;
  instead the archiver's mean batch time (write + commit, from the worker's metrics) is printed as the
  upper bound of that gap.
- ``scored_at``: stamped by the worker's ClickHouse sink just before it inserts the scores (for the scorer
  child's rows too: the worker inserts them), i.e. after the model ran; like ``ingested_at`` it precedes
  visibility by the insert's own duration. (Before 2026-11-27 11:30 UTC it was the batch's *start*, which
  understated the scorer lag by up to the scorer's batch time.) The scorer's mean batch time (score +
  write + commit) is still printed next to it.
Figures go to stdout as tables, progress to stderr, everything to bench/results/pipeline_lag-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    CHAT,
    PROMPT,
    PY,
    RESULTS_DIR,
    ROOT,
    Client,
    Procs,
    cpu_seconds,
    free_port,
    git_commit,
    http,
    kafka_counters,
    log,
    md_table,
    new_results,
    own_cpu_seconds,
    run_guarded,
    short,
    start_broker,
    start_gateway,
    start_mock,
    wait_http,
    write_results,
)

ALL_CPUS = f"0-{max(0, (os.cpu_count() or 1) - 1)}"  # Procs pins with taskset: give every process all cores


def cpus(args: argparse.Namespace, who: str) -> str:
    """taskset list for ``who``: all cores, or with --pin-gateway the last core for the gateway alone."""
    n = os.cpu_count() or 1
    if not getattr(args, "pin_gateway", False) or n < 2:
        return ALL_CPUS
    return str(n - 1) if who == "gateway" else f"0-{n - 2}"


SYSTEM = "You are a helpful assistant. The sea covers about 71 percent of the Earth's surface."


def chat_body() -> str:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    return json.dumps({"model": "bench-chat", "messages": msgs, "max_tokens": 16}, separators=(",", ":"))


# ----------------------------------------------------------------------------------------- worker metrics
METRIC_RE = re.compile(r'^(gatewatch_consumer_\w+)\{([^}]*)\} ([-\d.e+]+|NaN)$')


def worker_metrics(base: str) -> dict[str, dict[str, float]]:
    """{metric: {pipeline[/scorer]: value}} for the consumer metrics the benchmark reads."""
    status, text = http(base + "/metrics", timeout=3.0)
    out: dict[str, dict[str, float]] = {}
    if status != 200:
        return out
    for line in text.decode().splitlines():
        m = METRIC_RE.match(line)
        if not m or m.group(3) == "NaN":
            continue
        name, labels = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if "le" in labels or name.endswith("_created"):
            continue
        key = labels.get("pipeline", "") + (f"/{labels['scorer']}" if "scorer" in labels else "")
        out.setdefault(name, {})[key] = out.get(name, {}).get(key, 0.0) + float(m.group(3))
    return out


def events_of(m: dict[str, dict[str, float]]) -> dict[str, float]:
    return m.get("gatewatch_consumer_events_total", {})


def lag_of(m: dict[str, dict[str, float]]) -> dict[str, float]:
    return m.get("gatewatch_consumer_lag", {})


class Sampler(threading.Thread):
    """Polls the worker's /metrics every ``every`` s: (t, lag per pipeline, events per pipeline)."""

    def __init__(self, base: str, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.base, self.every = base, every
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            m = worker_metrics(self.base)
            if m:
                self.samples.append({"t": time.time(), "lag": lag_of(m), "events": events_of(m)})
            self.halt.wait(self.every)


# ----------------------------------------------------------------------------------------- warehouse query
QUERY_SCRIPT = r"""
import json, sys
import chdb  # noqa: F401  -- early, main thread
import clickhouse_connect
dsn, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3]
c = clickhouse_connect.get_client(dsn=dsn)
p = {"t0": t0, "t1": t1}
Q = "quantilesExact(0.5, 0.9, 0.99)(d), max(d), avg(d)"
ev = c.query(
    "SELECT count(), sum(n), " + Q + " FROM (SELECT event_id, count() AS n, "
    "toUnixTimestamp64Milli(min(ingested_at)) - toUnixTimestamp64Milli(any(ts_end)) AS d "
    "FROM gatewatch.events WHERE ts_end >= {t0:DateTime64(3)} AND ts_end < {t1:DateTime64(3)} "
    "GROUP BY event_id)", parameters=p).result_rows[0]
batches = c.query(
    "SELECT count(), avg(n), max(n) FROM (SELECT ingested_at, count() AS n FROM gatewatch.events "
    "WHERE ts_end >= {t0:DateTime64(3)} AND ts_end < {t1:DateTime64(3)} GROUP BY ingested_at)",
    parameters=p).result_rows[0]
sc = c.query(
    "SELECT scorer, count(), " + Q + " FROM (SELECT scorer, event_id, "
    "toUnixTimestamp64Milli(min(scored_at)) - toUnixTimestamp64Milli(any(ts)) AS d "
    "FROM gatewatch.scores WHERE ts >= {t0:DateTime64(3)} AND ts < {t1:DateTime64(3)} "
    "GROUP BY scorer, event_id) GROUP BY scorer ORDER BY scorer", parameters=p).result_rows
per_s = c.query(
    "SELECT toUnixTimestamp(toStartOfInterval(ts_end, INTERVAL 5 SECOND)) AS b, count(), "
    "quantileExact(0.99)(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts_end)) "
    "FROM gatewatch.events WHERE ts_end >= {t0:DateTime64(3)} AND ts_end < {t1:DateTime64(3)} "
    "GROUP BY b ORDER BY b", parameters=p).result_rows

def qd(row):
    q, mx, avg = row
    return {"p50": q[0], "p90": q[1], "p99": q[2], "max": mx, "mean": round(avg, 1)} if q else None

print(json.dumps({
    "events": {"events": ev[0], "rows": ev[1], "lag_ms": qd(ev[2:5]) if ev[0] else None},
    "archiver_inserts": {"count": batches[0], "avg_rows": round(batches[1] or 0, 1), "max_rows": batches[2]},
    "scores": {r[0]: {"events": r[1], "lag_ms": qd(r[2:5])} for r in sc},
    "events_p99_by_5s": [[b, n, p99] for b, n, p99 in per_s],
}, default=str))
"""


def query_warehouse(home: Path, t0: dt.datetime, t1: dt.datetime) -> dict[str, Any]:
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    dsn = f"chdb://{(home / 'warehouse').resolve()}"
    res = subprocess.run([PY, "-c", QUERY_SCRIPT, dsn, t0.strftime(fmt)[:-3], t1.strftime(fmt)[:-3]],
                         capture_output=True, text=True, timeout=180, check=False, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"warehouse query failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- direct producer
def template_event() -> dict[str, Any]:
    """A completed chat event shaped like the gateway's for CHAT's body (capture full, after redaction)."""
    from schemas.events import Event, Message, RequestCapture, ResponseCapture, Usage

    now = dt.datetime.now(dt.UTC)
    ev = Event(event_id="x", request_id="x", gateway_instance="bench-direct", sequence=0, ts_start=now, ts_end=now,
               tenant="bench", endpoint="chat.completions", operation="chat", request_model="bench-chat",
               response_model="gpt-4o-mini", deployment="mock", provider="openai", status=200, outcome="completed",
               latency_ms=1.0, usage=Usage(input_tokens=24, output_tokens=12, total_tokens=36),
               request=RequestCapture(messages=[Message(role="user", content=PROMPT)],
                                      context=[Message(role="system", content=SYSTEM)], params={"max_tokens": 16}),
               response=ResponseCapture(text="The sea is vast and deep, full of life and quiet motion.",
                                        finish_reasons=["stop"]))
    return ev.model_dump(mode="json")


async def produce(bootstrap: str, rate: float, duration: float) -> dict[str, Any]:
    """Open loop: event i is produced at t0 + i/rate with ts_end = its production time (ms)."""
    import asyncio

    import orjson
    from aiokafka import AIOKafkaProducer

    from schemas.topics import EVENTS_TOPIC

    tpl, n = template_event(), round(rate * duration)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    futs, lags = [], []
    try:
        t0, i = time.perf_counter() + 0.05, 0
        while i < n:
            now = time.perf_counter()
            due = min(n, int((now - t0) * rate) + 1)
            ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            while i < due:
                lags.append(now - (t0 + i / rate))
                ev = {**tpl, "event_id": f"d{i}", "request_id": f"d{i}", "sequence": i, "ts_start": ts, "ts_end": ts}
                futs.append(await producer.send(EVENTS_TOPIC, orjson.dumps(ev), key=b"bench"))
                i += 1
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        acked = await asyncio.gather(*futs, return_exceptions=True)
    finally:
        await producer.stop()
    lags.sort()
    return {"produced": n, "acked": sum(1 for a in acked if not isinstance(a, BaseException)),
            "send_lag_ms_p99": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 1) if lags else None,
            "elapsed_s": round(time.perf_counter() - t0, 2)}


def run_producer(bootstrap: str, rate: float, duration: float) -> dict[str, Any]:
    cmd = [PY, "-m", "bench.pipeline_lag", "--produce-only", bootstrap, "--rate", str(rate),
           "--duration", str(duration)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=False, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"producer failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- set-up
def write_config(tmp: Path, args: argparse.Namespace, broker: str, mock: int) -> tuple[Path, int, int]:
    import yaml

    gw_port, console = free_port(), free_port()
    worker: dict[str, Any] = {
        "pipelines": args.pipelines, "console_port": console,
        "batch": {"max_records": args.max_records, "max_wait_ms": args.max_wait_ms},
        "scorers": {"device": "cpu", **({"cpu_threads": args.scorer_threads} if args.scorer_threads else {})},
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
    }
    if args.scorer_process:
        worker["scorer_process"] = args.scorer_process
    if args.scorer_nice is not None:
        worker["scorer_nice"] = args.scorer_nice
    if args.fetch_max_wait_ms is not None:
        worker["fetch_max_wait_ms"] = args.fetch_max_wait_ms
    gateway: dict[str, Any] = {"host": "127.0.0.1", "port": gw_port}
    if args.emitter_batch_max is not None:
        gateway["emitter"] = {"batch_max": args.emitter_batch_max}
    cfg = {"gateway": gateway, "kafka": {"bootstrap_servers": broker},
           "models": {"bench-chat": {"deployments": [{"name": f"mock-{mock}", "model": "gpt-4o-mini",
                                                      "base_url": f"http://127.0.0.1:{mock}/v1"}]}},
           "tenants": {"default": {"capture": "full"}}, "worker": worker}
    path = tmp / "gatewatch.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, gw_port, console


def start_all(args: argparse.Namespace, procs: Procs, tmp: Path, res: dict[str, Any]) -> dict[str, Any]:
    broker = start_broker(procs, cpus(args, "tansu"))
    mock = free_port() if args.direct else start_mock(procs, cpus(args, "mock"))
    cfg, gw_port, console = write_config(tmp, args, broker, mock)
    w_home, g_home = tmp / "home-worker", tmp / "home-gateway"
    w_home.mkdir()
    g_home.mkdir()
    t0 = time.monotonic()
    worker = procs.start("worker", [PY, "-m", "gatewatch", "-c", str(cfg), "--log-level", "INFO", "worker"],
                         cpus(args, "worker"), {"GATEWATCH_HOME": str(w_home)})
    wbase = f"http://127.0.0.1:{console}"
    wait_http(wbase + "/healthz", 180, worker)
    log(f"worker console up in {time.monotonic() - t0:.1f}s: {http(wbase + '/healthz')[1].decode()[:300]}")
    gw, gbase, headers = None, f"http://127.0.0.1:{gw_port}", {}
    if not args.direct:
        target, _ = start_gateway(procs, "gateway", cfg, gw_port, g_home, cpus(args, "gateway"), chat_body())
        gw, headers = target.proc, target.headers
        log(f"gateway ready on {gbase}")
    res["setup"] = {"broker": broker, "mock": mock, "gateway": gbase, "console": wbase,
                    "worker_home": str(w_home), "config": str(cfg)}
    return {"worker": worker, "gateway": gw, "wbase": wbase, "gbase": gbase, "headers": headers,
            "w_home": w_home, "bootstrap": broker, "direct": args.direct}


def warm_up(ctx: dict[str, Any], pipelines: list[str], n: int = 50, timeout: float = 180.0) -> float:
    """n requests, then wait until every pipeline has consumed them (assignment done, models loaded)."""
    t0 = time.monotonic()
    if ctx["direct"]:
        run_producer(ctx["bootstrap"], n, 1.0)
    for _ in range(0 if ctx["direct"] else n):
        http(ctx["gbase"] + CHAT, chat_body(), ctx["headers"])
    while time.monotonic() - t0 < timeout:
        if ctx["worker"].poll() is not None:
            raise RuntimeError(f"worker exited with {ctx['worker'].returncode} (see worker.log)")
        ev = events_of(worker_metrics(ctx["wbase"]))
        if all(ev.get(p, 0) >= n for p in pipelines):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise TimeoutError(f"pipelines did not consume the warm-up within {timeout:.0f}s: {ev}")


def drain(ctx: dict[str, Any], pipelines: list[str], expect: float, timeout: float) -> dict[str, Any]:
    """Wait until the given pipelines have lag 0 and have consumed ``expect`` events (or timeout)."""
    t0 = time.monotonic()
    m: dict[str, dict[str, float]] = {}
    while time.monotonic() - t0 < timeout:
        m = worker_metrics(ctx["wbase"])
        lag, ev = lag_of(m), events_of(m)
        if all(lag.get(p, 1) == 0 and ev.get(p, 0) >= expect for p in pipelines):
            return {"drained": True, "after_load_s": round(time.monotonic() - t0, 1)}
        time.sleep(0.25)
    return {"drained": False, "after_load_s": round(time.monotonic() - t0, 1), "lag": lag_of(m),
            "events": events_of(m)}


# ----------------------------------------------------------------------------------------- run
def throughput(samples: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Per pipeline: events/s consumed between t0 and t1, lag at t1 and its peak."""
    inside = [s for s in samples if t0 <= s["t"] <= t1]
    if len(inside) < 2:
        return {}
    a, b = inside[0], inside[-1]
    out = {}
    for p in b["events"]:
        if "/" in p:
            continue
        out[p] = {"events_per_s": round((b["events"].get(p, 0) - a["events"].get(p, 0)) / (b["t"] - a["t"]), 1),
                  "lag_end": b["lag"].get(p), "lag_peak": max(s["lag"].get(p, 0) for s in inside)}
    return out


def cpu_by_process(procs: Procs) -> dict[str, float]:
    """CPU seconds so far per started process with its descendants; the worker's scorer child also apart."""
    started = dict(procs.items)
    out = {name: cpu_seconds(proc.pid) for name, proc in started.items()}
    if "worker" in started:
        out["worker's scorer child"] = out["worker"] - own_cpu_seconds(started["worker"].pid)
    return out


def run(args: argparse.Namespace, procs: Procs, tmp: Path, res: dict[str, Any]) -> None:
    ctx = start_all(args, procs, tmp, res)
    took = warm_up(ctx, args.pipelines)
    log(f"warm-up consumed by {args.pipelines} in {took:.1f}s")
    before = {} if args.direct else kafka_counters(ctx["gbase"])
    w_ev0 = events_of(worker_metrics(ctx["wbase"]))
    sampler = Sampler(ctx["wbase"])
    sampler.start()
    cpu0 = cpu_by_process(procs)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generator is a waited-for child
    res["load_avg_start"] = os.getloadavg()
    t_start = dt.datetime.now(dt.UTC)
    m0 = time.time()
    log(f"load: {args.rate:g}/s for {args.duration:g}s ({'straight to Kafka' if args.direct else '+1 s warm-up'}), "
        f"load average {res['load_avg_start']}")
    if args.direct:
        r = run_producer(ctx["bootstrap"], args.rate, args.duration)
    else:
        r = Client(cpus(args, "loadgen"), 10.0).load(ctx["gbase"] + CHAT, args.rate, args.duration, chat_body(),
                                            headers=ctx["headers"])
    m1 = time.time()
    t_end = dt.datetime.now(dt.UTC)
    loadgen_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["load_avg_end_of_load"] = os.getloadavg()
    cpu1 = cpu_by_process(procs)
    res["cpu_s_during_load"] = {name: round(cpu1[name] - cpu0.get(name, 0.0), 1) for name in cpu1}
    res["cpu_s_during_load"]["load generator"] = round(
        loadgen_cpu.ru_utime + loadgen_cpu.ru_stime - children0.ru_utime - children0.ru_stime, 1)
    res["cpu_s_during_load"]["wall_s"] = round(m1 - m0, 1)
    res["load"] = r
    log(f"load done: {r if args.direct else short(r)}")
    after = {} if args.direct else kafka_counters(ctx["gbase"])
    emitted = {k: after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("events_")}
    res["gateway_events"] = emitted
    produced = r["acked"] if args.direct else sum(
        v for k, v in emitted.items() if k.startswith("events_delivered")) or r["sent_total"]
    res["delivered"] = produced
    res["expected_events_total"] = None
    expect = {p: w_ev0.get(p, 0) + produced for p in args.pipelines}
    res["expected_events_total"] = expect
    wait_for = args.pipelines if args.wait_scorers else [p for p in args.pipelines if p == "archiver"] or args.pipelines
    log(f"gateway delivered {produced:g} events; draining {wait_for} (timeout {args.drain_timeout:g}s)")
    d = drain(ctx, wait_for, max(expect[p] for p in wait_for), args.drain_timeout)
    m2 = time.time()
    sampler.halt.set()
    sampler.join(5)
    final = worker_metrics(ctx["wbase"])
    res["drain"] = d
    res["throughput_during_load"] = throughput(sampler.samples, m0, m1)
    res["throughput_load_and_drain"] = throughput(sampler.samples, m0, m2)
    res["worker_final"] = {"events": events_of(final), "lag": lag_of(final),
                           "batch_seconds_mean": _mean(final, "gatewatch_consumer_batch_seconds"),
                           "batch_size_mean": _mean(final, "gatewatch_consumer_batch_size"),
                           "scorer_seconds_mean": _mean(final, "gatewatch_consumer_scorer_seconds")}
    res["lag_series"] = [{"t": round(s["t"] - m0, 1), "lag": s["lag"]} for s in sampler.samples]
    log(f"drain: {d}; stopping the worker (SIGTERM, graceful)")
    t = time.monotonic()
    procs.stop(ctx["worker"], timeout=90)
    res["worker_stop_s"] = round(time.monotonic() - t, 1)
    res["load_avg_end"] = os.getloadavg()
    log(f"worker stopped in {res['worker_stop_s']}s; querying the warehouse")
    res["window"] = [t_start.isoformat(), t_end.isoformat()]
    res["warehouse"] = query_warehouse(ctx["w_home"], t_start.replace(tzinfo=None),
                                       (t_end + dt.timedelta(seconds=15)).replace(tzinfo=None))


def _mean(m: dict[str, dict[str, float]], name: str) -> dict[str, float]:
    s, c = m.get(name + "_sum", {}), m.get(name + "_count", {})
    return {k: round(s[k] / c[k], 4) for k in s if c.get(k)}


# ----------------------------------------------------------------------------------------- report
def _q(d: dict[str, Any] | None) -> str:
    return " / ".join(f"{d[k]:,.0f}" for k in ("p50", "p90", "p99", "max")) if d else "-"


def report(res: dict[str, Any]) -> str:
    a = res["args"]
    lines = [f"Pipeline lag — {res['date']}, commit {res['commit']}, {res.get('machine', {}).get('cpu', '')}",
             f"rate {a['rate']:g}/s x {a['duration']:g}s, pipelines {','.join(a['pipelines'])}, "
             f"batch max_records {a['max_records']} max_wait_ms {a['max_wait_ms']}, "
             f"scorer_process {a.get('scorer_process') or 'auto (default)'}; load average "
             f"{_la(res.get('load_avg_start'))} at start, {_la(res.get('load_avg_end'))} at the end"]
    if "failed" in res or "interrupted" in res:
        lines.append(f"RUN DID NOT FINISH: {res.get('failed', 'interrupted')}")
    if "load" in res:
        evs = {k.removeprefix("events_"): int(v) for k, v in res.get("gateway_events", {}).items() if v}
        if a.get("direct"):
            lines.append(f"load: straight to Kafka (no gateway): {res['load']}")
        else:
            lines.append("load: " + short(res["load"]) + f"; gateway events (non-zero counters): {evs}")
        cpu = dict(res["cpu_s_during_load"])
        wall = cpu.pop("wall_s")
        lines.append(f"CPU s during the load ({wall} s wall, {os.cpu_count()} cores; a process includes its children): "
                     + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    wh = res.get("warehouse")
    if wh:
        lines += ["", *warehouse_lines(res, wh)]
    tp = res.get("throughput_during_load")
    if tp:
        lines += ["", *throughput_lines(res, tp, wh)]
    return "\n".join(lines)


def warehouse_lines(res: dict[str, Any], wh: dict[str, Any]) -> list[str]:
    """The lag table (archiver, then each scorer) and what the warehouse holds of the run's window."""
    ev = wh["events"]
    bs = res["worker_final"]["batch_seconds_mean"]
    rows = [["archiver: ingested_at - ts_end", f"{ev['events']:,} ({ev['rows']:,} rows)", _q(ev["lag_ms"]),
             bs.get("archiver", "-")]]
    rows += [[f"{scorer}: scored_at - ts", f"{s['events']:,}", _q(s["lag_ms"]), bs.get(scorer, "-")]
             for scorer, s in wh["scores"].items()]
    lines = md_table(["what (scored_at: write time)", "events", "p50 / p90 / p99 / max (ms)",
                      "mean batch s (score+write+commit)"], rows, right=(1, 3))
    ins = wh["archiver_inserts"]
    lines.append(f"archiver inserts in the window: {ins['count']} "
                 f"(avg {ins['avg_rows']} rows, max {ins['max_rows']})")
    t0 = dt.datetime.fromisoformat(res["window"][0]).timestamp()
    lines.append("archiver p99 by 5 s bucket of ts_end (s from load start: events, p99 ms): "
                 + ", ".join(f"{b - t0:+.0f}s: {n}, {p:,}" for b, n, p in wh["events_p99_by_5s"]))
    sent = res["load"].get("sent_total", res["load"].get("produced", 0))
    lines.append(f"requests sent {sent:,} (answered {res['load'].get('ok', '-')} in time), "
                 f"events delivered to Kafka {res.get('delivered', 0):,.0f}, events rows in the window "
                 f"{ev['events']:,}; scored events per scorer: "
                 + ", ".join(f"{k} {v['events']:,}" for k, v in wh["scores"].items()))
    return lines


def throughput_lines(res: dict[str, Any], tp: dict[str, Any], wh: dict[str, Any] | None) -> list[str]:
    """Per pipeline: consumed/s, lag gauge, how far behind at the end; then the drain and the target."""
    fin, exp = res["worker_final"]["events"], res.get("expected_events_total") or {}
    rows = [[p, f"{v['events_per_s']:,}", f"{v['lag_end'] or 0:,.0f} / {v['lag_peak']:,.0f}", f"{fin.get(p, 0):,.0f}",
             f"{exp.get(p, 0) - fin.get(p, 0):,.0f}"] for p, v in tp.items()]
    lines = md_table(["pipeline", "consumed/s during load", "lag gauge at end of load / peak", "consumed at the end",
                      "behind (delivered - consumed)"], rows, right=(1, 2, 3, 4))
    lines.append("(the lag gauge: messages not yet committed, refreshed about every second, also mid-batch)")
    lines.append(f"drain after the load: {res['drain']}; worker stop {res.get('worker_stop_s')} s")
    if wh and wh["events"]["lag_ms"]:
        p99 = wh["events"]["lag_ms"]["p99"]
        lines.append(f"target archiver p99 <= 2000 ms: {'met' if p99 <= 2000 else 'MISSED'} ({p99:,} ms)")
    return lines


def _la(v: Any) -> str:
    return "/".join(f"{x:.2f}" for x in v) if v else "?"


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gatewatch bench pipeline_lag", description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--pipelines", default="archiver,toxicity,factuality,drift")
    ap.add_argument("--max-wait-ms", type=int, default=1000, help="worker.batch.max_wait_ms (worker default 1000)")
    ap.add_argument("--max-records", type=int, default=500, help="worker.batch.max_records (worker default 500)")
    ap.add_argument("--drain-timeout", type=float, default=60.0, help="s to wait for the archiver after the load")
    ap.add_argument("--wait-scorers", action="store_true", help="also wait (same timeout) for the scorers")
    ap.add_argument("--scorer-process", choices=["auto", "inline", "child"], default=None,
                    help="worker.scorer_process (worker default auto: the scorers in a child process)")
    ap.add_argument("--scorer-nice", type=int, default=None, help="worker.scorer_nice (worker default 10)")
    ap.add_argument("--scorer-threads", type=int, default=None,
                    help="worker.scorers.cpu_threads (default: one per core)")
    ap.add_argument("--emitter-batch-max", type=int, default=None,
                    help="gateway.emitter.batch_max (gateway default 500)")
    ap.add_argument("--fetch-max-wait-ms", type=int, default=None,
                    help="worker.fetch_max_wait_ms (worker default 500)")
    ap.add_argument("--pin-gateway", action="store_true",
                    help="the gateway alone on the last core, everything else on the others (default: no pinning)")
    ap.add_argument("--direct", action="store_true",
                    help="no gateway: produce gateway-shaped events straight to Kafka at --rate (ts_end = send time)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--produce-only", metavar="BOOTSTRAP", help=argparse.SUPPRESS)  # the --direct child process
    args = ap.parse_args(argv)
    args.pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.produce_only:
        import asyncio

        print(json.dumps(asyncio.run(produce(args.produce_only, args.rate, args.duration))))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="gatewatch-lag-"))
    procs = Procs(tmp)
    started, res = new_results(args, commit=git_commit())

    code = run_guarded(lambda: run(args, procs, tmp, res), procs, tmp, res)
    path = write_results(args.out_dir, "pipeline_lag", started, res)
    print(report(res))
    log(f"results in {path} ({res['elapsed_s']} s)")
    return code

if __name__ == "__main__":
    raise SystemExit(main())
