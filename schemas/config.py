"""Configuration shared by the producer (gateway) and the consumers (worker): the Kafka section, and the
error every layer raises for a configuration problem (the CLI prints it, one line per error, exit 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from schemas.topics import DLQ_TOPIC, EVENTS_TOPIC


class KafkaConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    bootstrap_servers: str | None = Field(
        default=None, description="e.g. kafka-1:9092,kafka-2:9092; null -> `gatewatch up` starts an embedded Tansu "
        "broker on 127.0.0.1:<embedded.broker_port> and fills this in")
    topic: str = EVENTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    partitions: PositiveInt = Field(
        default=6, description="used when the gateway creates the topic; the upper bound on consumers per group")
    replication_factor: PositiveInt = 1
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="SASL_*: with sasl_mechanism, sasl_username, sasl_password")
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    client_id: str = "gatewatch"
    request_timeout_ms: PositiveInt = 10_000


class ConfigError(Exception):
    """A configuration problem found at start-up: ``errors`` lists every one (one line each)."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: {len(errors)} configuration error(s)")
        self.source = source
        self.errors = errors

    def __str__(self) -> str:
        if len(self.errors) == 1:
            return f"invalid configuration in {self.source}: {self.errors[0]}"
        return "\n".join([f"invalid configuration in {self.source}:"] + [f"  - {e}" for e in self.errors])


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``dotted.location: message`` line per error of ``exc`` (``prefix`` goes before each location)."""
    return [f"{prefix}{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
