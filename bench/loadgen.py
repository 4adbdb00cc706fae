"""Open-loop HTTP/1.1 load generator (uvloop + raw asyncio protocol + keep-alive connection pool).

Requests are sent on a fixed timetable (request i is due at ``t0 + i / rate``) whatever the server does,
and every latency is measured from the *scheduled* time, so time spent queued — in the generator (no free
connection) or in the server — is counted (no coordinated omission). A request that is not answered
within ``--timeout`` of its scheduled time counts as a timeout error.

Run it as a process (the benchmark pins it to its own core)::

    python -m bench.loadgen --url http://127.0.0.1:8090/v1/chat/completions --rate 500 --duration 10 \
        --body '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}' [--stream] [--header K:V]

It prints one JSON object on stdout: offered/achieved rate, counts and errors by kind, and percentiles
(ms) of latency (from scheduled time to the last byte), service time (from the actual write), time to
first content chunk (``--stream``) and send lag (how late the generator itself sent — its own health).
Also importable: ``await run_load(LoadSpec(...))``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.harness import percentiles

perf = time.perf_counter
# first SSE chunk that carries text: "content":"x (chat) or "text":"x (completions); empty strings don't count
CONTENT_RE = re.compile(rb'"(?:content|text|delta)":\s*"[^"]')
TIMEOUT, CONNECT, CLOSED, UNSENT = "timeout", "connect", "closed", "unsent"


@dataclass(slots=True)
class LoadSpec:
    url: str
    rate: float  # requests per second
    duration: float  # measured seconds
    body: bytes = b"{}"
    warmup: float = 1.0  # seconds at the same rate before measuring (not counted)
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False  # record time to first content chunk
    timeout: float = 10.0  # per request, from its scheduled time
    max_conns: int = 256
    preconnect: int = 8


@dataclass(slots=True)
class _Run:
    spec: LoadSpec
    n: int
    t0: float
    sent: array
    done: array
    first: array
    status: array
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    finished: int = 0


def _request_bytes(spec: LoadSpec) -> tuple[bytes, str, int]:
    u = urlsplit(spec.url)
    if u.scheme != "http":
        raise ValueError("only http:// URLs are supported")
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(spec.body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in spec.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + spec.body, host, port


class Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining)."""

    __slots__ = ("body_at", "buf", "chunked", "clen", "close_after", "gen", "idx", "status", "transport")

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.idx = -1  # request in flight, -1 = idle
        self.body_at = -1
        self.clen = -1
        self.chunked = False
        self.close_after = False
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, idx: int) -> None:
        self.idx, self.body_at, self.status = idx, -1, 0
        self.buf.clear()
        self.gen.run.sent[idx] = perf()
        self.transport.write(self.gen.payload)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.idx < 0:
            return  # bytes after a timed-out request: the connection is being closed
        buf = self.buf
        buf += data
        if self.body_at < 0 and not self._head():
            return
        run = self.gen.run
        if self.gen.spec.stream and run.first[self.idx] == 0.0 and CONTENT_RE.search(buf, self.body_at):
            run.first[self.idx] = perf()
        if self.chunked:
            complete = buf.endswith(b"0\r\n\r\n") and (len(buf) - self.body_at == 5 or buf.endswith(b"\r\n0\r\n\r\n"))
        else:
            complete = len(buf) - self.body_at >= self.clen
        if complete:
            self._complete()

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).lower()
        self.status = int(head[9:12])
        self.body_at = end + 4
        self.chunked = b"\r\ntransfer-encoding: chunked" in head
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            self.clen = int(head[i + 17 : j if j > 0 else len(head)])
        else:
            self.clen = -1 if self.chunked else 0
        self.close_after = b"\r\nconnection: close" in head
        return True

    def _complete(self) -> None:
        idx, self.idx = self.idx, -1
        self.gen.finish(idx, self.status)
        if self.close_after:
            self.transport.close()  # type: ignore[union-attr]
        else:
            self.gen.release(self)

    def abort(self) -> None:
        self.idx = -1
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        idx, self.idx = self.idx, -1
        if idx >= 0:
            self.gen.fail(idx, CLOSED)
        self.gen.lost(self)


