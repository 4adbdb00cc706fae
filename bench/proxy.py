"""Gateway proxy benchmark: Gatewatch vs the LiteLLM proxy, both in front of the same mock upstream.

    gatewatch bench gateway [--quick] [--no-litellm] [--profile] [...]     (or: python -m bench.proxy ...)

What it starts (and stops again, also on Ctrl-C): a Tansu broker, two mock upstreams (instant replies;
paced streams), the gateway with its real configuration (auth by API key, events to Kafka), then the
LiteLLM proxy (own venv under bench/.venvs/, created by bench/litellm_setup.sh when missing). The proxy
under test runs pinned to one core (--proxy-cpu, default 0); the mocks, the broker and the load generator
share the other (--client-cpu, default 1), so the mock answers on the same core as the generator.

What it measures, with the open-loop generator of bench/loadgen.py (latency from the scheduled send time):
  1. the generator's own ceiling against the mock (and wrk's closed-loop peak against the mock);
  2. fixed rates: direct-to-mock then through the proxy, back to back; added = proxy pXX - direct pXX;
  3. sustained rate: the highest ladder rate with p99 <= --p99-bound-ms, no errors, achieved >= 97%;
     plus wrk's closed-loop peak through the proxy;
  4. streaming: time to the first content chunk, through the proxy vs direct;
  5. memory: proxy RSS at start, before and after --mem-requests requests, and after an idle pause.
Figures go to stdout as tables, progress to stderr, everything to bench/results/gateway-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    PROMPT,
    RESULTS_DIR,
    Client,
    Procs,
    Target,
    free_port,
    http,
    kafka_counters,
    log,
    measure,
    new_results,
    run_guarded,
    short,
    source,
    start_broker,
    start_gateway,
    start_litellm,
    start_mock,
    write_results,
)
from bench.proxy_report import report
from bench.pyspy import ensure_pyspy, top_frames


def bodies(prompt: str) -> dict[str, str]:
    """Request bodies: through a proxy (aliases bench-chat / bench-stream) and straight to the mock."""
    msgs = [{"role": "user", "content": prompt}]
    chat = json.dumps({"model": "bench-chat", "messages": msgs, "max_tokens": 16}, separators=(",", ":"))
    stream = json.dumps({"model": "bench-stream", "messages": msgs, "max_tokens": 16, "stream": True},
                        separators=(",", ":"))
    return {"chat": chat, "stream": stream, "mock_chat": chat.replace("bench-chat", "gpt-4o-mini"),
            "mock_stream": stream.replace("bench-stream", "gpt-4o-mini")}


PACED_MOCK = ["--ttft-ms", "10", "--tokens-per-s", "400"]  # streams: first token after 10 ms, then 2.5 ms apart


def passes(r: dict[str, Any], bound_ms: float) -> bool:
    p99 = r["latency_ms"]["p99"]
    return r["errors"] == 0 and r["achieved_rps"] >= 0.97 * r["offered_rps"] and p99 is not None and p99 <= bound_ms


def added(proxy: dict[str, Any], direct: dict[str, Any], key: str = "latency_ms") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in ("p50", "p95", "p99"):
        a, b = proxy[key][q], direct[key][q]
        out[q] = None if a is None or b is None else round(a - b, 3)
    return out



# ----------------------------------------------------------------------------------------- phases
class Bench:
    def __init__(self, args: argparse.Namespace, client: Client, direct: Target) -> None:
        self.args, self.client, self.direct = args, client, direct

    def run(self, t: Target, rate: float, duration: float, *, stream: bool = False, warmup: float = 1.0,
            timeout: float | None = None) -> dict[str, Any]:
        return measure(self.client, t, rate, duration, stream=stream, warmup=warmup, timeout=timeout)

    def recover(self, t: Target, limit: float = 90.0) -> float:
        """After an overload: wait (bounded) until one request is answered in under 0.5 s again."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            s = time.monotonic()
            status, _ = http(t.url, t.body, t.headers, timeout=5.0)
            if status == 200 and time.monotonic() - s < 0.5:
                break
            time.sleep(1.0)
        return round(time.monotonic() - t0, 1)

    def fixed(self, t: Target, rates: list[float], *, stream: bool = False) -> list[dict[str, Any]]:
        """Direct then through ``t`` at each rate, back to back. A proxy that fails a rate gets the next
        (higher) rates for a shorter time, and time to recover after each."""
        key = "ttft_ms" if stream else "latency_ms"
        duration, rows, failed = self.args.stream_duration if stream else self.args.duration, [], False
        collapsed: list[float] = []  # rates at which the proxy answered under half of the offered rate
        for rate in rates:
            if len(collapsed) >= 2:
                log(f"  {t.name} @{rate:g}: skipped (answered under half the offered rate at {collapsed})")
                rows.append({"rate": rate, "skipped": f"under half the offered rate answered at {collapsed} rps"})
                continue
            d = self.run(self.direct, rate, duration, stream=stream)
            log(f"  direct  @{rate:g}{' stream' if stream else ''}: {short(d, key)}")
            dur = min(duration, 5.0) if failed else duration
            p = self.run(t, rate, dur, stream=stream, timeout=5.0 if failed else None)
            log(f"  {t.name} @{rate:g}{' stream' if stream else ''}: {short(p, key)}")
            row = {"rate": rate, "direct": d, "proxy": p, "added": added(p, d, key),
                   "ok": passes(p, self.args.p99_bound_ms)}
            if not row["ok"]:
                failed = True
                row["recovery_s"] = self.recover(t)
            if p["achieved_rps"] < 0.5 * rate:
                collapsed.append(rate)
            rows.append(row)
        return rows

    def ladder(self, t: Target, rates: list[float]) -> dict[str, Any]:
        """Highest rate that passes (no errors, achieved >= 97%, p99 within the bound), for the strict bound
        (--p99-bound-ms) and the loose one (--loose-bound-ms); climbs until two loose failures in a row."""
        strict, loose = self.args.p99_bound_ms, self.args.loose_bound_ms
        steps: list[dict[str, Any]] = []
        best: dict[float, float | None] = {strict: None, loose: None}
        misses = 0
        for rate in rates:
            r = self.run(t, rate, self.args.step_duration, timeout=5.0)
            ok = {b: passes(r, b) for b in (strict, loose)}
            verdict = "pass" if ok[strict] else (f"pass<={loose:g}ms" if ok[loose] else "FAIL")
            log(f"  ladder {t.name} @{rate:g}: {verdict} {short(r)}")
            steps.append({"rate": rate, "pass": ok[strict], "pass_loose": ok[loose], "result": r})
            for b in (strict, loose):
                if ok[b]:
                    best[b] = rate
            if ok[loose]:
                misses = 0
                continue
            misses += 1
            if t is not self.direct:
                self.recover(t)
            if misses >= 2:
                break
        return {"sustained_rps": best[strict], "p99_bound_ms": strict, "sustained_loose_rps": best[loose],
                "loose_bound_ms": loose, "steps": steps}

    def memory(self, t: Target, total: int, rate: float, chunks: int = 10) -> dict[str, Any]:
        per = max(1, total // chunks)
        out: dict[str, Any] = {"rate": rate, "requests": per * chunks, "rss_before_mb": t.rss(), "series": []}
        errors = 0
        for i in range(chunks):
            r = self.run(t, rate, per / rate, warmup=0.0, timeout=5.0)
            errors += r["errors"]
            out["series"].append({"after": per * (i + 1), "rss_mb": t.rss(), "p99_ms": r["latency_ms"]["p99"],
                                  "achieved_rps": r["achieved_rps"], "errors": r["errors"]})
            log(f"  memory {t.name}: {per * (i + 1)}/{per * chunks} requests, RSS {t.rss()} MiB, {short(r)}")
        out["rss_after_mb"] = t.rss()
        cpu0 = t.cpu_s()
        time.sleep(self.args.idle_s)
        out["idle_cpu_pct"] = round(100 * (t.cpu_s() - cpu0) / self.args.idle_s, 1)  # background work
        out["rss_idle_mb"] = t.rss()
        out["errors"] = errors
        s = out["series"]
        out["growth_total_mb"] = round(out["rss_after_mb"] - out["rss_before_mb"], 1)
        out["growth_after_first_chunk_mb"] = round(s[-1]["rss_mb"] - s[0]["rss_mb"], 1)
        return out

    def proxy_suite(self, t: Target, *, rates: list[float], ladder: list[float], stream_rates: list[float],
                    mem_requests: int, mem_rate: float | None) -> dict[str, Any]:
        res: dict[str, Any] = {"rss_start_mb": t.rss()}
        log(f"{t.name}: fixed rates {rates}")
        res["fixed"] = self.fixed(t, rates)
        log(f"{t.name}: streaming TTFT at {stream_rates}")
        res["stream"] = self.fixed(t, stream_rates, stream=True)
        log(f"{t.name}: sustained-rate ladder {ladder}")
        res["ladder"] = self.ladder(t, ladder)
        if not self.args.no_wrk:
            log(f"{t.name}: wrk closed-loop peak ({self.args.wrk_duration:g}s)")
            res["wrk"] = self.client.wrk(t.url, t.body, t.headers, self.args.wrk_duration)
            log(f"  wrk {t.name}: {res['wrk']}")
            self.recover(t)
        if mem_requests and mem_rate:
            mem_rate = round(min(mem_rate, 0.8 * safe_rate(res)))  # below saturation: this phase is about memory
            if mem_requests > mem_rate * self.args.mem_max_s:
                log(f"{t.name}: {mem_requests} requests at {mem_rate:g} rps would take over {self.args.mem_max_s:g}s")
                mem_requests = int(mem_rate * self.args.mem_max_s)
            log(f"{t.name}: memory over {mem_requests} requests at {mem_rate:g} rps")
            res["memory"] = self.memory(t, mem_requests, mem_rate)
        res["rss_end_mb"] = t.rss()
        return res

    def profile(self, t: Target, rate: float, seconds: float) -> dict[str, Any]:
        """py-spy the proxy while it serves ``rate``; top functions by own and by inclusive samples."""
        pyspy = ensure_pyspy()
        self.args.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.args.out_dir / f"gatewatch-pyspy-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        spy = subprocess.Popen(["taskset", "-c", str(self.client.cpu), str(pyspy), "record", "--pid",
                                str(t.proc.pid), "--duration", str(int(seconds)), "--rate", "250", "--nonblocking",
                                "--format", "raw", "--output", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        load = self.run(t, rate, seconds - 2, warmup=0.5)
        spy.wait(timeout=seconds + 30)
        return {"rate": rate, "load": load, "stacks": str(out), **top_frames(out)}


def safe_rate(res: dict[str, Any]) -> float:
    """A rate the proxy keeps up with: the highest of its sustained rates, the fixed and ladder rates it
    answered in full (no errors, achieved >= 97%, whatever the latency) and 70% of its wrk peak."""
    runs = [(r["rate"], r["proxy"]) for r in res["fixed"] if "proxy" in r]
    runs += [(st["rate"], st["result"]) for st in res["ladder"]["steps"]]
    kept = [rate for rate, r in runs if not r["errors"] and r["achieved_rps"] >= 0.97 * rate]
    return max([10.0, *kept, 0.7 * float(res.get("wrk", {}).get("rps", 0.0))])


# ----------------------------------------------------------------------------------------- setup
def start_mocks(procs: Procs, cpu: int | str) -> tuple[int, int]:
    """The mock (instant replies) and the paced mock (streams); their ports."""
    return start_mock(procs, cpu), start_mock(procs, cpu, "mock-paced", PACED_MOCK)


def models_yaml(mock: int, paced: int) -> dict[str, Any]:
    def dep(port: int) -> dict[str, Any]:
        return {"deployments": [{"name": f"mock-{port}", "base_url": f"http://127.0.0.1:{port}/v1",
                                 "model": "gpt-4o-mini"}]}

    return {"bench-chat": dep(mock), "bench-stream": dep(paced)}


NO_PII_POLICY = {"pii": {"input": {}, "events": {}}}  # governance policy without PII redaction


def start_gatewatch(procs: Procs, tmp: Path, cpu: int, broker: str, mock: int, paced: int,
                    body: dict[str, str], *, name: str = "gatewatch", policy: dict[str, Any] | None = None) -> Target:
    """The gateway with its real configuration (API keys, Kafka events, default governance policy, or
    ``policy`` as the policy directory's default.yaml)."""
    import yaml

    port, home = free_port(), tmp / f"home-{name}"
    home.mkdir(exist_ok=True)
    if policy is not None:
        (home / "policies").mkdir(exist_ok=True)
        (home / "policies" / "default.yaml").write_text(yaml.safe_dump(policy))
    cfg = {"gateway": {"host": "127.0.0.1", "port": port}, "kafka": {"bootstrap_servers": broker},
           "models": models_yaml(mock, paced), "tenants": {"default": {"capture": "full"}}}
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    target, took = start_gateway(procs, name, cfg_path, port, home, cpu, body["chat"], body["stream"])
    log(f"{name} ready on {target.base} in {took:.1f}s (pid {target.proc.pid}, core {cpu})")  # type: ignore[union-attr]
    return target


def start_peer(procs: Procs, tmp: Path, cpu: int, mock: int, paced: int,
               body: dict[str, str]) -> tuple[Target, float, str]:
    """The LiteLLM proxy in front of the same two mocks, under the same aliases."""
    target, took, version = start_litellm(procs, tmp, cpu, {"bench-chat": mock, "bench-stream": paced},
                                          body["chat"], body["stream"])
    log(f"litellm {version} ready on {target.base} in {took:.1f}s (pid {target.proc.pid}, core {cpu})")  # type: ignore[union-attr]
    return target, took, version


# ----------------------------------------------------------------------------------------- main
def floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gatewatch bench gateway", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short steps (about 5 minutes with LiteLLM)")
    ap.add_argument("--rates", type=floats, default=[50, 200, 500, 1000], help="fixed rates (rps)")
    ap.add_argument("--litellm-rates", type=floats, default=[25, 50, 200, 500, 1000])
    ap.add_argument("--ladder", type=floats, default=[200, 300, 400, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000])
    ap.add_argument("--litellm-ladder", type=floats, default=[10, 25, 40, 50, 60, 75, 100])
    ap.add_argument("--generator-ladder", type=floats, default=[1000, 2000, 3000, 4000, 6000])
    ap.add_argument("--stream-rates", type=floats, default=[20, 200], help="LiteLLM runs the first only")
    ap.add_argument("--p99-bound-ms", type=float, default=50.0, help="sustained rate: p99 bound")
    ap.add_argument("--loose-bound-ms", type=float, default=500.0, help="second, looser bound (LiteLLM's scale)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per fixed rate (default 10, quick 4)")
    ap.add_argument("--mem-requests", type=int, default=None, help="default 100000, quick 10000")
    ap.add_argument("--mem-rate", type=float, default=1500.0, help="capped at 80%% of a rate the proxy keeps up with")
    ap.add_argument("--mem-max-s", type=float, default=None,
                    help="fewer requests if they would take longer (default 150, quick 30)")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--also-no-pii", action="store_true",
                    help="also run the gateway with a policy that turns PII redaction off (fixed rates, ladder)")
    ap.add_argument("--no-gatewatch", action="store_true", help="only LiteLLM (for checking the comparison side)")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--profile", action="store_true", help="py-spy the gateway at --profile-rate afterwards")
    ap.add_argument("--profile-rate", type=float, default=500.0)
    ap.add_argument("--proxy-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--ref", help="measure the gateway and mock of this git revision (exported with git archive) "
                    "instead of the working tree, e.g. HEAD")
    ap.add_argument("--prompt", default=PROMPT, help="the user message of every request")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout from the scheduled time")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    q = args.quick
    args.duration = args.duration or (4.0 if q else 10.0)
    args.stream_duration = args.duration
    args.step_duration = 3.0 if q else 5.0
    args.wrk_duration = 5.0 if q else 10.0
    args.idle_s = 5.0 if q else 10.0
    args.mem_max_s = args.mem_max_s or (30.0 if q else 150.0)
    args.mem_requests = args.mem_requests if args.mem_requests is not None else (10_000 if q else 100_000)
    return args


