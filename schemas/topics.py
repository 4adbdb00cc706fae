"""Kafka topic names (versioned with the event schema)."""

EVENTS_TOPIC = "gatewatch.events.v1"
DLQ_TOPIC = "gatewatch.events.v1.dlq"
