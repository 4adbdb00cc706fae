"""Deterministic text, token counts and embeddings for the mock upstream.

Token counts come from one simple tokenizer, ``TOKEN_RE = r"\\w+|[^\\w\\s]"``: every run of word
characters is one token and so is every other non-space character. Prompt counts cover all the text a
request carries (every message's text content, ``instructions``, prompts, embedding inputs; a token array
counts its length), with no per-message overhead. Completion counts are exact: the generator emits whole
tokens (a word, ``,`` or the closing ``.``), so ``count_tokens(text) == completion_tokens``.

Replies depend only on (model, prompt), so a streamed reply concatenates to the non-streamed one.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import orjson

TOKEN_RE = re.compile(r"\w+|[^\w\s]")

_WORDS = (
    "the of and to in is that for it as with was on be by at this from or an are not have but which "
    "their one all were when we there can more if will about some would into other time only new these "
    "model stream token gateway request reply signal data value system answer mock latency river "
    "mountain light quiet blue green simple clear fast steady bright open early late small large"
).split()
# Each piece is exactly one token. One byte of a hash stream picks one piece: 256 entries, 16 of them commas.
_PIECES = tuple(" " + _WORDS[i % len(_WORDS)] for i in range(240)) + (",",) * 16
_FIRST = tuple(w.capitalize() for w in _WORDS)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` under ``TOKEN_RE``."""
    return len(TOKEN_RE.findall(text))


class Generation(NamedTuple):
    """One choice: its pieces (one token each, concatenating to the text) and why it ended."""

    pieces: Sequence[str]
    finish_reason: str  # "stop" | "length"

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)


def prompt_key(model: str, payload: object) -> bytes:
    """A 64-byte key derived from the model name and the prompt payload (any JSON value)."""
    return hashlib.blake2b(orjson.dumps([model, payload])).digest()


def _byte_stream(key: bytes, n: int) -> bytes:
    """n pseudo-random bytes; a prefix of the stream for any larger n (so a cut reply is a prefix)."""
    return key[:n] if n <= len(key) else key + hashlib.shake_256(key).digest(n - len(key))


def generate(key: bytes, natural_tokens: int, limit: int | None) -> Generation:
    """The reply for ``key``: ``natural_tokens`` tokens ending in ``.`` unless ``limit`` cuts it first."""
    natural = max(1, natural_tokens)
    cut = limit is not None and limit < natural
    n = limit if cut and limit is not None else natural
    if n <= 0:
        return Generation((), "length")
    stream = _byte_stream(key, n)
    pieces = [_FIRST[stream[0] % len(_FIRST)]]
    pieces += [_PIECES[b] for b in stream[1:]]
    if not cut and n > 1:
        pieces[-1] = "."
        if pieces[-2] == ",":
            pieces[-2] = " and"
    return Generation(pieces, "length" if cut else "stop")


def generate_many(key: bytes, count: int, natural_tokens: int, limit: int | None) -> list[Generation]:
    """``count`` replies for one prompt (chat ``n``); choice 0 equals ``generate(key, ...)``."""
    keys = [key] + [hashlib.blake2b(key + i.to_bytes(4, "little")).digest() for i in range(1, count)]
    return [generate(k, natural_tokens, limit) for k in keys]


def embedding(key: bytes, dimensions: int) -> list[float]:
    """A deterministic unit vector of ``dimensions`` floats for ``key``."""
    raw = hashlib.shake_256(b"embedding" + key).digest(2 * dimensions)
    values = struct.unpack(f"<{dimensions}h", raw)
    norm = math.hypot(*values) or 1.0
    scale = 1.0 / norm
    return [v * scale for v in values]


def encode_base64(vector: Iterable[float]) -> str:
    """Little-endian float32, base64 — what OpenAI returns for ``encoding_format: base64``."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def text_of_content(content: object, out: list[str]) -> None:
    """Append the text of a message ``content`` (string, or list of parts carrying ``text``)."""
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)


def messages_text(messages: Sequence[object]) -> str:
    """All the text of chat ``messages`` (or Responses ``input`` items), joined by newlines."""
    out: list[str] = []
    for message in messages:
        if isinstance(message, dict):
            text_of_content(message.get("content"), out)
        elif isinstance(message, str):
            out.append(message)
    return "\n".join(out)
