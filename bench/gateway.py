"""Gateway proxy benchmark: Gatewatch vs the LiteLLM proxy, both in front of the same mock upstream.

    gatewatch bench gateway [--quick] [--no-litellm] [--profile] [...]     (or: python bench/gateway.py ...)

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
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from gatewatch.procs import TansuBroker, free_port, wait_port  # noqa: E402

PY = sys.executable
LITELLM_VENV = HERE / ".venvs" / "litellm"
CHAT = "/v1/chat/completions"
PROMPT = "Write one short sentence about the sea."


def bodies(prompt: str) -> dict[str, str]:
    """Request bodies: through a proxy (aliases bench-chat / bench-stream) and straight to the mock."""
    msgs = [{"role": "user", "content": prompt}]
    chat = json.dumps({"model": "bench-chat", "messages": msgs, "max_tokens": 16}, separators=(",", ":"))
    stream = json.dumps({"model": "bench-stream", "messages": msgs, "max_tokens": 16, "stream": True},
                        separators=(",", ":"))
    return {"chat": chat, "stream": stream, "mock_chat": chat.replace("bench-chat", "gpt-4o-mini"),
            "mock_stream": stream.replace("bench-stream", "gpt-4o-mini")}


PACED_MOCK = ["--ttft-ms", "10", "--tokens-per-s", "400"]  # streams: first token after 10 ms, then 2.5 ms apart


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- processes
class Procs:
    """Children started by the benchmark; ``stop_all`` ends them (their process groups) in reverse order."""

    def __init__(self, logdir: Path, src: Path = ROOT) -> None:
        self.logdir = logdir
        self.src = src  # where project children (mocks, gateway) import gatewatch/gateway from
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []

    def project_env(self) -> tuple[Path, dict[str, str | None]]:
        return self.src, ({"PYTHONPATH": str(self.src)} if self.src != ROOT else {})

    def start(self, name: str, cmd: list[str], cpu: int, env: dict[str, str | None] | None = None,
              *, project: bool = True) -> subprocess.Popen[bytes]:
        """Start ``cmd`` pinned to ``cpu``, in its own session; ``env`` values of None unset a variable."""
        cwd, extra = self.project_env() if project else (ROOT, {})
        full = {k: v for k, v in {**os.environ, **extra, **(env or {})}.items() if v is not None}
        out = open(self.logdir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=full, cwd=cwd)
        finally:
            out.close()
        self.items.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.items = [(n, p) for n, p in self.items if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.items)):
            self.stop(proc)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (MiB)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return round(total / 1024, 1)


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` alone (all its threads, none of its children); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants (children still running)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += own_cpu_seconds(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def http(url: str, body: str | None = None, headers: dict[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body.encode() if body else None, headers=headers or {})
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], body: str | None = None,
              headers: dict[str, str] | None = None) -> float:
    """Poll until ``url`` answers 200; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} (see its log)")
        if http(url, body, headers, timeout=2.0)[0] == 200:
            return time.monotonic() - t0
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")


# ----------------------------------------------------------------------------------------- load
class Client:
    """Runs bench/loadgen.py and wrk on the client core."""

    def __init__(self, cpu: int, timeout: float) -> None:
        self.cpu = cpu
        self.timeout = timeout

    def load(self, url: str, rate: float, duration: float, body: str, *, headers: dict[str, str] | None = None,
             stream: bool = False, warmup: float = 1.0, timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout or self.timeout
        cmd = ["taskset", "-c", str(self.cpu), PY, str(HERE / "loadgen.py"), "--url", url, "--rate", str(rate),
               "--duration", str(duration), "--warmup", str(warmup), "--body", body, "--timeout", str(timeout)]
        for k, v in (headers or {}).items():
            cmd += ["--header", f"{k}: {v}"]
        if stream:
            cmd.append("--stream")
        res = subprocess.run(cmd, capture_output=True, timeout=warmup + duration + timeout + 60, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"loadgen failed: {res.stderr.decode()[-2000:]}")
        return json.loads(res.stdout)

    def wrk(self, url: str, body: str, headers: dict[str, str], duration: float, conns: int = 32) -> dict[str, Any]:
        if not shutil.which("wrk"):
            return {"skipped": "wrk not installed"}
        lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}",
                 'wrk.headers["Content-Type"] = "application/json"']
        lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        try:
            cmd = ["taskset", "-c", str(self.cpu), "wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--timeout", "5s",
                   "--latency", "-s", f.name, url]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False).stdout
        finally:
            os.unlink(f.name)
        return parse_wrk(out, conns)


