"""DetectionCache: the spans found in a text, remembered so the same text is not analysed again.

Real traffic repeats itself: an application sends the same system prompt with every request, and a chat
client re-sends the whole conversation on every turn, so without a cache a ten-turn chat has its first
message analysed ten times (a 1 KB history with dates and amounts costs ~6 ms of analysis per turn on the
dev box). Analysis is deterministic for a given engine, entity set and thresholds, which one ``Redactor``
fixes, so a cached answer is the answer.

What it keeps: a keyed BLAKE2b digest of (scope, entities, text) -> the spans (entity, offsets, score).
Never the text: a cache must not become a second store of the PII it protects. The digest key is random
per process. LRU-bounded by entries (``RedactionConfig.cache_entries``; 0 = off).

Scope: callers pass the tenant. A shared cache would let one tenant learn, by timing, whether another
tenant sent a given text (a hit answers ~0.3 ms sooner) — the side channel prompt caches have had — so
hits are only ever served within the scope that filled them.

Thread-safe (the NER engine and long texts run in the redaction thread pool).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from prometheus_client import Counter

from gateway.redaction.spans import Span

LOOKUPS = Counter("gatewatch_pii_cache_lookups_total",
                  "PII detections answered from the detection cache (hit) or analysed (miss)", ["result"])
_HIT, _MISS = LOOKUPS.labels("hit"), LOOKUPS.labels("miss")


class DetectionCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._key = os.urandom(32)
        self._data: OrderedDict[bytes, tuple[Span, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def key(self, scope: str, entities: tuple[str, ...], text: str) -> bytes:
        h = hashlib.blake2b(key=self._key, digest_size=16)
        h.update(scope.encode("utf-8", "surrogatepass"))
        h.update(b"\x00" + "\x1f".join(entities).encode() + b"\x00")
        h.update(text.encode("utf-8", "surrogatepass"))  # lone surrogates can arrive in JSON strings
        return h.digest()

    def get(self, key: bytes) -> tuple[Span, ...] | None:
        with self._lock:
            found = self._data.get(key)
            if found is not None:
                self._data.move_to_end(key)
        (_MISS if found is None else _HIT).inc()
        return found

    def put(self, key: bytes, spans: tuple[Span, ...]) -> None:
        with self._lock:
            self._data[key] = spans
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
