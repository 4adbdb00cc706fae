"""Append-only disk spool for events the broker could not take (yet).

Layout under the spool directory::

    00000000000000000007.seg   segments, ids increasing; each starts with MAGIC, then records
    cursor                     "<segment id> <offset>\\n": replay position, everything before it was
                               delivered (written to a temp file, then renamed: atomic)

A record is ``u32 length | u32 crc32(body) | body`` with ``body = u16 key length | key | value``,
big-endian. ``length`` is the body length.

Writes: ``append`` runs on the event-loop thread and copies into a 1 MiB userspace buffer, so the usual
cost is a memcpy; a full buffer costs one write(2) into the page cache. ``flush`` hands the buffer to the
OS (the emitter's syncer calls it every ``sync_interval`` while the spool is in use, and ``read`` calls it
before reading the segment being written). ``fsync_targets``/``fsync_paths`` fsync closed segments, the
active one (through a dup'ed descriptor) and the directory from a worker thread. So a process crash
loses at most the unflushed buffer (one sync interval); a machine crash at most what was not fsynced.
A torn tail write after a crash is found on ``open`` (short record or CRC mismatch in the last segment)
and truncated away.

Replay: ``read`` returns records from the cursor; ``commit`` persists the position after them; a segment
is deleted once the cursor passes its end. A crash between delivery and commit re-sends one batch
(at-least-once; consumers deduplicate by event_id). All state is touched from one thread only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

MAGIC = b"GWSPOOL1"
_HEAD = struct.Struct(">II")  # body length, crc32(body)
_KLEN = struct.Struct(">H")
MAX_KEY_BYTES = 0xFFFF
_WRITE_BUFFER = 1 << 20
_READ_CHUNK = 1 << 20
_SUFFIX = ".seg"

Record = tuple[bytes, bytes]  # (key, value)


def encode_record(key: bytes, value: bytes) -> bytes:
    body = _KLEN.pack(len(key)) + key + value
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def decode_records(buf: bytes | memoryview, max_records: int) -> tuple[list[Record], int, bool]:
    """Parse complete records from ``buf``: (records, bytes consumed, corrupt record met)."""
    view = memoryview(buf)
    out: list[Record] = []
    pos = 0
    while len(out) < max_records and pos + _HEAD.size <= len(view):
        length, crc = _HEAD.unpack_from(view, pos)
        end = pos + _HEAD.size + length
        if end > len(view):
            break
        body = view[pos + _HEAD.size : end]
        if length < _KLEN.size or zlib.crc32(body) != crc:
            return out, pos, True
        (klen,) = _KLEN.unpack_from(body)
        if _KLEN.size + klen > length:
            return out, pos, True
        out.append((bytes(body[2 : 2 + klen]), bytes(body[2 + klen :])))
        pos = end
    return out, pos, False


def valid_length(data: bytes) -> int:
    """Bytes of ``data`` (a whole segment) up to the end of its last intact record."""
    if data[: len(MAGIC)] != MAGIC:
        return 0
    _, used, _ = decode_records(memoryview(data)[len(MAGIC) :], 1 << 62)  # one pass (slicing bytes copies)
    return len(MAGIC) + used


@dataclass(frozen=True, slots=True)
class SyncTargets:
    paths: tuple[Path, ...]  # closed segments to fsync by path
    fd: int | None  # dup of the active segment's descriptor (closed by fsync_paths)
    directory: Path


def fsync_paths(targets: SyncTargets) -> None:
    """Blocking: run in a worker thread."""
    try:
        for path in targets.paths:
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:  # deleted meanwhile: fine
                os.fsync(f.fileno())
        if targets.fd is not None:
            os.fsync(targets.fd)
        dfd = os.open(targets.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if targets.fd is not None:
            os.close(targets.fd)


class Spool:
    """Bounded append-only log of (key, value) records, replayed oldest first."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._sizes: dict[int, int] = {}  # segment id -> size on disk (+ buffered, for the active one)
        self._disk_bytes = 0
        self._writer: BinaryIO | None = None
        self._w_id = -1  # active (written) segment, -1 when none
        self._next_id = 0
        self._cursor = (0, len(MAGIC))  # committed replay position
        self._read_end: tuple[int, int] | None = None  # position after the last read() batch
        self._unsynced: list[Path] = []
        self._dirty = False
        self.opened = False

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Blocking (run it in a thread): load segments and cursor, truncate a torn tail."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = sorted(int(p.stem) for p in self.directory.glob("*" + _SUFFIX) if p.stem.isdigit())
        cur_id, cur_off = self._load_cursor()
        for seg in [s for s in ids if s < cur_id]:  # fully replayed before a crash
            self._path(seg).unlink(missing_ok=True)
        ids = [s for s in ids if s >= cur_id]
        for seg in ids:
            self._sizes[seg] = self._path(seg).stat().st_size
        if ids:
            last = ids[-1]
            self._truncate_torn_tail(last)
            if cur_id not in self._sizes:
                cur_id, cur_off = ids[0], len(MAGIC)
            self._cursor = (cur_id, min(max(cur_off, len(MAGIC)), self._sizes[cur_id]))
            self._writer = open(self._path(last), "ab", buffering=_WRITE_BUFFER)
            self._w_id = last
        self._next_id = max([cur_id - 1, *ids]) + 1
        if not ids:
            self._cursor = (self._next_id, len(MAGIC))
        self._disk_bytes = sum(self._sizes.values())
        self.opened = True
        if self.pending:
            log.info("spool %s holds %d bytes from a previous run", self.directory, self.pending_bytes)

    def close(self) -> None:
        """Blocking: flush and fsync everything, then close."""
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
        fsync_paths(SyncTargets(tuple(self._unsynced), None, self.directory))
        self._unsynced.clear()
        self._dirty = False
        self.opened = False

    # -- writing ---------------------------------------------------------------------------------
    def append(self, key: bytes, value: bytes) -> bool:
        """Append one record; False (nothing written) when the spool is full. Raises OSError."""
        rec = encode_record(key, value)
        if self._disk_bytes + len(rec) + len(MAGIC) > self.max_bytes:
            return False
        writer = self._writer
        if writer is None or self._sizes[self._w_id] + len(rec) > self.segment_bytes:
            writer = self._roll()
        writer.write(rec)
        self._sizes[self._w_id] += len(rec)
        self._disk_bytes += len(rec)
        self._dirty = True
        return True

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def fsync_targets(self) -> SyncTargets | None:
        """Flush, and say what a worker thread should fsync (None: nothing changed since last time)."""
        if not self._dirty:
            return None
        self.flush()
        fd = os.dup(self._writer.fileno()) if self._writer is not None else None
        targets = SyncTargets(tuple(self._unsynced), fd, self.directory)
        self._unsynced.clear()
        self._dirty = False
        return targets

    def _roll(self) -> BinaryIO:
        if self._writer is not None:
            self._writer.close()  # fsynced later by the syncer (fsync_targets)
            self._unsynced.append(self._path(self._w_id))
        seg = self._next_id
        self._next_id += 1
        writer = open(self._path(seg), "ab", buffering=_WRITE_BUFFER)
        writer.write(MAGIC)
        self._writer, self._w_id = writer, seg
        self._sizes[seg] = len(MAGIC)
        self._disk_bytes += len(MAGIC)
        if self._cursor[0] not in self._sizes:
            self._cursor = (min(self._sizes), len(MAGIC))
        return writer

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
        if seg == self._w_id and self._writer is not None:
            self._writer.close()
            self._writer, self._w_id = None, -1
        rest = [s for s in self._sizes if s > seg]
        self._cursor = (min(rest) if rest else self._next_id, len(MAGIC))
        self._read_end = None
        self._store_cursor()  # before the unlink: a crash in between re-sends, never skips
        self._disk_bytes -= self._sizes.pop(seg)
        self._path(seg).unlink(missing_ok=True)
        with contextlib.suppress(ValueError):
            self._unsynced.remove(self._path(seg))

    def _read_at(self, seg: int, off: int, limit: int, max_records: int) -> tuple[list[Record], int, bool]:
        with open(self._path(seg), "rb") as f:
            f.seek(off)
            buf = f.read(min(limit - off, _READ_CHUNK))
            records, used, corrupt = decode_records(buf, max_records)
            if not records and not corrupt and len(buf) >= _HEAD.size:  # one record bigger than a chunk
                length, _ = _HEAD.unpack_from(buf)
                need = min(limit - off, _HEAD.size + length)
                buf += f.read(need - len(buf))
                records, used, corrupt = decode_records(buf, max_records)
            if not records and not corrupt:  # truncated record in a closed segment
                corrupt = True
        return records, used, corrupt

    # -- files -----------------------------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.directory / f"{seg:020d}{_SUFFIX}"

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

    def _truncate_torn_tail(self, seg: int) -> None:
        path = self._path(seg)
        data = path.read_bytes()
        good = valid_length(data)
        if good == len(data):
            return
        log.warning("spool segment %s: torn tail, truncating %d bytes", path.name, len(data) - good)
        with open(path, "r+b") as f:
            if good == 0:  # even the header is torn
                f.truncate(0)
                f.write(MAGIC)
                good = len(MAGIC)
            else:
                f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        self._sizes[seg] = good