def run_all(args: argparse.Namespace, procs: Procs, tmp: Path, res: dict[str, Any]) -> None:
    client = Client(args.client_cpu, args.timeout)
    broker = start_broker(procs, args.client_cpu)
    mock, paced = start_mocks(procs, args.client_cpu)
    body = bodies(args.prompt)
    direct = Target("direct", f"http://127.0.0.1:{mock}", {}, body["mock_chat"], body["mock_stream"],
                    stream_base=f"http://127.0.0.1:{paced}")
    bench = Bench(args, client, direct)
    log(f"broker {broker}, mock :{mock}, paced mock :{paced}; generator ceiling vs the mock")
    res["generator"] = {"ladder": bench.ladder(direct, args.generator_ladder)}
    if not args.no_wrk:
        res["generator"]["wrk"] = client.wrk(direct.url, direct.body, {}, args.wrk_duration)
        log(f"  wrk direct: {res['generator']['wrk']}")
    gen = res["generator"]["ladder"]
    ceiling = gen["sustained_rps"] or gen["sustained_loose_rps"] or max(args.ladder)
    run_proxies(args, bench, procs, tmp, res, broker, mock, paced, body,
                ladder=[r for r in args.ladder if r <= ceiling] or args.ladder[:1])


def run_proxies(args: argparse.Namespace, bench: Bench, procs: Procs, tmp: Path, res: dict[str, Any], broker: str,
                mock: int, paced: int, body: dict[str, str], *, ladder: list[float]) -> None:
    """Each proxy in turn, alone on the proxy core: the gateway, optionally without PII, then LiteLLM."""
    if not args.no_gatewatch:
        with recorded(res, "gatewatch", tmp):
            gw = start_gatewatch(procs, tmp, args.proxy_cpu, broker, mock, paced, body)
            res["gatewatch"] = bench.proxy_suite(gw, rates=args.rates, ladder=ladder, stream_rates=args.stream_rates,
                                                 mem_requests=args.mem_requests, mem_rate=args.mem_rate)
            res["kafka"] = kafka_counters(gw.base)
            if args.profile:
                log(f"profiling gatewatch at {args.profile_rate:g} rps")
                res["profile"] = bench.profile(gw, args.profile_rate, 12.0 if args.quick else 20.0)
            procs.stop(gw.proc)  # type: ignore[arg-type]
    if args.also_no_pii:
        with recorded(res, "gatewatch-nopii", tmp):
            gw = start_gatewatch(procs, tmp, args.proxy_cpu, broker, mock, paced, body,
                                 name="gatewatch-nopii", policy=NO_PII_POLICY)
            res["gatewatch-nopii"] = bench.proxy_suite(gw, rates=args.rates, ladder=ladder,
                                                       stream_rates=args.stream_rates[-1:], mem_requests=0,
                                                       mem_rate=None)
            procs.stop(gw.proc)  # type: ignore[arg-type]
    if not args.no_litellm:
        with recorded(res, "litellm", tmp):
            ll, took, version = start_peer(procs, tmp, args.proxy_cpu, mock, paced, body)
            res["litellm_version"], res["litellm_startup_s"] = version, round(took, 1)
            res["litellm"] = bench.proxy_suite(ll, rates=args.litellm_rates, ladder=args.litellm_ladder,
                                               stream_rates=args.stream_rates[:1], mem_requests=0, mem_rate=None)
            procs.stop(ll.proc)  # type: ignore[arg-type]


@contextlib.contextmanager
def recorded(res: dict[str, Any], name: str, tmp: Path) -> Iterator[None]:
    """A proxy that fails to start or breaks mid-run is reported as failed; the run goes on."""
    try:
        yield
    except (RuntimeError, TimeoutError, subprocess.SubprocessError, OSError, ValueError) as exc:
        log(f"{name} failed: {exc} (logs in {tmp})")
        res.setdefault(name, {})["failed"] = str(exc)[-2000:]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2 and args.proxy_cpu != args.client_cpu:
        log("warning: fewer than 2 usable cores; proxy and client will share one")
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {args.client_cpu})  # children (broker, mocks) inherit the client core
    tmp = Path(tempfile.mkdtemp(prefix="gatewatch-bench-"))
    src, code_info = source(args.ref, tmp)
    procs = Procs(tmp, src)
    started, res = new_results(args, code=code_info)

    code = run_guarded(lambda: run_all(args, procs, tmp, res), procs, tmp, res)
    res["machine"]["load_end"] = os.getloadavg()
    path = write_results(args.out_dir, "gateway", started, res)
    print(report(res))
    log(f"results in {path} ({res['elapsed_s']} s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