def parse_wrk(out: str, conns: int) -> dict[str, Any]:
    def grab(pattern: str) -> str | None:
        m = re.search(pattern, out)
        return m.group(1) if m else None

    non2xx = grab(r"Non-2xx or 3xx responses: (\d+)")
    socket_errors = grab(r"Socket errors: (.*)")
    return {"rps": float(grab(r"Requests/sec:\s+([\d.]+)") or 0), "connections": conns,
            "p50": grab(r"\s50%\s+(\S+)"), "p99": grab(r"\s99%\s+(\S+)"),
            "non_2xx": int(non2xx or 0), "socket_errors": socket_errors}


def passes(r: dict[str, Any], bound_ms: float) -> bool:
    p99 = r["latency_ms"]["p99"]
    return r["errors"] == 0 and r["achieved_rps"] >= 0.97 * r["offered_rps"] and p99 is not None and p99 <= bound_ms


def added(proxy: dict[str, Any], direct: dict[str, Any], key: str = "latency_ms") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in ("p50", "p95", "p99"):
        a, b = proxy[key][q], direct[key][q]
        out[q] = None if a is None or b is None else round(a - b, 3)
    return out


def short(r: dict[str, Any], key: str = "latency_ms") -> str:
    pc = r[key]
    errs = f" errors={r['error_kinds']}" if r["errors"] else ""
    return (f"achieved {r['achieved_rps']}/{r['offered_rps']:g} rps, "
            f"p50/p95/p99 {pc['p50']}/{pc['p95']}/{pc['p99']} ms, send-lag p99 {r['send_lag_ms']['p99']} ms"
            + (f", proxy CPU {r['proxy_cpu_ms_per_req']} ms/req" if "proxy_cpu_ms_per_req" in r else "") + errs)


# ----------------------------------------------------------------------------------------- phases
class Target:
    """Something to send load to: the mock itself (``direct``) or a proxy in front of it."""

    def __init__(self, name: str, base: str, headers: dict[str, str], body: str, stream_body: str,
                 stream_base: str | None = None, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.name, self.base, self.headers, self.body, self.stream_body = name, base, headers, body, stream_body
        self.stream_base = stream_base or base
        self.proc = proc

    @property
    def url(self) -> str:
        return self.base + CHAT

    @property
    def stream_url(self) -> str:
        return self.stream_base + CHAT

    def rss(self) -> float | None:
        return rss_mb(self.proc.pid) if self.proc else None

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, client: Client, direct: Target) -> None:
        self.args, self.client, self.direct = args, client, direct

    def run(self, t: Target, rate: float, duration: float, *, stream: bool = False, warmup: float = 1.0,
            timeout: float | None = None) -> dict[str, Any]:
        body, url = (t.stream_body, t.stream_url) if stream else (t.body, t.url)
        cpu0 = t.cpu_s()
        r = self.client.load(url, rate, duration, body, headers=t.headers, stream=stream, warmup=warmup,
                             timeout=timeout)
        if t.proc and r["sent_total"]:  # the proxy's own CPU time (user + system) per request sent
            r["proxy_cpu_ms_per_req"] = round((t.cpu_s() - cpu0) * 1000 / r["sent_total"], 3)
        return r

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


def ensure_pyspy() -> Path:
    venv = HERE / ".venvs" / "tools"
    exe = venv / "bin" / "py-spy"
    if not exe.exists():
        log("installing py-spy into bench/.venvs/tools")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "py-spy"], check=True)
    return exe


