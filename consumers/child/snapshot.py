"""The child's metrics, shown on the parent's ``/metrics`` under the same names and labels.

The child sends ``snapshot(registry)`` about once a second; the parent rebuilds the families
(``families``) and ``MergedRegistry`` serves its own registry with them merged *by family name*: an
exposition must not repeat a family's HELP/TYPE, and the parent and the child both export every
``gatewatch_consumer_*`` family (each for its own pipelines). A series both sides have (same sample name
and labels) is shown once, the parent's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)  # JSON has no NaN/inf


def snapshot(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """The registry's families as JSON-ready mappings (exemplars are left out)."""
    return [{"name": fam.name, "doc": fam.documentation, "type": fam.type, "unit": fam.unit,
             "samples": [[s.name, s.labels, _num(s.value), None if s.timestamp is None else float(s.timestamp)]
                         for s in fam.samples]}
            for fam in registry.collect()]


def families(snap: Sequence[dict[str, Any]]) -> list[Metric]:
    out = []
    for f in snap:
        fam = Metric(f["name"], f["doc"], f["type"], f.get("unit", ""))
        for name, labels, value, ts in f["samples"]:
            fam.add_sample(name, {str(k): str(v) for k, v in labels.items()}, float(value), ts)
        out.append(fam)
    return out


def merge(local: Iterable[Metric], remote: Iterable[Metric]) -> list[Metric]:
    """``local`` with ``remote``'s samples added to the family of the same name (or as a new family)."""
    out: dict[str, Metric] = {}
    for fam in local:
        out[fam.name] = fam
    for fam in remote:
        mine = out.get(fam.name)
        if mine is None:
            out[fam.name] = fam
            continue
        if mine.type != fam.type:
            log.warning("metric family %s is a %s here and a %s in the scorer process; showing ours",
                        fam.name, mine.type, fam.type)
            continue
        merged = Metric(mine.name, mine.documentation, mine.type, mine.unit)
        seen = {(s.name, tuple(sorted(s.labels.items()))) for s in mine.samples}
        merged.samples = list(mine.samples) + [
            s for s in fam.samples if (s.name, tuple(sorted(s.labels.items()))) not in seen]
        out[fam.name] = merged
    return list(out.values())


class MergedRegistry:
    """What ``generate_latest`` needs (``collect``): a registry plus families from elsewhere."""

    def __init__(self, registry: CollectorRegistry, remote: Callable[[], Iterable[Metric]]) -> None:
        self.registry = registry
        self.remote = remote

    def collect(self) -> Iterable[Metric]:
        return merge(self.registry.collect(), self.remote())
