"""Append-only disk spool for events the broker could not take (yet).

Layout under the spool directory::

    00000000000000000007.seg   segments, ids increasing; each starts with MAGIC, then records
    cursor                     "<segment id> <offset>\\n": replay position, everything before it was
                               delivered (written to a temp file, then renamed: atomic)

Records and files as in segments.py (CRC-framed records, a buffered writer, the fsync contract).
``append`` runs on the event-loop thread; the emitter's syncer flushes and fsyncs every sync interval
while the spool is in use, and ``read`` flushes before reading the segment being written. A torn tail
write after a crash is found on ``open`` (short record or CRC mismatch in the last segment) and
truncated away.

Replay: ``read`` returns records from the cursor; ``commit`` persists the position after them; a segment
is deleted once the cursor passes its end. A crash between delivery and commit re-sends one batch
(at-least-once; consumers deduplicate by event_id). All state is touched from one thread only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gateway.events.segments import (
    HEAD,
    MAGIC,
    Record,
    SegmentFiles,
    SyncTargets,
    decode_records,
    encode_record,
    segment_ids,
)

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20


class Spool:
    """Bounded append-only log of (key, value) records, replayed oldest first."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._files = SegmentFiles(self.directory)
        self._sizes: dict[int, int] = {}  # segment id -> size on disk (+ buffered, for the active one)
        self._disk_bytes = 0
        self._cursor = (0, len(MAGIC))  # committed replay position
        self._read_end: tuple[int, int] | None = None  # position after the last read() batch
        self.opened = False

    @property
    def _w_id(self) -> int:
        return self._files.active  # the active (written) segment, -1 when none

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Blocking (run it in a thread): load segments and cursor, truncate a torn tail."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = segment_ids(self.directory)
        cur_id, cur_off = self._load_cursor()
        for seg in [s for s in ids if s < cur_id]:  # fully replayed before a crash
            self._files.path(seg).unlink(missing_ok=True)
        ids = [s for s in ids if s >= cur_id]
        for seg in ids:
            self._sizes[seg] = self._files.path(seg).stat().st_size
        if ids:
            last = ids[-1]
            self._sizes[last] = self._files.repair_tail(last, self._files.path(last).read_bytes())
            if cur_id not in self._sizes:
                cur_id, cur_off = ids[0], len(MAGIC)
            self._cursor = (cur_id, min(max(cur_off, len(MAGIC)), self._sizes[cur_id]))
            self._files.reopen(last)
        self._files.next_id = max([cur_id - 1, *ids]) + 1
        if not ids:
            self._cursor = (self._files.next_id, len(MAGIC))
        self._disk_bytes = sum(self._sizes.values())
        self.opened = True
        if self.pending:
            log.info("spool %s holds %d bytes from a previous run", self.directory, self.pending_bytes)

    def close(self) -> None:
        """Blocking: flush and fsync everything, then close."""
        self._files.close()
        self.opened = False

    # -- writing ---------------------------------------------------------------------------------
    def append(self, key: bytes, value: bytes) -> bool:
        """Append one record; False (nothing written) when the spool is full. Raises OSError."""
        rec = encode_record(key, value)
        if self._disk_bytes + len(rec) + len(MAGIC) > self.max_bytes:
            return False
        if self._w_id < 0 or self._sizes[self._w_id] + len(rec) > self.segment_bytes:
            self._roll()
        self._files.write(rec)
        self._sizes[self._w_id] += len(rec)
        self._disk_bytes += len(rec)
        return True

    def flush(self) -> None:
        self._files.flush()

    def fsync_targets(self) -> SyncTargets | None:
        """Flush, and say what a worker thread should fsync (None: nothing changed since last time)."""
        return self._files.fsync_targets()

    def _roll(self) -> None:
        seg = self._files.roll()
        self._sizes[seg] = len(MAGIC)
        self._disk_bytes += len(MAGIC)
        if self._cursor[0] not in self._sizes:
            self._cursor = (min(self._sizes), len(MAGIC))

    # -- replay ----------------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        return self.pending_bytes > 0

    @property
    def pending_bytes(self) -> int:
        """Record bytes not yet replayed (segment headers excluded)."""
        seg, off = self._cursor
        done = off - len(MAGIC) if seg in self._sizes else 0
        return self._disk_bytes - len(MAGIC) * len(self._sizes) - done

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    def read(self, max_records: int) -> tuple[list[Record], int]:
        """Records from the cursor on (at most one segment's worth): (records, corrupt bytes skipped).

        Returns no records only when everything written has been read. Call ``commit`` once they are
        delivered; reading again without a commit starts from the same cursor."""
        skipped = 0
        while self._sizes:
            seg, off = self._cursor
            if seg == self._w_id:
                self.flush()
            limit = self._sizes[seg]
            if off >= limit:
                if seg == self._w_id:
                    break
                self._finish_segment(seg)
                continue
            records, used, corrupt = self._read_at(seg, off, limit, max_records)
            if corrupt:
                log.warning("spool segment %s: corrupt record at offset %d, skipping %d bytes",
                            seg, off + used, limit - off - used)
                skipped += limit - off - used
                self._read_end = (seg, limit)
            else:
                self._read_end = (seg, off + used)
            if records:
                return records, skipped
            self.commit()
        return [], skipped

    def commit(self) -> None:
        """Persist the position after the last ``read`` batch (atomic rename)."""
        if self._read_end is None:
            return
        self._cursor, self._read_end = self._read_end, None
        self._store_cursor()

    @property
    def read_to_end(self) -> bool:
        """The last ``read`` returned everything written so far."""
        pos = self._read_end or self._cursor
        return self._w_id < 0 or pos == (self._w_id, self._sizes[self._w_id])

    def reset(self) -> bool:
        """If everything was replayed, delete the active segment (the next append starts a new one)."""
        if self._w_id < 0:
            return True
        if self._cursor != (self._w_id, self._sizes[self._w_id]):
            return False
        self._finish_segment(self._w_id)
        return True

    def _finish_segment(self, seg: int) -> None:
        if seg == self._w_id:
            self._files.close_active()
        rest = [s for s in self._sizes if s > seg]
        self._cursor = (min(rest) if rest else self._files.next_id, len(MAGIC))
        self._read_end = None
        self._store_cursor()  # before the unlink: a crash in between re-sends, never skips
        self._disk_bytes -= self._sizes.pop(seg)
        self._files.delete(seg)

    def _read_at(self, seg: int, off: int, limit: int, max_records: int) -> tuple[list[Record], int, bool]:
        with open(self._files.path(seg), "rb") as f:
            f.seek(off)
            buf = f.read(min(limit - off, _READ_CHUNK))
            records, used, corrupt = decode_records(buf, max_records)
            if not records and not corrupt and len(buf) >= HEAD.size:  # one record bigger than a chunk
                length, _ = HEAD.unpack_from(buf)
                need = min(limit - off, HEAD.size + length)
                buf += f.read(need - len(buf))
                records, used, corrupt = decode_records(buf, max_records)
            if not records and not corrupt:  # truncated record in a closed segment
                corrupt = True
        return records, used, corrupt

    # -- files -----------------------------------------------------------------------------------
    def _load_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.directory / "cursor").read_text().split()
            return int(seg), int(off)
        except (FileNotFoundError, ValueError):
            return 0, len(MAGIC)

    def _store_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(f"{self._cursor[0]} {self._cursor[1]}\n")
        os.replace(tmp, self.directory / "cursor")
