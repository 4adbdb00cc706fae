"""Faults under load against `gatewatch up` (real Tansu, chdb and processes; one stack for the module):

- the broker SIGSTOPped for ``BROKER_STOP_S`` and resumed (frozen, not dead: connections stay open and
  every request to it hangs): the gateway answers throughout and spools or queues its events, the worker's
  consumers wait; after SIGCONT everything answered is in the audit log exactly once;
- the worker's scorer child SIGKILLed: the worker restarts it (``consumers/child/supervisor.py``), the audit
  log (written by the worker itself) is untouched, and since the child commits offsets only after the
  worker inserted its rows, the batch it had in flight is read again and re-scored: every exchange ends up
  with the scores of every scorer, one row per fact under FINAL;
- the warehouse refusing writes for ``WAREHOUSE_DOWN_S`` (its table directories made read-only, which is
  what chdb fails on like a full or read-only disk: ``filesystem error: in create_directories``): the
  archiver retries with its partitions paused, commits nothing meanwhile (the broker's committed offsets
  stand still), says so (``/healthz`` degraded with the error, ``gatewatch_consumer_sink_failures_total``,
  a warning line) and catches up once the directories accept writes again.

Each asserts 0 client-visible errors (the gateway depends on neither the broker nor the warehouse) and
that every exchange answered 200 has exactly one audit row. Broker SIGKILL, worker SIGKILL, gateway SIGKILL
and SIGTERM to `up` are in test_up_supervision.py and test_up_graceful.py.

As a measurement (the figures in docs/reliability.md, "Fault suite"), from the repository root:
``python -m tests.cli.test_up_faults [--runs 3] [--rate 50] [--broker-stop-s 30] [--warehouse-down-s 10]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.up_harness import (
    FAST_GROUPS,
    Load,
    UpProcess,
    audit_counts,
    can_make_read_only,
    client_errors,
    committed_offsets,
    console_metric,
    console_query,
    free_ports,
    http_json,
    scorer_child,
    scrape,
    set_writable,
    summary,
    uncommitted,
    up_env,
    wait_audit,
    warehouse_table_dirs,
    worker_pipelines,
)

pytestmark = pytest.mark.timeout(240)

RATE = 30.0  # requests/s in the tests, every other one a stream
SCORER_RATE = 20.0  # the drift scorer lags behind on 2 shared cores: waiting for its scores bounds the test
BROKER_STOP_S = 10.0
WAREHOUSE_DOWN_S = 10.0
ARCHIVER_GROUP = "gatewatch-archiver"


@dataclass
class Run:
    """One fault under load and what came of it."""

    fault: str
    duration_s: float  # how long the fault lasted (the child: killed until its pipelines ran again)
    rate: float
    load: Load
    counts: collections.Counter[str]
    recovery_s: float  # fault over -> every exchange answered before that has its audit row
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def answered(self) -> set[str]:
        return self.load.answered()

    @property
    def lost(self) -> list[str]:
        return sorted(rid for rid in self.answered if self.counts[rid] == 0)

    @property
    def duplicates(self) -> list[str]:
        return sorted(rid for rid in self.answered if self.counts[rid] > 1)

    def row(self) -> str:
        """fault | duration | load | sent | answered 200 | client errors | audit rows | lost | duplicates | recovery"""
        results = self.load.results
        cells = [self.fault, f"{self.duration_s:.1f} s", f"{self.rate:.0f}/s", len(results), len(self.answered),
                 len(client_errors(results)), sum(self.counts[r] for r in self.answered), len(self.lost),
                 len(self.duplicates), f"{self.recovery_s:.1f} s"]
        return "| " + " | ".join(map(str, cells)) + " |"

    def report(self) -> str:
        return f"{summary(self.fault, self.load.results, self.counts)}; {self.row()} {self.notes}"


def _until(what: str, check: Callable[[], bool], timeout: float, every: float = 0.25) -> float:
    """Poll ``check`` until true; the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if check():
                return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


def _recovered(up: UpProcess, load: Load, since: float, timeout: float = 90.0) -> float:
    """Seconds from ``since`` until every exchange sent before it and answered 200 has its audit row."""
    token = up.console_token()

    def covered() -> bool:
        want = {r.rid for r in list(load.results) if r.sent_at < since and r.status == 200}
        return want <= audit_counts(up.console, token).keys()

    return _until("audit log caught up", covered, timeout, every=0.5) - since


def _scorer_pipelines(up: UpProcess) -> dict[str, dict[str, object]]:
    return {n: h for n, h in worker_pipelines(up).items() if h.get("process") == "scorer-child"}


