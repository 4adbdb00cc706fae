"""Configuration shared by the producer (gateway) and the consumers (worker)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from schemas.topics import DLQ_TOPIC, EVENTS_TOPIC


class KafkaConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # None -> the embedded default starts a Tansu broker and fills this in
    bootstrap_servers: str | None = None
    topic: str = EVENTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    partitions: PositiveInt = 6
    replication_factor: PositiveInt = 1
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    client_id: str = "gatewatch"
    request_timeout_ms: PositiveInt = Field(default=10_000)