def _module(frame: str) -> str:
    """'f (aiohttp/client.py:12)' -> 'aiohttp'; 'f (gateway/chain/emit.py:3)' -> 'gateway/chain/emit.py'."""
    m = re.search(r"\(([^)]*?)(?::\d+)?\)$", frame)
    path = m.group(1) if m else frame
    path = path.split("site-packages/", 1)[-1]
    for root in ("gateway/", "gatewatch/", "schemas/"):
        if path.startswith(root) or f"/{root}" in path:
            return root + path.split(root, 1)[1]
    return path.lstrip("/").split("/")[0].removesuffix(".py")


IDLE_FRAMES = ("_worker (concurrent/futures/thread.py:81)", "wait (threading.py:", "get (queue.py:")


def top_frames(path: Path, n: int = 15) -> dict[str, Any]:
    """Summarise py-spy raw stacks (idle excluded by py-spy): own samples by innermost frame and by module.
    Own time in ``Runner.run`` is the event loop's C code (uvloop: socket syscalls, transports, timers) plus
    the cyclic GC, which py-spy without --native cannot see into."""
    own: dict[str, int] = {}
    mods: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frame = stack.split(";")[-1]
        if any(w in frame for w in IDLE_FRAMES):  # a pool thread waiting for work (py-spy --nonblocking
            continue                               # cannot always tell it is idle)
        total += c
        leaf = re.sub(r"\((?:/[^)]*/site-packages/|/[^)]*/(?=(?:gateway|gatewatch|schemas)/))", "(", frame)
        own[leaf] = own.get(leaf, 0) + c
        mod = "event loop (C) + GC" if "Runner.run" in leaf else _module(frame)
        mods[mod] = mods.get(mod, 0) + c

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "top_self_pct": top(own), "by_module_pct": top(mods)} if total else {"samples": 0}


# ----------------------------------------------------------------------------------------- setup
def start_mocks(procs: Procs, cpu: int) -> tuple[int, int]:
    ports = free_port(), free_port()
    for name, port, extra in (("mock", ports[0], []), ("mock-paced", ports[1], PACED_MOCK)):
        proc = procs.start(name, [PY, "-m", "gatewatch", "--log-level", "WARNING", "mock-upstream", "--port",
                                  str(port), "--record-last", "0", *extra], cpu)
        wait_port("127.0.0.1", port, 30, proc)
    return ports


def models_yaml(mock: int, paced: int) -> dict[str, Any]:
    def dep(port: int) -> dict[str, Any]:
        return {"deployments": [{"name": f"mock-{port}", "base_url": f"http://127.0.0.1:{port}/v1",
                                 "model": "gpt-4o-mini"}]}

    return {"bench-chat": dep(mock), "bench-stream": dep(paced)}


PROXIES = ("gatewatch", "gatewatch-nopii", "litellm")
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
    env = {"GATEWATCH_HOME": str(home)}
    cwd, extra = procs.project_env()
    keys = subprocess.run([PY, "-m", "gatewatch", "-c", str(cfg_path), "keys", "create", "--tenant", "bench"],
                          capture_output=True, text=True, cwd=cwd, env={**os.environ, **extra, **env},
                          timeout=60, check=False)
    if keys.returncode != 0:
        raise RuntimeError(f"gatewatch keys create failed: {keys.stderr[-2000:]}")
    secret = keys.stdout.split()[0]
    proc = procs.start(name, [PY, "-m", "gatewatch", "-c", str(cfg_path), "--log-level", "WARNING", "gateway"],
                       cpu, env)
    base = f"http://127.0.0.1:{port}"
    took = wait_http(base + "/readyz", 60, proc)
    headers = {"Authorization": f"Bearer {secret}"}
    wait_http(base + CHAT, 30, proc, body["chat"], headers)
    log(f"{name} ready on {base} in {took:.1f}s (pid {proc.pid}, core {cpu})")
    return Target(name, base, headers, body["chat"], body["stream"], proc=proc)