class Generator:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.payload, self.host, self.port = _request_bytes(spec)
        n = max(1, round(spec.rate * (spec.warmup + spec.duration)))
        zeros = array("d", bytes(8 * n))
        self.run = _Run(spec, n, 0.0, array("d", zeros), array("d", zeros), array("d", zeros),
                        array("h", bytes(2 * n)))
        self.idle: list[Conn] = []
        self.busy: set[Conn] = set()
        self.conns = 0  # open or opening
        self.pending: collections.deque[int] = collections.deque()
        self.loop = asyncio.get_running_loop()
        self.measure_from = 0.0

    # --- connection pool ---
    async def _open(self) -> None:
        conn = Conn(self)
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: conn, self.host, self.port), 5.0)
        except (OSError, TimeoutError):
            self.conns -= 1
            if self.pending:
                self.fail(self.pending.popleft(), CONNECT)
            return
        self.release(conn)

    def release(self, conn: Conn) -> None:
        if self.pending:
            idx = self.pending.popleft()
            self.busy.add(conn)
            conn.send(idx)
        else:
            self.busy.discard(conn)
            self.idle.append(conn)

    def lost(self, conn: Conn) -> None:
        self.conns -= 1
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.pending and self.conns < self.spec.max_conns:
            self.conns += 1
            self.loop.create_task(self._open())

    def dispatch(self, idx: int) -> None:
        if self.idle:
            conn = self.idle.pop()
            self.busy.add(conn)
            conn.send(idx)
            return
        self.pending.append(idx)
        if self.conns < self.spec.max_conns:
            self.conns += 1
            self.loop.create_task(self._open())

    # --- outcomes ---
    def finish(self, idx: int, status: int) -> None:
        self.run.done[idx] = perf()
        self.run.status[idx] = status
        self.run.finished += 1

    def fail(self, idx: int, kind: str) -> None:
        if self.run.status[idx] != 0:
            return
        self.run.status[idx] = -1
        self.run.finished += 1
        if self.sched(idx) >= self.measure_from:
            self.run.errors[kind] += 1

    def sched(self, idx: int) -> float:
        return self.run.t0 + idx / self.spec.rate

    def expire(self, now: float) -> None:
        """Time out requests older than spec.timeout (queued here or in flight)."""
        limit = now - self.spec.timeout
        while self.pending and self.sched(self.pending[0]) < limit:
            self.fail(self.pending.popleft(), TIMEOUT)
        for conn in [c for c in self.busy if c.idx >= 0 and self.sched(c.idx) < limit]:
            idx = conn.idx
            self.busy.discard(conn)
            conn.abort()
            self.fail(idx, TIMEOUT)

    async def go(self) -> dict[str, Any]:
        spec, run = self.spec, self.run
        for _ in range(min(spec.preconnect, spec.max_conns)):
            self.conns += 1
            await self._open()
        run.t0 = perf() + 0.01
        self.measure_from = run.t0 + spec.warmup
        i, last_expire = 0, 0.0
        while i < run.n:
            now = perf()
            due = min(run.n, int((now - run.t0) * spec.rate) + 1)
            while i < due:
                self.dispatch(i)
                i += 1
            if now - last_expire > 0.05:
                self.expire(now)
                last_expire = now
            await asyncio.sleep(max(0.0, run.t0 + i / spec.rate - perf()))
        deadline = self.sched(run.n - 1) + spec.timeout + 0.5
        while run.finished < run.n and perf() < deadline:
            await asyncio.sleep(0.01)
            self.expire(perf())
        for idx in list(self.pending):
            self.fail(idx, UNSENT)
        for conn in list(self.busy) + self.idle:
            if conn.idx >= 0:
                self.fail(conn.idx, TIMEOUT)
            conn.abort()
        return summarize(self)


def summarize(gen: Generator) -> dict[str, Any]:
    spec, run = gen.spec, gen.run
    first = round(spec.rate * spec.warmup)
    lat, svc, ttft, lag = [], [], [], []
    ok, statuses, last_done = 0, collections.Counter[int](), 0.0
    for i in range(first, run.n):
        st = run.status[i]
        if st <= 0:
            continue
        s = gen.sched(i)
        statuses[st] += 1
        if 200 <= st < 300:
            ok += 1
            lat.append(run.done[i] - s)
            svc.append(run.done[i] - run.sent[i])
            lag.append(run.sent[i] - s)
            if run.first[i]:
                ttft.append(run.first[i] - s)
            last_done = max(last_done, run.done[i])
    measured = run.n - first
    errors = dict(run.errors)
    bad = sum(v for k, v in statuses.items() if not 200 <= k < 300)
    if bad:
        errors.update({f"http_{k}": v for k, v in statuses.items() if not 200 <= k < 300})
    span = max(spec.duration, last_done - gen.measure_from) if ok else spec.duration
    return {
        "url": spec.url, "offered_rps": spec.rate, "duration_s": spec.duration, "stream": spec.stream,
        "requests": measured, "ok": ok, "errors": sum(errors.values()), "error_kinds": errors,
        "achieved_rps": round(ok / span, 1),
        "latency_ms": percentiles(lat), "service_ms": percentiles(svc), "send_lag_ms": percentiles(lag),
        "ttft_ms": percentiles(ttft) if spec.stream else None,
        "max_conns_used": gen.conns,
        "sent_total": sum(1 for t in run.sent if t),  # warm-up included: for CPU time per request
    }


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    return await Generator(spec).go()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--body", default='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
    ap.add_argument("--header", action="append", default=[], help="K:V (repeatable)")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--max-conns", type=int, default=256)
    args = ap.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    spec = LoadSpec(args.url, args.rate, args.duration, args.body.encode(), args.warmup,
                    {k.strip(): v.strip() for k, v in headers.items()}, args.stream, args.timeout, args.max_conns)
    try:
        import uvloop

        result = uvloop.run(run_load(spec))
    except ImportError:
        result = asyncio.run(run_load(spec))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
