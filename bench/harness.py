"""The shared bench harness: what the benchmark scripts of this package have in common.

- processes: ``Procs`` starts children pinned with ``taskset``, each in its own session with its log in
  the run's temporary directory, and stops them (process groups, reverse order); ``start_broker``,
  ``start_mock``, ``start_gateway`` and ``start_litellm`` start one kind on a free port and wait until
  it answers; ``run_guarded`` stops everything on SIGTERM/SIGINT or failure;
- load: ``Client`` runs bench/loadgen.py (open loop) and wrk on a given core; ``Target`` is what load is
  sent to, ``measure`` one load run against it (with the proxy's CPU time per request); ``short`` the
  one-line summary of a run;
- figures: ``pct`` / ``percentiles`` (the rule every figure of loadgen uses), ``md_table`` (the
  Markdown tables printed on stdout), ``machine`` (the machine description), ``new_results`` /
  ``write_results`` (bench/results/<name>-<time>.json), ``source`` (the code under test: working tree or
  a git revision).

Run the scripts as modules from the repository root (``python -m bench.<script>``) or through
``gatewatch bench <what>``; project children run ``python -m gatewatch ...`` from ``Procs.src`` (the working
tree, or the git revision ``--ref`` names).
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gatewatch.procs import free_port, tansu_binary, wait_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"  # git-ignored
LITELLM_VENV = HERE / ".venvs" / "litellm"
PY = sys.executable
CHAT = "/v1/chat/completions"
PROMPT = "Write one short sentence about the sea."


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

    def start(self, name: str, cmd: list[str], cpu: int | str, env: dict[str, str | None] | None = None,
              *, project: bool = True) -> subprocess.Popen[bytes]:
        """Start ``cmd`` pinned to ``cpu`` (a taskset list), in its own session; ``env`` values of None unset a
        variable."""
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


# ----------------------------------------------------------------------------------------- starting things
def start_broker(procs: Procs, cpu: int | str, host: str = "127.0.0.1") -> str:
    """A Tansu broker (``memory://``; the command line of gatewatch.procs.TansuBroker) under ``procs``;
    returns its bootstrap address once it listens."""
    port = free_port()
    url = f"tcp://{host}:{port}"
    procs.start("tansu", [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                          "--storage-engine", "memory://tansu/"], cpu, {"RUST_LOG": "warn"}, project=False)
    wait_port(host, port, 20)
    return f"{host}:{port}"


def start_mock(procs: Procs, cpu: int | str, name: str = "mock", extra: Sequence[str] = ()) -> int:
    """``gatewatch mock-upstream`` (no request recording) on a free port; returns the port once it listens."""
    port = free_port()
    proc = procs.start(name, [PY, "-m", "gatewatch", "--log-level", "WARNING", "mock-upstream", "--port",
                              str(port), "--record-last", "0", *extra], cpu)
    wait_port("127.0.0.1", port, 30, proc)
    return port


def start_gateway(procs: Procs, name: str, cfg: Path, port: int, home: Path, cpu: int | str,
                  probe_body: str, stream_body: str = "") -> tuple[Target, float]:
    """``gatewatch gateway`` with the configuration file ``cfg`` (which listens on ``port``) and
    ``GATEWATCH_HOME=home``, behind an API key made with ``gatewatch keys create``. Returns once /readyz
    answers and one chat request (``probe_body``) went through: the target and the seconds to /readyz."""
    env: dict[str, str | None] = {"GATEWATCH_HOME": str(home)}
    cwd, extra = procs.project_env()
    keys = subprocess.run([PY, "-m", "gatewatch", "-c", str(cfg), "keys", "create", "--tenant", "bench"],
                          capture_output=True, text=True, cwd=cwd, env={**os.environ, **extra, **env},
                          timeout=60, check=False)
    if keys.returncode != 0:
        raise RuntimeError(f"gatewatch keys create failed: {keys.stderr[-2000:]}")
    headers = {"Authorization": f"Bearer {keys.stdout.split()[0]}"}
    proc = procs.start(name, [PY, "-m", "gatewatch", "-c", str(cfg), "--log-level", "WARNING", "gateway"],
                       cpu, env)
    base = f"http://127.0.0.1:{port}"
    took = wait_http(base + "/readyz", 60, proc)
    wait_http(base + CHAT, 30, proc, probe_body, headers)
    return Target(name, base, headers, probe_body, stream_body, proc=proc), took


def start_litellm(procs: Procs, tmp: Path, cpu: int | str, routes: dict[str, int], probe_body: str,
                  stream_body: str = "") -> tuple[Target, float, str]:
    """The LiteLLM proxy (its venv made by bench/litellm_setup.sh when missing), one worker, master key,
    no DB/Redis/callbacks; ``routes`` maps each alias to the port of the mock it forwards to (as
    ``openai/gpt-4o-mini``). Returns the target, the seconds until it answered, and its version."""
    import yaml

    subprocess.run(["bash", str(HERE / "litellm_setup.sh")], check=True, timeout=1800)
    version = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                              "from importlib.metadata import version; print(version('litellm'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    port, key = free_port(), "sk-bench-master"
    model_list = [{"model_name": alias, "litellm_params": {"model": "openai/gpt-4o-mini",
                                                           "api_base": f"http://127.0.0.1:{p}/v1",
                                                           "api_key": "sk-mock"}}
                  for alias, p in routes.items()]
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
    wait_http(base + CHAT, 60, proc, probe_body, headers)
    took = time.monotonic() - t0
    return Target("litellm", base, headers, probe_body, stream_body, proc=proc), took, version


def kafka_counters(base: str) -> dict[str, float]:
    """The gateway's request and event counters from its /metrics (``events_*`` and ``gatewatch_requests``)."""
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


# ----------------------------------------------------------------------------------------- load
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


class Client:
    """Runs bench/loadgen.py and wrk on the client core."""

    def __init__(self, cpu: int | str, timeout: float) -> None:
        self.cpu = cpu
        self.timeout = timeout

    def load(self, url: str, rate: float, duration: float, body: str, *, headers: dict[str, str] | None = None,
             stream: bool = False, warmup: float = 1.0, timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout or self.timeout
        cmd = ["taskset", "-c", str(self.cpu), PY, "-m", "bench.loadgen", "--url", url, "--rate", str(rate),
               "--duration", str(duration), "--warmup", str(warmup), "--body", body, "--timeout", str(timeout)]
        for k, v in (headers or {}).items():
            cmd += ["--header", f"{k}: {v}"]
        if stream:
            cmd.append("--stream")
        res = subprocess.run(cmd, capture_output=True, timeout=warmup + duration + timeout + 60, check=False,
                             cwd=ROOT)
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


def measure(client: Client, t: Target, rate: float, duration: float, *, stream: bool = False,
            warmup: float = 1.0, timeout: float | None = None) -> dict[str, Any]:
    """One open-loop run against ``t``; for a proxy also its own CPU time (user + system) per request sent."""
    body, url = (t.stream_body, t.stream_url) if stream else (t.body, t.url)
    cpu0 = t.cpu_s()
    r = client.load(url, rate, duration, body, headers=t.headers, stream=stream, warmup=warmup, timeout=timeout)
    if t.proc and r["sent_total"]:
        r["proxy_cpu_ms_per_req"] = round((t.cpu_s() - cpu0) * 1000 / r["sent_total"], 3)
    return r


def short(r: dict[str, Any], key: str = "latency_ms") -> str:
    pc = r[key]
    errs = f" errors={r['error_kinds']}" if r["errors"] else ""
    return (f"achieved {r['achieved_rps']}/{r['offered_rps']:g} rps, "
            f"p50/p95/p99 {pc['p50']}/{pc['p95']}/{pc['p99']} ms, send-lag p99 {r['send_lag_ms']['p99']} ms"
            + (f", proxy CPU {r['proxy_cpu_ms_per_req']} ms/req" if "proxy_cpu_ms_per_req" in r else "") + errs)


# ----------------------------------------------------------------------------------------- figures
def pct(values: Sequence[float], q: float, *, presorted: bool = False) -> float:
    """The ``q`` quantile (0..1) of ``values``: the value at index ``min(n - 1, int(q * n))`` of the sorted list."""
    xs = values if presorted else sorted(values)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 / max / mean of durations in seconds, as milliseconds (3 decimals); sorts ``values``."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    values.sort()
    n = len(values)

    def q(p: float) -> float:
        return round(pct(values, p, presorted=True) * 1000, 3)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(values[-1] * 1000, 3),
            "mean": round(sum(values) / n * 1000, 3)}


def md_table(columns: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """A Markdown table: header, separator (columns whose index is in ``right`` right-aligned), one line per
    row; an empty cell is written ``| |``."""

    def line(cells: Sequence[object]) -> str:
        return "|" + "|".join(f" {c} " if c != "" else " " for c in cells) + "|"

    return [line(columns), line(["---:" if i in right else "---" for i in range(len(columns))]),
            *(line(r) for r in rows)]


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python and aiohttp versions, load average now."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    import aiohttp

    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2**20, 1), "os": platform.platform(),
            "python": platform.python_version(), "aiohttp": aiohttp.__version__, "load_start": os.getloadavg()}