def start_litellm(procs: Procs, tmp: Path, cpu: int, mock: int, paced: int,
                  body: dict[str, str]) -> tuple[Target, float, str]:
    import yaml

    subprocess.run(["bash", str(HERE / "litellm_setup.sh")], check=True, timeout=1800)
    version = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                              "from importlib.metadata import version; print(version('litellm'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    port, key = free_port(), "sk-bench-master"
    model_list = [{"model_name": alias, "litellm_params": {"model": "openai/gpt-4o-mini",
                                                           "api_base": f"http://127.0.0.1:{p}/v1",
                                                           "api_key": "sk-mock"}}
                  for alias, p in (("bench-chat", mock), ("bench-stream", paced))]
    cfg = {"model_list": model_list, "litellm_settings": {"telemetry": False},
           "general_settings": {"master_key": key}}
    cfg_path = tmp / "litellm.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env: dict[str, str | None] = {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                  "DATABASE_URL": None, "REDIS_HOST": None, "REDIS_URL": None}
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(cfg_path), "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", "1"]
    t0 = time.monotonic()
    proc = procs.start("litellm", cmd, cpu, env, project=False)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    wait_http(base + "/health/liveliness", 180, proc)
    wait_http(base + CHAT, 60, proc, body["chat"], headers)
    took = time.monotonic() - t0
    log(f"litellm {version} ready on {base} in {took:.1f}s (pid {proc.pid}, core {cpu})")
    return Target("litellm", base, headers, body["chat"], body["stream"], proc=proc), took, version


def kafka_counters(base: str) -> dict[str, float]:
    status, text = http(base + "/metrics")
    out: dict[str, float] = {}
    if status != 200:
        return out
    for line in text.decode().splitlines():
        m = re.match(r"(gatewatch_emitter_events_\w+?|gatewatch_requests)_total(\{[^}]*\})? ([\d.e+]+)$", line)
        if m:
            name = m.group(1).replace("gatewatch_emitter_events_", "events_") + (m.group(2) or "")
            out[name] = out.get(name, 0) + float(m.group(3))
    return out