def _scorers_running(up: UpProcess, *, not_pid: int | None = None) -> bool:
    child = _scorer_pipelines(up)
    return bool(child) and all(h.get("running") and h.get("pid") != not_pid for h in child.values())


def _stack_healthy(up: UpProcess, timeout: float = 120.0) -> None:
    """Every child of `up` up, every worker pipeline (the scorer child's too) running and not paused."""
    def healthy() -> bool:
        pipelines = worker_pipelines(up)
        return (up.health()[1]["status"] == "ok" and bool(_scorer_pipelines(up))
                and all(h.get("running") and not h.get("paused") for h in pipelines.values()))

    _until("stack healthy", healthy, timeout, every=0.5)


def _finish(up: UpProcess, load: Load, fault: str, duration_s: float, rate: float, recovery_s: float,
            notes: dict[str, object]) -> Run:
    load.stop()
    counts = wait_audit(up.console, up.console_token(), load.answered(), 90)
    return Run(fault, duration_s, rate, load, counts, recovery_s, notes)


# ------------------------------------------------------------------------------------------------ scenarios
def broker_sigstop(up: UpProcess, rate: float, stop_s: float, *, before_s: float = 3.0,
                   after_s: float = 3.0) -> Run:
    """SIGSTOP the broker for ``stop_s`` under load, then SIGCONT; load goes on ``after_s`` past it."""
    load = Load(up.gateway, up.key, rate, "broker-stop").start()
    time.sleep(before_s)
    emitter = _emitter_counts(up)
    broker = up.child("broker")
    pid = int(broker["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(stop_s)
        frozen = up.child("broker")
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    recovery = _recovered(up, load, resumed)
    time.sleep(max(0.0, after_s - (time.monotonic() - resumed)))
    after = up.child("broker")
    notes = {"supervisor saw": frozen["state"], "broker restarts": int(after["restarts"]) - int(broker["restarts"]),  # type: ignore[call-overload]
             "same pid": after["pid"] == pid,
             "emitter": {k: v - emitter[k] for k, v in _emitter_counts(up).items() if v != emitter[k]}}
    return _finish(up, load, "broker SIGSTOP", stop_s, rate, recovery, notes)


_EMITTER_COUNTERS = {  # the gateway emitter's (docs/reliability.md)
    "spooled": "gatewatch_emitter_events_spooled_total", "replayed": "gatewatch_emitter_events_replayed_total",
    "resent": "gatewatch_emitter_events_resent_total", "dropped": "gatewatch_emitter_events_dropped_total",
    "delivery errors": "gatewatch_emitter_delivery_errors_total", "log resets": "gatewatch_emitter_log_resets_total"}


def _emitter_counts(up: UpProcess) -> dict[str, float]:
    return {key: scrape(f"{up.gateway}/metrics", name) for key, name in _EMITTER_COUNTERS.items()}


def scorer_child_sigkill(up: UpProcess, rate: float, *, before_s: float = 3.0, after_s: float = 5.0,
                         scores_timeout: float = 120.0) -> Run:
    """SIGKILL the worker's scorer child under load; load goes on ``after_s`` after its pipelines run again;
    then wait until every answered exchange has rows from every scorer pipeline."""
    _until("scorer child running", lambda: _scorers_running(up), 120)
    scorers = sorted(_scorer_pipelines(up))
    child = scorer_child(up)
    assert child is not None, "no scorer child process under the worker"
    tag = "scorer-kill"
    load = Load(up.gateway, up.key, rate, tag).start()
    time.sleep(before_s)
    in_flight = uncommitted(up, [f"gatewatch-scorer-{name}" for name in scorers])  # read again after the restart
    killed_at = time.monotonic()
    child.kill()
    back_at = _until("scorer child restarted", lambda: _scorers_running(up, not_pid=child.pid), 120)
    time.sleep(after_s)
    load.stop_sending()
    new = scorer_child(up)
    run = _finish(up, load, "scorer child SIGKILL", back_at - killed_at, rate, back_at - killed_at,
                  {"old pid": child.pid, "new pid": new.pid if new else None, "uncommitted at the kill": in_flight})
    load_end = time.monotonic()
    answered = run.answered
    per_rid: dict[str, set[str]] = {}

    def all_scored() -> bool:
        per_rid.clear()
        for rid, names in console_query(up, _SCORES_BY_REQUEST.format(tag=tag)):
            per_rid[str(rid)] = set(names)  # type: ignore[call-overload]
        return all(per_rid.get(rid, set()) >= set(scorers) for rid in answered)

    with contextlib.suppress(AssertionError):
        _until("every exchange scored", all_scored, scores_timeout, every=2.0)
    (facts,), = console_query(up, _SCORE_FACTS.format(tag=tag))
    run.notes.update({
        "scorers": scorers,
        "unscored": sorted(rid for rid in answered if not per_rid.get(rid, set()) >= set(scorers)),
        "after kill, scored": sum(1 for r in load.results if r.rid in answered and r.sent_at > back_at
                                  and per_rid.get(r.rid, set()) >= set(scorers)),
        "after kill, answered": sum(1 for r in load.results if r.rid in answered and r.sent_at > back_at),
        "score rows (FINAL)": facts,
        "scores complete after load": round(time.monotonic() - load_end, 1),
    })
    return run


_SCORED_EVENTS = ("SELECT event_id, request_id FROM gatewatch.events FINAL "
                  "WHERE startsWith(request_id, '{tag}-')")
_SCORES_BY_REQUEST = ("SELECT e.request_id, groupUniqArray(s.scorer) FROM gatewatch.scores AS s FINAL "
                      f"INNER JOIN ({_SCORED_EVENTS}) AS e ON s.event_id = e.event_id GROUP BY e.request_id")
_SCORE_FACTS = ("SELECT count() FROM gatewatch.scores FINAL WHERE event_id IN "
                f"(SELECT event_id FROM ({_SCORED_EVENTS}))")


def warehouse_read_only(up: UpProcess, rate: float, down_s: float, *, before_s: float = 3.0,
                        after_s: float = 3.0) -> Run:
    """Make every table directory of the warehouse refuse new parts for ``down_s`` under load."""
    dirs = _table_dirs(up)
    assert dirs, "no warehouse table directories found"
    log_file = up.cwd / ".gatewatch" / "logs" / "worker.log"
    log_from = log_file.stat().st_size
    load = Load(up.gateway, up.key, rate, "warehouse-down").start()
    time.sleep(before_s)
    failures = console_metric(up, "gatewatch_consumer_sink_failures_total", pipeline="archiver")
    set_writable(dirs, False)
    try:
        frozen_at = time.monotonic()
        time.sleep(min(3.0, down_s / 2))  # a batch written just before may still commit: then nothing may
        offsets_early = committed_offsets(up, ARCHIVER_GROUP)
        time.sleep(max(0.0, down_s - (time.monotonic() - frozen_at) - 0.5))
        offsets_late = committed_offsets(up, ARCHIVER_GROUP)
        worker = http_json(f"{up.console}/healthz", timeout=10)
        audit_api = _status_of(f"{up.console}/api/audit?limit=1", up.console_token())
        archiver = worker["pipelines"]["archiver"]  # type: ignore[index]
        failures = console_metric(up, "gatewatch_consumer_sink_failures_total", pipeline="archiver") - failures
        paused = console_metric(up, "gatewatch_consumer_paused", pipeline="archiver")
    finally:
        set_writable(dirs, True)
    thawed = time.monotonic()
    recovery = _recovered(up, load, thawed)
    time.sleep(max(0.0, after_s - (time.monotonic() - thawed)))
    with log_file.open() as f:
        f.seek(log_from)
        log_text = f.read()
    notes = {"committed while down": sum(offsets_late.values()) - sum(offsets_early.values()),
             "offsets early": offsets_early, "offsets late": offsets_late, "archiver health": archiver,
             "worker status": worker["status"], "sink failures": failures, "paused": paused,  # type: ignore[index]
             "audit API while down": audit_api,
             "write failed logged": "pipeline archiver: write failed" in log_text,
             "write recovered logged": "pipeline archiver: write recovered" in log_text}
    return _finish(up, load, "warehouse read-only", thawed - frozen_at, rate, recovery, notes)


def _status_of(url: str, token: str) -> str:
    """``status: first line of the body`` of a GET (for the figures: what a reader of the console sees)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return f"{r.status}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code}: {exc.read()[:300].decode(errors='replace')}"


_frozen_dirs: list[Path] = []  # made read-only by a run: made writable again whatever happens


def _table_dirs(up: UpProcess) -> list[Path]:
    dirs = warehouse_table_dirs(up)
    _frozen_dirs.extend(dirs)
    return dirs


def _thaw_all() -> None:
    with contextlib.suppress(OSError, Exception):
        set_writable(_frozen_dirs, True)


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    home = tmp_path_factory.mktemp("up-faults")
    ports = free_ports()
    up = UpProcess(home, ports, up_env(ports, **FAST_GROUPS))
    try:
        up.wait_ready()
        yield up
        assert up.stop(signal.SIGTERM) == 0
        assert up.orphans() == []
    finally:
        _thaw_all()
        up.kill()


def _no_client_errors_and_exactly_once(run: Run) -> None:
    print("\n" + run.report())
    assert run.answered, run.report()
    assert client_errors(run.load.results) == [], run.report()
    assert run.lost == [] and run.duplicates == [], run.report()


def test_broker_sigstop_under_load(stack: UpProcess) -> None:
    _stack_healthy(stack)
    run = broker_sigstop(stack, RATE, BROKER_STOP_S)
    _no_client_errors_and_exactly_once(run)
    assert run.notes["same pid"] and run.notes["broker restarts"] == 0, run.notes  # resumed, not replaced
    emitter = run.notes["emitter"]
    assert not emitter.get("dropped") and not emitter.get("log resets"), emitter  # type: ignore[attr-defined]


def test_scorer_child_sigkill_under_load(stack: UpProcess) -> None:
    _stack_healthy(stack)
    restarts = stack.child("worker")["restarts"]
    run = scorer_child_sigkill(stack, SCORER_RATE, before_s=2.0, after_s=3.0)
    _no_client_errors_and_exactly_once(run)
    assert stack.child("worker")["restarts"] == restarts  # the worker itself stayed up
    assert run.notes["new pid"] not in (None, run.notes["old pid"]), run.notes
    assert run.notes["unscored"] == [], run.notes  # the batch in flight was re-read, not lost
    assert run.notes["after kill, scored"] == run.notes["after kill, answered"] > 0, run.notes


def test_warehouse_refusing_writes_under_load(stack: UpProcess, tmp_path: Path) -> None:
    if not can_make_read_only(tmp_path):
        pytest.skip("cannot make a directory read-only here (chattr or permissions)")
    _stack_healthy(stack)
    run = warehouse_read_only(stack, RATE, WAREHOUSE_DOWN_S)
    _no_client_errors_and_exactly_once(run)
    notes = run.notes
    assert notes["committed while down"] == 0, notes  # nothing committed for batches not written
    assert notes["sink failures"] > 0 and notes["paused"] == 1, notes  # type: ignore[operator]
    assert notes["write failed logged"] and notes["write recovered logged"], notes
    archiver = notes["archiver health"]
    assert notes["worker status"] == "degraded", notes  # the console's /healthz (200: no restart loop)
    assert archiver["paused"] and "insert into events" in str(archiver.get("error")), archiver  # type: ignore[index]
    _stack_healthy(stack, 60)  # and everything is back to normal


# ------------------------------------------------------------------------------------------------ measurement
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run each fault as a measurement and print table rows")
    parser.add_argument("--runs", type=int, default=3, help="each run starts a fresh `gatewatch up`")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s, every other one a stream")
    parser.add_argument("--before-s", type=float, default=3.0, help="load before each fault")
    parser.add_argument("--after-s", type=float, default=3.0, help="load after each fault ended")
    parser.add_argument("--broker-stop-s", type=float, default=30.0)
    parser.add_argument("--warehouse-down-s", type=float, default=10.0)
    parser.add_argument("--fast-groups", action="store_true", help="the tests' 6 s group session timeout "
                        "(default: what `gatewatch up` uses)")
    parser.add_argument("--only", choices=["broker", "scorer", "warehouse"], action="append")
    args = parser.parse_args(argv)
    around = {"before_s": args.before_s, "after_s": args.after_s}
    scenarios: dict[str, Callable[[UpProcess], Run]] = {
        "broker": lambda up: broker_sigstop(up, args.rate, args.broker_stop_s, **around),
        "scorer": lambda up: scorer_child_sigkill(up, args.rate, **around),
        "warehouse": lambda up: warehouse_read_only(up, args.rate, args.warehouse_down_s, **around)}
    rows: list[str] = []
    for n in range(args.runs):
        home = Path(tempfile.mkdtemp(prefix="gatewatch-faults-"))
        ports = free_ports()
        up = UpProcess(home, ports, up_env(ports, **(FAST_GROUPS if args.fast_groups else {})))
        try:
            up.wait_ready()
            for name, scenario in scenarios.items():
                if name in (args.only or scenarios):
                    _stack_healthy(up)
                    run = scenario(up)
                    print(f"run {n + 1}: {run.report()}", flush=True)
                    rows.append(run.row())
            print(f"stop: exit {up.stop(signal.SIGTERM)}, orphans {up.orphans()}", flush=True)
        finally:
            _thaw_all()
            up.kill()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
