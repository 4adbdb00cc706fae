"""Gateway Prometheus metrics (default registry, few labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LAT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("gatewatch_requests_total", "Requests answered", ["endpoint", "code"])
LATENCY = Histogram("gatewatch_request_duration_seconds", "Request duration (to last byte)", ["endpoint"],
                    buckets=_LAT_BUCKETS)
TTFT = Histogram("gatewatch_time_to_first_token_seconds", "Time to first token/byte", ["endpoint"],
                 buckets=_LAT_BUCKETS)
IN_FLIGHT = Gauge("gatewatch_requests_in_flight", "Requests being served")
UPSTREAM_ATTEMPTS = Counter("gatewatch_upstream_attempts_total", "Upstream attempts", ["deployment", "result"])
UPSTREAM_RETRIES = Counter("gatewatch_upstream_retries_total", "Retries (and fallbacks) after a failed attempt",
                           ["model"])
CIRCUIT_OPEN = Gauge("gatewatch_circuit_open", "1 when a deployment's circuit is open", ["deployment"])
TOKENS = Counter("gatewatch_tokens_total", "Tokens by direction", ["model", "direction"])
COST = Counter("gatewatch_cost_usd_total", "Cost in USD from the price table", ["model"])
STREAM_ERRORS = Counter("gatewatch_stream_errors_total", "Streams ended by an error event", ["reason"])
EVENTS_SANITIZED = Counter("gatewatch_events_sanitized_total",
                           "Events whose strings held code points JSON cannot carry (stored escaped)")
EVENTS_TRUNCATED = Counter("gatewatch_events_truncated_total",
                           "Events whose texts were cut to fit Kafka's message size (each cut is marked)")
CLIENT_DISCONNECTS = Counter("gatewatch_client_disconnects_total", "Clients that went away mid-request")

_children: dict[tuple[int, tuple[str, ...]], object] = {}


def child(metric, *values: str):  # type: ignore[no-untyped-def]
    """``metric.labels(*values)`` cached: the per-request label lookup takes a lock and builds a tuple."""
    key = (id(metric), values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found