def source(ref: str | None, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The code under test: this working tree, or ``ref`` exported with ``git archive`` into ``tmp``."""
    git = ["git", "-C", str(ROOT)]
    if ref is None:
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "gateway", "gatewatch", "schemas"],
                               capture_output=True, text=True, check=False).stdout.split("\n")
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
        return ROOT, {"tree": "working tree", "commit": commit, "dirty": [d for d in dirty if d.strip()]}
    commit = subprocess.run([*git, "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    src = tmp / "src"
    src.mkdir()
    archive = subprocess.Popen([*git, "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
    archive.wait()
    return src, {"tree": f"git archive {ref}", "commit": commit, "dirty": []}


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    import aiohttp

    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2**20, 1), "os": platform.platform(),
            "python": platform.python_version(), "aiohttp": aiohttp.__version__, "load_start": os.getloadavg()}


# ----------------------------------------------------------------------------------------- report
def _row(rows: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    return next((r for r in rows if r["rate"] == rate), None)


def verdicts(res: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    gw, ll, out = res.get("gatewatch", {}), res.get("litellm", {}), []
    r500 = _row(gw.get("fixed", []), 500)
    if r500:
        a = r500["added"]
        out.append(("added p50 <= 1 ms at 500 rps", a["p50"] is not None and a["p50"] <= 1, f"{a['p50']} ms"))
        out.append(("added p99 <= 5 ms at 500 rps", a["p99"] is not None and a["p99"] <= 5, f"{a['p99']} ms"))
    if gw.get("fixed") and ll.get("fixed"):
        both = [r for r in ll["fixed"] if "proxy" in r and _row(gw["fixed"], r["rate"])]
        clean = [r["rate"] for r in both if not r["proxy"]["errors"]]  # LiteLLM answered all (maybe late)
        rate = max(clean) if clean else min((r["rate"] for r in both), default=0)
        g, lt = _row(gw["fixed"], rate), _row(ll["fixed"], rate)
        if g and lt and g["added"]["p99"] is not None and lt["added"]["p99"] is not None:
            ratio = lt["added"]["p99"] / max(g["added"]["p99"], 0.1)
            out.append((f"added p99 >= 5x lower than LiteLLM (at {rate:g} rps)", ratio >= 5,
                        f"{g['added']['p99']} vs {lt['added']['p99']} ms = {ratio:.1f}x"))
    bounds = res["args"]
    for key, bound in (("sustained_rps", "p99_bound_ms"), ("sustained_loose_rps", "loose_bound_ms")):
        gl, lt = gw.get("ladder", {}), ll.get("ladder", {})
        gs, ls = gl.get(key), lt.get(key)
        if gl and lt:
            detail = f"{gs} vs {ls} rps" + (f" = {gs / ls:.1f}x" if gs and ls else "")
            out.append((f"sustained rate >= 2x LiteLLM (open loop, p99 <= {bounds[bound]:g} ms)",
                        bool(gs) and (not ls or gs >= 2 * ls), detail))
    gwk, lwk = gw.get("wrk", {}).get("rps"), ll.get("wrk", {}).get("rps")
    if gwk and lwk:
        out.append(("peak rate >= 2x LiteLLM (wrk)", gwk >= 2 * lwk, f"{gwk:.0f} vs {lwk:.0f} rps = {gwk / lwk:.1f}x"))
    gc, lc = _cpu_by_rate(gw), _cpu_by_rate(ll)
    both = sorted(set(gc) & set(lc))
    if both:
        rate = both[-1]
        out.append((f"(info) proxy CPU per request at {rate:g} rps (both error-free)", None,
                    f"{gc[rate]:.2f} vs {lc[rate]:.2f} ms = {lc[rate] / gc[rate]:.1f}x less"))
    mem = gw.get("memory")
    if mem:
        g = mem["growth_after_first_chunk_mb"]
        out.append(("flat memory (growth after the first 10% <= 5 MiB)", g <= 5,
                    f"{mem['rss_before_mb']} -> {mem['rss_after_mb']} MiB over {mem['requests']} requests "
                    f"({g:+} MiB after the first 10%), {mem['rss_idle_mb']} MiB after {res['args']['idle_s']:g}s idle "
                    f"(idle CPU {mem.get('idle_cpu_pct')}% of a core)"))
    return out


def _cpu_by_rate(proxy: dict[str, Any]) -> dict[float, float]:
    return {r["rate"]: r["proxy"]["proxy_cpu_ms_per_req"] for r in proxy.get("fixed", [])
            if "proxy" in r and not r["proxy"]["errors"] and "proxy_cpu_ms_per_req" in r["proxy"]}


def _p(d: dict[str, Any] | None) -> str:
    if not d or d.get("p50") is None:
        return "-"
    return f"{d['p50']:.2f} / {d['p95']:.2f} / {d['p99']:.2f}"


def _err(r: dict[str, Any]) -> str:
    return "0" if not r["errors"] else f"{r['errors']} {r['error_kinds']}"


def fixed_table(title: str, rows_by_proxy: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    out = [f"### {title}", "",
           "| proxy | rate | achieved | errors | direct p50 / p95 / p99 | proxy p50 / p95 / p99 "
           "| added p50 / p95 / p99 | proxy CPU ms/req |",
           "| --- | ---: | ---: | --- | --- | --- | --- | ---: |"]
    for name, rows in rows_by_proxy.items():
        for r in rows:
            if "skipped" in r:
                out.append(f"| {name} | {r['rate']:g} | - | skipped: {r['skipped']} | | | | |")
                continue
            p = r["proxy"]
            cpu = p.get("proxy_cpu_ms_per_req", "-") if not p["errors"] else "-"
            out.append(f"| {name} | {r['rate']:g} | {p['achieved_rps']:g} | {_err(p)} | {_p(r['direct'][key])} | "
                       f"{_p(p[key])} | {_p(r['added'])} | {cpu} |")
    return [*out, ""]


def report(res: dict[str, Any]) -> str:
    m, a = res["machine"], res["args"]
    proxies = {k: res[k] for k in PROXIES if isinstance(res.get(k), dict) and "fixed" in res[k]}
    lines = ["## Gateway proxy benchmark", "",
             f"- date: {res['date']}; machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['os']}, "
             f"Python {m['python']}, aiohttp {m['aiohttp']}",
             f"- code: {res['code']['tree']} at {res['code']['commit']}"
             + (f" with uncommitted changes in {len(res['code']['dirty'])} gateway/gatewatch paths"
                if res["code"]["dirty"] else ""),
             f"- load average at start {m['load_start']}, at end {m.get('load_end')}",
             f"- pinning: proxy on core {a['proxy_cpu']}; mocks + Tansu broker + load generator (+ wrk) on core "
             f"{a['client_cpu']} (the mock answers on the same core as the generator)",
             f"- litellm {res.get('litellm_version', '-')}; mode {'quick' if a['quick'] else 'full'}; "
             "latencies in ms from the scheduled send time (open loop); added = proxy percentile - direct "
             "percentile, measured back to back at the same rate", ""]
    for k in PROXIES:
        if isinstance(res.get(k), dict) and res[k].get("failed"):
            lines += [f"- **{k} failed**: {res[k]['failed'].strip().splitlines()[-1]}", ""]
    gen = res.get("generator", {})
    if gen:
        lines.append(f"- generator ceiling vs the mock (p99 <= {a['p99_bound_ms']:g} ms, no errors): "
                     f"{gen['ladder']['sustained_rps']} rps open loop; wrk vs the mock: "
                     f"{gen.get('wrk', {}).get('rps', '-')} rps")
        lines.append("")
    lines += fixed_table("Fixed rates, non-streaming chat completions", {k: v["fixed"] for k, v in proxies.items()},
                         "latency_ms")
    lines += fixed_table("Streaming: time to first content chunk", {k: v["stream"] for k, v in proxies.items()},
                         "ttft_ms")
    lines += ["### Throughput and memory", "",
              f"| proxy | sustained rps, p99 <= {a['p99_bound_ms']:g} / {a['loose_bound_ms']:g} ms (open loop) | "
              "wrk peak rps (32 conns) | RSS start | RSS before / after load | RSS after idle |",
              "| --- | ---: | ---: | ---: | --- | ---: |"]
    for name, v in proxies.items():
        mem = v.get("memory") or {}
        ba = (f"{mem['rss_before_mb']} / {mem['rss_after_mb']} ({mem['requests']} req)" if mem
              else f"- / {v.get('rss_end_mb')} (end of run)")
        lad = v["ladder"]
        lines.append(f"| {name} | {lad['sustained_rps']} / {lad.get('sustained_loose_rps')} | "
                     f"{v.get('wrk', {}).get('rps', '-')} | "
                     f"{v.get('rss_start_mb')} MiB | {ba} | {mem.get('rss_idle_mb', '-')} |")
    lines.append("")
    k = res.get("kafka")
    if k:
        answered = {n.split('code="')[1].split('"')[0]: int(v) for n, v in k.items() if n.startswith("gatewatch_req")}
        dropped = sum(v for n, v in k.items() if n.startswith("events_dropped"))
        lines += [f"- Kafka (gateway /metrics at the end): answered {answered} (499 = client gave up, i.e. the "
                  f"generator's timeouts); events emitted {k.get('events_emitted', 0):.0f}, delivered "
                  f"{k.get('events_delivered', 0):.0f}, spooled {k.get('events_spooled', 0):.0f}, "
                  f"dropped {dropped:.0f}", ""]
    marks = {True: "[x]", False: "[ ]", None: "-"}
    lines += ["### Targets", ""] + [f"- {marks[ok]} {name}: {detail}" for name, ok, detail in verdicts(res)]
    prof = res.get("profile")
    if prof and prof.get("samples"):
        lines += ["", f"### py-spy profile of gatewatch at {prof['rate']:g} rps ({prof['samples']} samples)", "",
                  "by module (own samples):"] + [f"  {pct:5.1f}%  {f}" for f, pct in prof["by_module_pct"]]
        lines += ["top frames (own samples):"] + [f"  {pct:5.1f}%  {f}" for f, pct in prof["top_self_pct"]]
    return "\n".join(lines) + "\n"


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
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
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
    with TansuBroker(log_file=tmp / "tansu.log") as broker:
        mock, paced = start_mocks(procs, args.client_cpu)
        body = bodies(args.prompt)
        direct = Target("direct", f"http://127.0.0.1:{mock}", {}, body["mock_chat"], body["mock_stream"],
                        stream_base=f"http://127.0.0.1:{paced}")
        bench = Bench(args, client, direct)
        log(f"broker {broker.bootstrap}, mock :{mock}, paced mock :{paced}; generator ceiling vs the mock")
        res["generator"] = {"ladder": bench.ladder(direct, args.generator_ladder)}
        if not args.no_wrk:
            res["generator"]["wrk"] = client.wrk(direct.url, direct.body, {}, args.wrk_duration)
            log(f"  wrk direct: {res['generator']['wrk']}")
        gen = res["generator"]["ladder"]
        ceiling = gen["sustained_rps"] or gen["sustained_loose_rps"] or max(args.ladder)
        if not args.no_gatewatch:
            with recorded(res, "gatewatch", tmp):
                gw = start_gatewatch(procs, tmp, args.proxy_cpu, broker.bootstrap, mock, paced, body)
                res["gatewatch"] = bench.proxy_suite(
                    gw, rates=args.rates, ladder=[r for r in args.ladder if r <= ceiling] or args.ladder[:1],
                    stream_rates=args.stream_rates, mem_requests=args.mem_requests, mem_rate=args.mem_rate)
                res["kafka"] = kafka_counters(gw.base)
                if args.profile:
                    log(f"profiling gatewatch at {args.profile_rate:g} rps")
                    res["profile"] = bench.profile(gw, args.profile_rate, 12.0 if args.quick else 20.0)
                procs.stop(gw.proc)  # type: ignore[arg-type]
        if args.also_no_pii:
            with recorded(res, "gatewatch-nopii", tmp):
                gw = start_gatewatch(procs, tmp, args.proxy_cpu, broker.bootstrap, mock, paced, body,
                                     name="gatewatch-nopii", policy=NO_PII_POLICY)
                res["gatewatch-nopii"] = bench.proxy_suite(
                    gw, rates=args.rates, ladder=[r for r in args.ladder if r <= ceiling] or args.ladder[:1],
                    stream_rates=args.stream_rates[-1:], mem_requests=0, mem_rate=None)
                procs.stop(gw.proc)  # type: ignore[arg-type]
        if not args.no_litellm:
            with recorded(res, "litellm", tmp):
                ll, took, version = start_litellm(procs, tmp, args.proxy_cpu, mock, paced, body)
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


def run_guarded(work: Callable[[], None], procs: Procs, tmp: Path, res: dict[str, Any]) -> int:
    """Run a benchmark body; SIGTERM/SIGINT and failures stop every child the benchmark started and are
    recorded in ``res``. Returns the exit code (0, 1 failed, 130 interrupted)."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (e.g. `cmd &` in a script)
    log(f"logs in {tmp}")
    code = 0
    try:
        work()
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        res["interrupted"], code = True, 130
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        log(f"failed: {exc} (logs in {tmp})")
        res["failed"], code = str(exc), 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            procs.stop_all()
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2 and args.proxy_cpu != args.client_cpu:
        log("warning: fewer than 2 usable cores; proxy and client will share one")
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {args.client_cpu})  # children (broker, mocks) inherit the client core
    tmp = Path(tempfile.mkdtemp(prefix="gatewatch-bench-"))
    src, code_info = source(args.ref, tmp)
    procs = Procs(tmp, src)
    started = dt.datetime.now(dt.UTC)
    res: dict[str, Any] = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "code": code_info,
                           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}

    code = run_guarded(lambda: run_all(args, procs, tmp, res), procs, tmp, res)
    res["machine"]["load_end"] = os.getloadavg()
    res["elapsed_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"gateway-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    print(report(res))
    log(f"results in {path} ({res['elapsed_s']} s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
