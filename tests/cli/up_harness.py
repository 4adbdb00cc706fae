"""Run `gatewatch up` as a user does (a real process tree on free ports), load it, and read its audit log.

``UpProcess`` reads the process's output on a thread (a full pipe would block the gateway's logging),
``Load`` sends open-loop traffic from a thread (chat and streams, a unique x-request-id each) and records
what each request got, ``audit_counts`` counts the audit rows per request id through the console API.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from gatewatch.procs import free_port


@dataclass(frozen=True)
class Ports:
    gateway: int
    broker: int
    mock: int
    console: int
    status: int


# consumer groups settle in ~3 s instead of ~5 (docs: ENVIRONMENT, group timing)
FAST_GROUPS = {"GATEWATCH__WORKER__SESSION_TIMEOUT_MS": "6000", "GATEWATCH__WORKER__HEARTBEAT_INTERVAL_MS": "1000"}


def up_env(ports: Ports, **extra: str) -> dict[str, str]:
    env = {**os.environ, "GATEWATCH__GATEWAY__PORT": str(ports.gateway),
           "GATEWATCH__EMBEDDED__BROKER_PORT": str(ports.broker),
           "GATEWATCH__EMBEDDED__MOCK_UPSTREAM_PORT": str(ports.mock),
           "GATEWATCH__WORKER__CONSOLE_PORT": str(ports.console), "PYTHONUNBUFFERED": "1", **extra}
    env.pop("GATEWATCH_HOME", None)
    env.pop("GATEWATCH_CONFIG", None)
    return env


def free_ports() -> Ports:
    return Ports(free_port(), free_port(), free_port(), free_port(), free_port())


class UpProcess:
    def __init__(self, cwd: Path, ports: Ports, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.cwd, self.ports = cwd, ports
        cmd = [sys.executable, "-m", "gatewatch", "up", "--status-port", str(ports.status), *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._family: dict[int, psutil.Process] = {}  # every descendant seen, sampled while `up` runs
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self._add_family()
            time.sleep(0.3)

    def _add_family(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self._family.setdefault(p.pid, p)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float, start: int = 0) -> int:
        """Index of the first line from ``start`` on that contains ``needle``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{needle!r} not printed; output:\n{''.join(self.lines[-80:])}")
                self._cond.wait(min(left, 0.5))

    @property
    def key(self) -> str:
        return (self.cwd / ".gatewatch" / "dev-key").read_text().strip()

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.ports.console}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def console_token(self, timeout: float = 60.0) -> str:
        path = self.cwd / ".gatewatch" / "console-token"
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return path.read_text().strip()

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.status}/healthz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.status}/metrics", timeout=5) as r:
            return r.read().decode()

    def child(self, name: str) -> dict[str, object]:
        return self.health()[1]["children"][name]  # type: ignore[index,no-any-return]

    def wait_child(self, name: str, timeout: float, *, restarts: int = 0) -> dict[str, object]:
        """Until ``name`` is up after at least ``restarts`` restarts."""
        deadline, child = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            child = self.child(name)
            if child["state"] == "up" and int(child["restarts"]) >= restarts:  # type: ignore[call-overload]
                return child
            time.sleep(0.2)
        raise AssertionError(f"{name} not up (restarts >= {restarts}) after {timeout}s: {child}\n"
                             f"{''.join(self.lines[-40:])}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Banner printed and every child (the worker's console included) up."""
        self.wait_for("Ctrl-C stops everything", timeout)
        deadline = time.monotonic() + timeout
        while self.health()[1]["status"] != "ok":
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy: {self.health()}")
            time.sleep(0.2)
        self._add_family()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        self._add_family()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def orphans(self) -> list[psutil.Process]:
        """Descendants still alive (``up`` must have exited): none after a clean stop."""
        assert self._family, "no child process was ever seen"
        alive = []
        for p in self._family.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        return alive

    def kill(self) -> None:
        """Cleanup after a failed test: nothing may outlive it."""
        self._add_family()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in self._family.values():
            with contextlib.suppress(psutil.Error):
                p.kill()


@dataclass
class Result:
    rid: str
    stream: bool
    sent_at: float
    status: int | None = None
    done: bool = False  # the whole answer arrived ([DONE] for a stream)
    error: str | None = None


class Load:
    """``rate`` requests/s, open loop (a slow answer does not slow the sender), every other one a stream."""

    def __init__(self, base_url: str, key: str, rate: float, tag: str, model: str = "gpt-4o-mini", *,
                 streams_only: bool = False) -> None:
        self.url = f"{base_url}/v1/chat/completions"
        self.key, self.rate, self.tag, self.model = key, rate, tag, model
        self.streams_only = streams_only
        self.results: list[Result] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop_sending(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 60.0) -> list[Result]:
        """Stop sending; return once every request sent has its answer (or its error)."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "load generator did not finish"
        return self.results

    def answered(self) -> set[str]:
        return {r.rid for r in self.results if r.status == 200}

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=300)) as session:
            loop = asyncio.get_running_loop()
            start, tasks, i = loop.time(), set(), 0
            while not self._stop.is_set():
                delay = start + i / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(min(delay, 0.05))
                    continue
                tasks.add(asyncio.create_task(self._one(session, i)))
                i += 1
            await asyncio.gather(*tasks)

    async def _one(self, session: aiohttp.ClientSession, i: int) -> None:
        res = Result(f"{self.tag}-{i:05d}", self.streams_only or i % 2 == 1, time.monotonic())
        self.results.append(res)
        body = {"model": self.model, "stream": res.stream,
                "messages": [{"role": "user", "content": f"hello number {i}"}]}
        headers = {"Authorization": f"Bearer {self.key}", "x-request-id": res.rid}
        try:
            async with session.post(self.url, json=body, headers=headers) as resp:
                res.status = resp.status
                if res.stream:
                    async for line in resp.content:
                        res.done = res.done or line.startswith(b"data: [DONE]")
                else:
                    await resp.read()
                    res.done = True
        except (aiohttp.ClientError, TimeoutError) as exc:
            res.error = type(exc).__name__


def audit_counts(console: str, token: str) -> collections.Counter[str]:
    """Audit rows per request id (every page of ``/api/audit``)."""
    counts: collections.Counter[str] = collections.Counter()
    cursor = ""
    while True:
        url = f"{console}/api/audit?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        with urllib.request.urlopen(urllib.request.Request(
                url, headers={"Authorization": f"Bearer {token}"}), timeout=30) as r:
            page = json.loads(r.read())
        counts.update(row["request_id"] for row in page["rows"])
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return counts


def wait_audit(console: str, token: str, expected: set[str], timeout: float) -> collections.Counter[str]:
    """Poll until every expected request id has a row (or time runs out); the last counts either way."""
    deadline, counts = time.monotonic() + timeout, collections.Counter[str]()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            counts = audit_counts(console, token)
        if expected <= counts.keys():
            return counts
        time.sleep(1.0)
    return counts


def summary(label: str, results: list[Result], counts: collections.Counter[str]) -> str:
    answered = {r.rid for r in results if r.status == 200}
    lost = sorted(rid for rid in answered if counts[rid] == 0)
    dups = sorted(rid for rid in answered if counts[rid] > 1)
    return (f"{label}: sent {len(results)}, answered 200 {len(answered)} "
            f"(streams {sum(r.stream for r in results if r.status == 200)}), "
            f"audit rows {sum(counts[rid] for rid in answered)}, lost {len(lost)} {lost[:5]}, "
            f"duplicates {len(dups)} {dups[:5]}")


def kill_child(up: UpProcess, name: str) -> int:
    pid = int(up.child(name)["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)
    return pid


# ---------------------------------------------------------------------------------------------- faults
# (tests/cli/test_up_faults.py): what a client saw, the worker's own view, the broker's committed offsets,
# the warehouse's table directories.

def client_errors(results: list[Result]) -> list[Result]:
    """Requests that did not get a whole 200 answer (a refused connection, an error status, a cut stream)."""
    return [r for r in results if r.status != 200 or r.error is not None or not r.done]


def http_json(url: str, *, token: str | None = None, body: object = None, timeout: float = 30.0) -> object:
    """GET (or POST ``body`` as JSON) and parse the answer, whatever its status (a 503 /healthz has a body)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def worker_pipelines(up: UpProcess) -> dict[str, dict[str, object]]:
    """The worker console's ``/healthz`` pipelines (the scorer child's included, ``process: scorer-child``)."""
    return http_json(f"{up.console}/healthz", timeout=10)["pipelines"]  # type: ignore[index,no-any-return]


def console_query(up: UpProcess, sql: str, limit: int = 10_000) -> list[list[object]]:
    """Rows of a read-only query through the console's ``/api/query`` (admin token)."""
    out = http_json(f"{up.console}/api/query", token=up.console_token(), body={"sql": sql, "limit": limit})
    if "rows" not in out:  # type: ignore[operator]
        raise AssertionError(f"query failed: {out}")
    return out["rows"]  # type: ignore[index,no-any-return]


def console_metric(up: UpProcess, name: str, **labels: str) -> float:
    """The sum of the worker's ``/metrics`` samples (the scorer child's merged in) named ``name`` with these labels."""
    return scrape(f"{up.console}/metrics", name, **labels)


def scrape(url: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` with (at least) these labels in a Prometheus text page; 0 if none."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


def scorer_child(up: UpProcess) -> psutil.Process | None:
    """The worker's scorer child process (``python -m consumers.child.host``), if it runs."""
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(int(up.child("worker")["pid"])).children():  # type: ignore[call-overload]
            if "consumers.child.host" in p.cmdline():
                return p
    return None


def committed_offsets(up: UpProcess, group: str, topic: str = "gatewatch.events.v1") -> dict[int, int]:
    """partition -> offset ``group`` committed on the stack's broker (-1: nothing committed)."""
    return _offsets(up, [group], topic)[group]


def uncommitted(up: UpProcess, groups: list[str], topic: str = "gatewatch.events.v1") -> dict[str, int]:
    """Per group: events of ``topic`` past what it committed (what a restarted member reads again)."""
    offsets = _offsets(up, ["", *groups], topic)  # "": the topic's end offsets
    ends = offsets.pop("")
    return {g: sum(end - max(0, got[p]) for p, end in ends.items()) for g, got in offsets.items()}


def _offsets(up: UpProcess, groups: list[str], topic: str) -> dict[str, dict[int, int]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def read() -> dict[str, dict[int, int]]:
        bootstrap = f"127.0.0.1:{up.ports.broker}"
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            async with asyncio.timeout(15):
                await consumer.start()
                await admin.start()
                await consumer.topics()
                tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                out = {}
                for group in groups:
                    if not group:
                        out[group] = {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
                        continue
                    got = await admin.list_consumer_group_offsets(group, partitions=tps)
                    out[group] = {tp.partition: (got[tp].offset if tp in got else -1) for tp in tps}
                return out
        finally:
            await asyncio.gather(consumer.stop(), admin.close(), return_exceptions=True)

    return asyncio.run(read())


def warehouse_table_dirs(up: UpProcess) -> list[Path]:
    """The chdb warehouse's table data directories (``store/xxx/<uuid>/``, one per MergeTree table)."""
    store = up.cwd / ".gatewatch" / "warehouse" / "store"
    return sorted(p for p in store.glob("*/*") if (p / "format_version.txt").exists())


def set_writable(dirs: list[Path], writable: bool) -> None:
    """Make directories refuse new entries, or accept them again. As root (which permissions do not stop)
    the immutable attribute (``chattr +i``, ext4/xfs/btrfs), else the permission bits."""
    for d in dirs:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i" if writable else "+i", str(d)], check=True, capture_output=True)
        else:
            d.chmod(0o755 if writable else 0o555)


def can_make_read_only(probe: Path) -> bool:
    """Whether ``set_writable`` works here (chattr needs CAP_LINUX_IMMUTABLE and a filesystem that has it)."""
    d = probe / "read-only-probe"
    d.mkdir(parents=True, exist_ok=True)
    try:
        set_writable([d], False)
    except (OSError, subprocess.CalledProcessError):
        return False
    try:
        (d / "x").mkdir()
        refused = False
    except PermissionError:
        refused = True
    set_writable([d], True)
    with contextlib.suppress(OSError):
        (d / "x").rmdir()
    return refused