def git_commit(ref: str = "HEAD") -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True,
                          check=False).stdout.strip()


def source(ref: str | None, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The code under test: this working tree, or ``ref`` exported with ``git archive`` into ``tmp``."""
    git = ["git", "-C", str(ROOT)]
    if ref is None:
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "gateway", "gatewatch", "schemas"],
                               capture_output=True, text=True, check=False).stdout.split("\n")
        return ROOT, {"tree": "working tree", "commit": git_commit(), "dirty": [d for d in dirty if d.strip()]}
    commit = subprocess.run([*git, "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    src = tmp / "src"
    src.mkdir()
    archive = subprocess.Popen([*git, "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
    archive.wait()
    return src, {"tree": f"git archive {ref}", "commit": commit, "dirty": []}


def new_results(args: argparse.Namespace, **extra: Any) -> tuple[dt.datetime, dict[str, Any]]:
    """The start time and the results dict every run begins with: date, machine, ``extra``, arguments."""
    started = dt.datetime.now(dt.UTC)
    return started, {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), **extra,
                     "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}


def write_results(out_dir: Path, name: str, started: dt.datetime, res: dict[str, Any]) -> Path:
    """``res`` (with its elapsed seconds) as ``out_dir/<name>-<start time>.json``; returns the path."""
    res["elapsed_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1, default=str))
    return path
