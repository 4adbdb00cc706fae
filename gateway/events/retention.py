"""Retention: events the broker acknowledged, kept on disk until the archiver has committed past them.

The embedded broker (Tansu, ``memory://``) forgets its topics when its process dies, acknowledged records
and group offsets alike. The emitter therefore keeps every delivered event here, with the partition and
offset the broker gave it, until the archiver group's committed offset for that partition passes it
(``trim``). When the broker comes back without them (``recovery.py``) the retained segments are handed
to a replay spool (``detach``) and sent again; duplicates are harmless (the archive is keyed by event_id).

Layout under ``<spool>/retained/``: segments in the spool's format (``spool.py``: MAGIC, then CRC-framed
records), each record's key prefixed with ``META`` = (partition i32, base offset i64, index u32) of the
batch that carried it, so offset = base + index. Nothing else is stored: ``open`` rebuilds the index by
scanning the segments (bounded by ``max_bytes``).

Bounded: past ``max_bytes`` the oldest segment is evicted. Evicted (or never written, with
``max_bytes=0``) events are remembered as offset runs per partition (``Runs``, in memory), so that if the
broker later forgets them, ``unretained_from`` says how many acknowledged, not yet archived events are
lost for good. Writes go through a userspace buffer; the emitter's syncer fsyncs like the spool's.
All state is touched from the event-loop thread only; ``open`` runs in a worker thread before use.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gateway.events.segments import (
    MAGIC,
    MAX_KEY_BYTES,
    Record,
    SegmentFiles,
    SyncTargets,
    decode_records,
    encode_record,
    segment_ids,
    valid_length,
)

log = logging.getLogger(__name__)

META = struct.Struct(">iqI")  # partition, base offset of the batch, index in the batch
_MAX_RUNS = 256  # per partition; beyond it neighbouring runs are merged (counts become estimates)


def strip_meta(record: Record) -> tuple[int, int, Record]:
    """A retained record -> (partition, offset, (key, value))."""
    key, value = record
    partition, base, index = META.unpack_from(key)
    return partition, base + index, (key[META.size :], value)


class Runs:
    """Offsets of one partition as sorted runs ``[lo, hi, count]`` (count = hi - lo + 1 unless merged)."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def add(self, lo: int, hi: int) -> None:
        last = self.runs[-1] if self.runs else None
        if last is not None and last[1] + 1 == lo:
            last[1], last[2] = hi, last[2] + hi - lo + 1
            return
        self.runs.append([lo, hi, hi - lo + 1])
        if len(self.runs) > _MAX_RUNS:  # merge the two oldest: bounded memory, approximate counts
            a, b = self.runs[0], self.runs.pop(1)
            a[1], a[2] = b[1], a[2] + b[2]

    def extend(self, other: Runs) -> None:
        for lo, hi, n in other.runs:
            self.runs.append([lo, hi, n])
        self.runs.sort()

    def count_from(self, offset: int) -> int:
        """How many offsets are ``>= offset``."""
        total = 0
        for lo, hi, n in self.runs:
            if lo >= offset:
                total += n
            elif hi >= offset:  # straddling: proportional (exact for a contiguous run)
                total += -(-n * (hi - offset + 1) // (hi - lo + 1))
        return total

    def trim(self, offset: int) -> None:
        """Forget offsets below ``offset`` (whole runs only)."""
        self.runs = [r for r in self.runs if r[1] >= offset]

    @property
    def high(self) -> int:
        return max((r[1] for r in self.runs), default=-1)

    def __bool__(self) -> bool:
        return bool(self.runs)


@dataclass(slots=True)
class _Segment:
    size: int
    runs: dict[int, Runs] = field(default_factory=dict)

    def below(self, committed: dict[int, int]) -> bool:
        """Every record of this segment is below the partition's committed offset."""
        return all(runs.high < committed.get(p, 0) for p, runs in self.runs.items())


class Retention:
    """Bounded on-disk log of delivered records, released by committed offsets. See the module docstring."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._files = SegmentFiles(self.directory)
        self._segments: dict[int, _Segment] = {}
        self._disk_bytes = 0
        self.unretained: dict[int, Runs] = {}  # acknowledged, not confirmed archived, no longer on disk
        self.last_base: dict[int, int] = {}  # partition -> base offset of the last acknowledged batch
        self.last_offset: dict[int, int] = {}  # partition -> last acknowledged offset
        self.evicted = 0  # records evicted or not written (for the emitter's counter)
        self._write_failed = False
        self.opened = False

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Blocking (run it in a thread): index the segments left by a previous run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = segment_ids(self.directory)
        for seg in ids:
            self._segments[seg] = self._index(seg, truncate=seg == ids[-1])
        self._disk_bytes = sum(s.size for s in self._segments.values())
        self._files.next_id = (ids[-1] + 1) if ids else 0
        self.opened = True
        if ids:
            log.info("retention %s holds %d bytes of delivered events not yet confirmed archived",
                     self.directory, self._disk_bytes)

    def close(self) -> None:
        """Blocking: flush and fsync, then close."""
        self._files.close()
        self.opened = False

    # -- writing ---------------------------------------------------------------------------------
    def add(self, partition: int, base: int, records: list[Record]) -> None:
        """Records of one acknowledged batch (offsets ``base``, ``base + 1``, ...), in order."""
        if not records:
            return
        last = base + len(records) - 1
        self.last_base[partition] = base
        self.last_offset[partition] = last
        for index, (key, value) in enumerate(records):
            offset = base + index
            try:
                kept = self._write(partition, offset, META.pack(partition, base, index) + key, value)
            except OSError as exc:  # disk full, ...: the event is still in the broker, only not retained
                if not self._write_failed:
                    log.warning("retention %s: write failed (%s); delivered events not retained", self.directory, exc)
                self._write_failed, kept = True, False
            if not kept:
                self.unretained.setdefault(partition, Runs()).add(offset, offset)
                self.evicted += 1

    def _write(self, partition: int, offset: int, key: bytes, value: bytes) -> bool:
        if not self.opened or len(key) > MAX_KEY_BYTES:
            return False
        rec = encode_record(key, value)
        if len(rec) + len(MAGIC) > self.max_bytes:
            return False
        while self._disk_bytes + len(rec) + len(MAGIC) > self.max_bytes and self._segments:
            self._evict_oldest()
        active = self._files.active
        if active < 0 or self._segments[active].size + len(rec) > self.segment_bytes:
            active = self._files.roll()
            self._segments[active] = _Segment(len(MAGIC))
            self._disk_bytes += len(MAGIC)
        self._files.write(rec)
        seg = self._segments[active]
        seg.size += len(rec)
        seg.runs.setdefault(partition, Runs()).add(offset, offset)
        self._disk_bytes += len(rec)
        return True

    def _evict_oldest(self) -> None:
        seg = min(self._segments)
        evicted = self._segments[seg]
        for partition, runs in evicted.runs.items():
            self.unretained.setdefault(partition, Runs()).extend(runs)
            self.evicted += sum(r[2] for r in runs.runs)
        self._delete(seg)

    # -- release ---------------------------------------------------------------------------------
    def trim(self, committed: dict[int, int]) -> int:
        """Delete segments the group has committed past; returns bytes freed."""
        freed = 0
        for seg in sorted(self._segments):
            if not self._segments[seg].below(committed):
                break  # keep order: a younger segment is never deleted before an older one
            freed += self._segments[seg].size
            self._delete(seg)
        for partition, runs in self.unretained.items():
            runs.trim(committed.get(partition, 0))
        return freed

    def unretained_from(self, committed: dict[int, int]) -> int:
        """Acknowledged events at or past ``committed`` that are no longer (or never were) retained."""
        return sum(runs.count_from(committed.get(p, 0)) for p, runs in self.unretained.items())

    def detach(self, dest: Path, first_id: int) -> int:
        """Move every segment into ``dest`` as ids ``first_id``, ``first_id + 1``, ... (a spool directory);
        forget offsets. Returns the number of segments moved. Fast (renames); blocking only briefly."""
        self._files.close_active()
        dest.mkdir(parents=True, exist_ok=True)
        target = SegmentFiles(dest)
        moved = 0
        for seg in sorted(self._segments):
            os.replace(self._files.path(seg), target.path(first_id + moved))
            moved += 1
        self._segments.clear()
        self._disk_bytes = 0
        self._files.forget_unsynced()
        self.unretained.clear()
        self.last_base.clear()
        self.last_offset.clear()
        return moved

    # -- syncing (same contract as Spool) --------------------------------------------------------
    def fsync_targets(self) -> SyncTargets | None:
        return self._files.fsync_targets()

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    # -- files -----------------------------------------------------------------------------------
    def _delete(self, seg: int) -> None:
        self._disk_bytes -= self._segments.pop(seg).size
        self._files.delete(seg)

    def _index(self, seg: int, truncate: bool) -> _Segment:
        data = self._files.path(seg).read_bytes()
        good = self._files.repair_tail(seg, data) if truncate else valid_length(data)
        index = _Segment(max(good, len(MAGIC)))
        records, _, _ = decode_records(memoryview(data)[len(MAGIC) : good], 1 << 62) if good else ([], 0, False)
        for key, _value in records:
            partition, base, i = META.unpack_from(key)
            index.runs.setdefault(partition, Runs()).add(base + i, base + i)
            if base + i > self.last_offset.get(partition, -1):
                self.last_offset[partition], self.last_base[partition] = base + i, base
        return index
