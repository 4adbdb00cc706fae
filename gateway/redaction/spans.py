"""Detected spans (positions, type and score; never the value) and overlap resolution."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    entity_type: str
    start: int
    end: int
    score: float

    def shifted(self, offset: int) -> Span:
        return Span(self.entity_type, self.start + offset, self.end + offset, self.score)


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans. Overlapping detections merge into their union (so no part of
    either is left raw) and keep the type of the higher score (the longer span on ties)."""
    ordered = sorted(spans, key=lambda s: (s.start, -(s.end - s.start), -s.score))
    merged: list[Span] = []
    for span in ordered:
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            keep = span if span.score > last.score else last
            merged[-1] = Span(keep.entity_type, last.start, max(last.end, span.end), max(last.score, span.score))
        else:
            merged.append(span)
    return merged
