"""The parent <-> child channel: one end of a socketpair each, length-prefixed orjson frames.

A frame is a 4-byte big-endian length and an orjson object. Messages (``t`` says which):

- parent -> child: ``spec`` (first, once: what to run), ``ack`` (``id``, ``ok``; else ``kind`` transient or
  permanent and ``error``) for each ``write`` and each ``read`` (with its ``result``);
- child -> parent: ``write`` (``id``, ``pipeline``, ``tables``: one encoded insert each, see ``codec.py``),
  ``read`` (``id``, ``name``, ``args``: a scorer's named warehouse read, see ``reads.py``),
  ``status`` (the child's metric families and each pipeline's health, about once a second).

The socketpair is private to the two processes (inherited through ``pass_fds``, nothing on the file system).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

import orjson

_HEADER = struct.Struct(">I")
MAX_FRAME = 512 * 1024 * 1024  # a write of 50k wide rows stays far below


class ChannelError(Exception):
    """The peer sent something that is not a frame (the channel cannot be trusted further)."""


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, msg: dict[str, Any]) -> None:
        """Raises ``ConnectionError`` (or another ``OSError``) when the peer is gone."""
        body = orjson.dumps(msg)
        if len(body) > MAX_FRAME:
            raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
        async with self._lock:
            if self._writer.is_closing():
                raise ConnectionResetError("channel closed")
            self._writer.writelines([_HEADER.pack(len(body)), body])
            await self._writer.drain()

    async def recv(self) -> dict[str, Any] | None:
        """The next message; None when the peer closed its end (or died)."""
        try:
            header = await self._reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(header)
            if size > MAX_FRAME:
                raise ChannelError(f"frame of {size} bytes exceeds the limit")
            body = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ChannelError(f"a frame that is not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise ChannelError("a frame must hold an object")
        return msg

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(OSError):  # the peer may be gone already
            await self._writer.wait_closed()
