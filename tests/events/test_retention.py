"""Retention (gateway/events/retention.py) on its own: bounded, released by committed offsets, rebuilt on open,
handed to a replay spool, and counting what it had to release early."""

from __future__ import annotations

from pathlib import Path

from gateway.events.retention import Retention, Runs, strip_meta
from gateway.events.spool import Spool


def _records(n: int, tag: str = "e") -> list[tuple[bytes, bytes]]:
    return [(b"tenant", f"{tag}-{i}".encode() + b"x" * 100) for i in range(n)]


def _opened(path: Path, max_bytes: int = 1 << 20, segment: int = 4096) -> Retention:
    r = Retention(path, max_bytes, segment)
    r.open()
    return r


def test_trim_releases_only_what_the_group_committed_past(tmp_path: Path) -> None:
    r = _opened(tmp_path / "r")
    for batch in range(10):  # 10 batches of 10 per partition, offsets 0..99 in each
        for p in (0, 1):
            r.add(p, batch * 10, _records(10, f"p{p}b{batch}"))
    assert r.last_base == {0: 90, 1: 90} and r.last_offset == {0: 99, 1: 99}
    full = r.disk_bytes
    assert r.trim({0: 50}) == 0  # partition 1 not committed: its records share the oldest segment
    freed = r.trim({0: 50, 1: 50})
    assert 0 < freed < full
    r.trim({0: 100, 1: 100})
    assert r.disk_bytes == 0
    assert r.unretained_from({}) == 0 and r.evicted == 0


def test_full_retention_evicts_oldest_and_counts_them(tmp_path: Path) -> None:
    r = _opened(tmp_path / "r", max_bytes=8192, segment=2048)
    for batch in range(20):
        r.add(0, batch * 10, _records(10))
    assert r.disk_bytes <= 8192
    assert r.evicted > 0
    kept = 200 - r.evicted
    assert r.unretained_from({}) == r.evicted  # nothing committed: every evicted one is at risk
    assert r.unretained_from({0: r.evicted}) == 0  # committed past the evicted ones: none at risk
    assert kept > 0


def test_zero_bytes_keeps_nothing_but_tracks_offsets(tmp_path: Path) -> None:
    r = Retention(tmp_path / "r", 0, 4096)
    r.add(2, 100, _records(30))
    assert r.disk_bytes == 0 and not (tmp_path / "r").exists()
    assert r.unretained_from({}) == 30
    assert r.unretained_from({2: 110}) == 20
    r.trim({2: 125})
    assert r.unretained_from({2: 125}) == 5


def test_reopen_rebuilds_the_index_and_detach_feeds_a_spool(tmp_path: Path) -> None:
    r = _opened(tmp_path / "r")
    r.add(0, 0, _records(25, "a"))
    r.add(1, 7, _records(5, "b"))
    r.close()
    again = _opened(tmp_path / "r")
    assert again.last_base == {0: 0, 1: 7} and again.last_offset == {0: 24, 1: 11}
    replay = tmp_path / "replay"
    moved = again.detach(replay, 3)
    assert moved >= 1 and again.disk_bytes == 0 and again.last_base == {}
    spool = Spool(replay, 1 << 30, 4096)
    spool.open()
    got: list[tuple[int, int, bytes]] = []
    while True:
        records, skipped = spool.read(1000)
        assert skipped == 0
        if not records:
            break
        got.extend((p, off, value) for p, off, (_key, value) in map(strip_meta, records))
        spool.commit()
    assert [(p, off) for p, off, _ in got] == [(0, i) for i in range(25)] + [(1, 7 + i) for i in range(5)]
    assert got[0][2].startswith(b"a-0")


def test_runs_count_and_merge() -> None:
    runs = Runs()
    for off in (*range(0, 10), *range(20, 25)):
        runs.add(off, off)
    assert runs.runs == [[0, 9, 10], [20, 24, 5]]
    assert runs.count_from(5) == 5 + 5 and runs.count_from(22) == 3 and runs.count_from(30) == 0
    runs.trim(10)
    assert runs.runs == [[20, 24, 5]] and runs.high == 24


def test_embedded_default_turns_retention_on() -> None:
    from gatewatch.config import ARCHIVER_GROUP, Settings

    assert Settings().gateway.emitter.retain_group == ARCHIVER_GROUP  # embedded broker: on
    assert Settings.model_validate({"kafka": {"bootstrap_servers": "k:9092"}}).gateway.emitter.retain_group is None
    assert Settings.model_validate({"embedded": {"retain_events": False}}).gateway.emitter.retain_group is None
    explicit = {"gateway": {"emitter": {"retain_group": None}}}
    assert Settings.model_validate(explicit).gateway.emitter.retain_group is None
