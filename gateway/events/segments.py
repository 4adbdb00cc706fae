"""The on-disk segment format shared by the spool (spool.py) and the retention (retention.py).

A directory of segments, ids increasing, each ``<id:020d>.seg``: ``MAGIC``, then records. A record is
``u32 length | u32 crc32(body) | body`` with ``body = u16 key length | key | value``, big-endian;
``length`` is the body length.

``SegmentFiles`` owns the files: the active segment's writer (a 1 MiB userspace buffer, so an append
usually costs a memcpy), rolling to a new segment, deletion, the torn-tail repair after a crash, and the
fsync contract both stores share — ``fsync_targets`` (on the event-loop thread) says what changed,
``fsync_paths`` (in a worker thread) fsyncs closed segments, the active one through a dup'ed descriptor,
and the directory. So a process crash loses at most the unflushed buffer (one sync interval), a machine
crash at most what was not fsynced. What the records mean (replay cursor, partitions and offsets) is the
stores' business, not this module's.
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
HEAD = struct.Struct(">II")  # body length, crc32(body)
_KLEN = struct.Struct(">H")
MAX_KEY_BYTES = 0xFFFF
SUFFIX = ".seg"
_WRITE_BUFFER = 1 << 20

Record = tuple[bytes, bytes]  # (key, value)


def encode_record(key: bytes, value: bytes) -> bytes:
    body = _KLEN.pack(len(key)) + key + value
    return HEAD.pack(len(body), zlib.crc32(body)) + body


def decode_records(buf: bytes | memoryview, max_records: int) -> tuple[list[Record], int, bool]:
    """Parse complete records from ``buf``: (records, bytes consumed, corrupt record met)."""
    view = memoryview(buf)
    out: list[Record] = []
    pos = 0
    while len(out) < max_records and pos + HEAD.size <= len(view):
        length, crc = HEAD.unpack_from(view, pos)
        end = pos + HEAD.size + length
        if end > len(view):
            break
        body = view[pos + HEAD.size : end]
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


def segment_ids(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*" + SUFFIX) if p.stem.isdigit())


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


class SegmentFiles:
    """The segment files of one directory and the writer of its active segment (see the module docstring).

    ``active`` is the written segment's id (-1: none); ``next_id`` the id the next ``roll`` takes."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._writer: BinaryIO | None = None
        self.active = -1
        self.next_id = 0
        self._unsynced: list[Path] = []
        self._dirty = False

    def path(self, seg: int) -> Path:
        return self.directory / f"{seg:020d}{SUFFIX}"

    def reopen(self, seg: int) -> None:
        """Append to existing segment ``seg`` (after ``open`` found it last)."""
        self._writer = open(self.path(seg), "ab", buffering=_WRITE_BUFFER)
        self.active = seg

    def roll(self) -> int:
        """Close the active segment (fsynced later, by ``fsync_targets``) and start a new one; its id."""
        self.close_active(sync_later=True)
        seg = self.next_id
        self.next_id += 1
        self._writer = open(self.path(seg), "ab", buffering=_WRITE_BUFFER)
        self._writer.write(MAGIC)
        self.active = seg
        self._dirty = True
        return seg

    def write(self, rec: bytes) -> None:
        assert self._writer is not None, "roll() first"
        self._writer.write(rec)
        self._dirty = True

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close_active(self, sync_later: bool = False) -> None:
        if self._writer is not None:
            self._writer.close()
            if sync_later:
                self._unsynced.append(self.path(self.active))
            self._writer, self.active = None, -1

    def delete(self, seg: int) -> None:
        if seg == self.active:
            self.close_active()
        path = self.path(seg)
        path.unlink(missing_ok=True)
        with contextlib.suppress(ValueError):
            self._unsynced.remove(path)

    def forget_unsynced(self) -> None:
        """The files were moved away (``Retention.detach``): nothing of them is left to fsync here."""
        self._unsynced.clear()
        self._dirty = False

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

    def close(self) -> None:
        """Blocking: flush and fsync everything, then close."""
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer, self.active = None, -1
        fsync_paths(SyncTargets(tuple(self._unsynced), None, self.directory))
        self._unsynced.clear()
        self._dirty = False

    def repair_tail(self, seg: int, data: bytes) -> int:
        """Truncate a torn tail (a crash mid-write) off segment ``seg`` whose bytes are ``data``; the
        segment's good length (at least the header: a segment whose header is torn is rewritten empty)."""
        good = valid_length(data)
        if good == len(data):
            return good
        path = self.path(seg)
        log.warning("segment %s/%s: torn tail, truncating %d bytes", path.parent.name, path.name, len(data) - good)
        with open(path, "r+b") as f:
            f.truncate(good)
            if good == 0:
                f.write(MAGIC)
                good = len(MAGIC)
            f.flush()
            os.fsync(f.fileno())
        return good
