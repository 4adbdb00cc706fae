"""Prometheus metrics of the consumer pipelines (names ``gatewatch_consumer_*``, few labels).

``gatewatch_consumer_pipeline_up`` (0/1) and ``gatewatch_consumer_pipeline_start_failures_total`` are the
alert metrics for pipelines that do not run: a pipeline whose start fails is retried with backoff
(``consumers/startup.py``) and is 0 meanwhile; alert on ``gatewatch_consumer_pipeline_up == 0`` held for a
few minutes.

One ``ConsumerMetrics`` per registry; the worker uses the process-wide default registry, tests may pass
their own ``CollectorRegistry``.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_BATCH_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
PIPELINE_UP = "gatewatch_consumer_pipeline_up"
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        ns = "gatewatch_consumer"
        self.registry = registry
        self.lag = Gauge(f"{ns}_lag", "Messages behind the high watermark (sum over assigned partitions)",
                         ["pipeline"], registry=registry)
        self.batch_size = Histogram(f"{ns}_batch_size", "Events per batch", ["pipeline"],
                                    buckets=_BATCH_SIZES, registry=registry)
        self.batch_seconds = Histogram(f"{ns}_batch_seconds", "Batch latency: scored, written and committed",
                                       ["pipeline"], buckets=_SECONDS, registry=registry)
        self.events = Counter(f"{ns}_events", "Valid events consumed", ["pipeline"], registry=registry)
        self.rows_written = Counter(f"{ns}_rows_written", "Rows inserted into the warehouse",
                                    ["pipeline", "table"], registry=registry)
        self.dead_lettered = Counter(f"{ns}_dead_lettered", "Messages dead-lettered (or skipped when this "
                                     "pipeline does not own the DLQ)", ["pipeline", "reason"], registry=registry)
        self.scored = Counter(f"{ns}_scored_events", "Events scored", ["pipeline", "scorer"], registry=registry)
        self.scorer_seconds = Histogram(f"{ns}_scorer_seconds", "Time in score() per batch",
                                        ["pipeline", "scorer"], buckets=_SECONDS, registry=registry)
        self.sink_failures = Counter(f"{ns}_sink_failures", "Failed warehouse writes", ["pipeline", "kind"],
                                     registry=registry)
        self.retries = Counter(f"{ns}_retries", "Retried steps (score, write, commit)", ["pipeline", "step"],
                               registry=registry)
        self.commit_failures = Counter(f"{ns}_commit_failures", "Offset commits lost to a rebalance",
                                       ["pipeline"], registry=registry)
        self.dropped_rows = Counter(f"{ns}_dropped_rows", "Rows refused permanently and not tied to an event",
                                    ["pipeline", "table"], registry=registry)
        self.pipeline_up = Gauge(PIPELINE_UP, "1 while the pipeline runs; 0 while it starts, retries its start, "
                                 "cannot be built or after its loop died", ["pipeline"], registry=registry)
        self.start_failures = Counter(f"{ns}_pipeline_start_failures", "Failed pipeline start attempts (each "
                                      "retried with backoff); kind: transient or permanent", ["pipeline", "kind"],
                                      registry=registry)
        self.paused = Gauge(f"{ns}_paused", "1 while the pipeline holds its partitions paused (sink failing)",
                            ["pipeline"], registry=registry)


_default: ConsumerMetrics | None = None


def default_metrics() -> ConsumerMetrics:
    """The metrics on the process-wide registry (created once: Prometheus refuses duplicate names)."""
    global _default
    if _default is None:
        _default = ConsumerMetrics()
    return _default
