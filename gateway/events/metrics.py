"""Emitter metrics (process-wide, default registry). Per-event facts are counters; nothing per tenant."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EMITTED = Counter("gatewatch_emitter_events_emitted", "Events handed to EventEmitter.emit()")
DELIVERED = Counter(
    "gatewatch_emitter_events_delivered", "Events acknowledged by Kafka (acks=all), live or replayed"
)
SPOOLED = Counter("gatewatch_emitter_events_spooled", "Events written to the disk spool")
REPLAYED = Counter("gatewatch_emitter_events_replayed", "Spooled events delivered to Kafka on replay")
DROPPED = Counter("gatewatch_emitter_events_dropped", "Events lost, by reason", ["reason"])
DELIVERY_ERRORS = Counter(
    "gatewatch_emitter_delivery_errors", "Failed send batches and broker connection attempts", ["error"]
)
QUEUE_DEPTH = Gauge("gatewatch_emitter_queue_depth", "Events waiting in memory for the producer")
SPOOL_BYTES = Gauge("gatewatch_emitter_spool_bytes", "Bytes in spool segment files on disk")
BROKER_UP = Gauge("gatewatch_emitter_broker_up", "1 while the producer is connected to the broker")
# retention (EmitterConfig.retain_group): delivered events kept until the archiver committed past them
RETAINED_BYTES = Gauge("gatewatch_emitter_retained_bytes", "Bytes of delivered events kept until archived")
UNRETAINED = Counter(
    "gatewatch_emitter_events_unretained",
    "Delivered events released before the archiver committed them (retention full or off): lost if the broker "
    "then forgets them",
)
LOG_RESETS = Counter("gatewatch_emitter_log_resets", "Times the broker came back without events it had acknowledged")
RESENT = Counter("gatewatch_emitter_events_resent", "Retained events sent again after the broker lost them")
SEND_SECONDS = Histogram(
    "gatewatch_emitter_send_batch_seconds",
    "Time from the first send() of a batch to the last acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# drop reasons: spool_full (spool at spool_max_bytes), spool_error (disk write failed), too_large (over the
# producer's max_request_size), rejected (broker refused the record for good), corrupt (spool record failed
# its CRC on replay), serialize (event.to_json() raised), closed (emit() after stop()), broker_lost (acknowledged
# by a broker that then forgot it, before the archiver committed it, and no longer retained: recovery.py)
DROP_REASONS = ("spool_full", "spool_error", "too_large", "rejected", "corrupt", "serialize", "closed", "broker_lost")
for _reason in DROP_REASONS:
    DROPPED.labels(_reason)
