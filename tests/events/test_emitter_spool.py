"""Spool unit tests: torn tail, order across segments, resume after restart, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.events.segments import MAGIC, encode_record
from gateway.events.spool import Spool

pytestmark = pytest.mark.timeout(10)


def open_spool(d: Path, max_bytes: int = 1 << 20, segment: int = 1 << 10) -> Spool:
    s = Spool(d, max_bytes, segment)
    s.open()
    return s


def read_all(s: Spool, batch: int = 7) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    while True:
        records, _ = s.read(batch)
        if not records:
            return out
        out.extend(records)
        s.commit()


def records(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"tenant-%d" % (i % 3), b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i % 50))) for i in range(start, n)]


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def test_order_preserved_across_segments(tmp_path: Path) -> None:
    s = open_spool(tmp_path)
    recs = records(300)
    for k, v in recs:
        assert s.append(k, v)
    assert len(segments(tmp_path)) > 5
    assert read_all(s) == recs
    assert not s.pending
    s.reset()
    assert segments(tmp_path) == []
    assert s.disk_bytes == 0


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    s = open_spool(tmp_path, segment=1 << 20)
    recs = records(20)
    for k, v in recs:
        s.append(k, v)
    s.close()
    seg = segments(tmp_path)[-1]
    intact = seg.stat().st_size
    torn = encode_record(b"acme", b'{"half": "written"}')
    with open(seg, "ab") as f:
        f.write(torn[: len(torn) - 5])  # a crash in the middle of a write
    s = open_spool(tmp_path, segment=1 << 20)
    assert seg.stat().st_size == intact
    s.append(b"acme", b"after")  # appends land after the last intact record
    assert read_all(s) == [*recs, (b"acme", b"after")]


def test_corrupt_tail_crc_is_truncated(tmp_path: Path) -> None:
    s = open_spool(tmp_path, segment=1 << 20)
    for k, v in records(5):
        s.append(k, v)
    s.close()
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF  # last record's payload flipped: CRC mismatch
    seg.write_bytes(bytes(data))
    s = open_spool(tmp_path, segment=1 << 20)
    assert read_all(s) == records(4)


def test_torn_header_of_new_segment(tmp_path: Path) -> None:
    (tmp_path / f"{0:020d}.seg").write_bytes(MAGIC[:3])
    s = open_spool(tmp_path)
    assert not s.pending
    s.append(b"k", b"v")
    assert read_all(s) == [(b"k", b"v")]


def test_resume_offset_after_restart(tmp_path: Path) -> None:
    s = open_spool(tmp_path)
    recs = records(100)
    for k, v in recs:
        s.append(k, v)
    got: list[tuple[bytes, bytes]] = []
    while len(got) < 40:
        batch, _ = s.read(10)
        got.extend(batch)
        s.commit()
    uncommitted, _ = s.read(10)  # read but never acknowledged: must come back
    s.close()

    s = open_spool(tmp_path)
    rest = read_all(s)
    assert uncommitted and rest[: len(uncommitted)] == uncommitted
    assert got + rest == recs  # nothing skipped, nothing committed re-sent
    s.reset()
    s.close()

    s = open_spool(tmp_path)  # fully replayed spool stays empty after a restart
    assert not s.pending
    s.append(b"k", b"new")
    assert read_all(s) == [(b"k", b"new")]


def test_bounded_by_max_bytes(tmp_path: Path) -> None:
    s = open_spool(tmp_path, max_bytes=4096, segment=1024)
    accepted = sum(s.append(k, v) for k, v in records(500))
    assert 0 < accepted < 500
    assert sum(p.stat().st_size for p in segments(tmp_path)) <= 4096
    read_all(s)
    s.reset()
    assert s.append(b"k", b"room again")  # replay frees the space


def test_corrupt_record_in_closed_segment_is_skipped(tmp_path: Path) -> None:
    s = open_spool(tmp_path, segment=512)
    recs = records(60)
    for k, v in recs:
        s.append(k, v)
    s.close()
    first = segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[len(MAGIC) + 10] ^= 0xFF  # first record of the oldest segment damaged
    first.write_bytes(bytes(data))
    s = open_spool(tmp_path, segment=512)
    out: list[tuple[bytes, bytes]] = []
    skipped = 0
    while True:
        batch, sk = s.read(100)
        skipped += sk
        if not batch:
            break
        out.extend(batch)
        s.commit()
    assert skipped > 0
    assert out == recs[len(recs) - len(out):]  # the rest of the damaged segment is lost, nothing else
