"""Gateway configuration models: defaults in code, validated once at start (the root configuration,
gatewatch.config, composes them), and ``GatewaySettings``: what the gateway process reads of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

if TYPE_CHECKING:
    from gateway.governance.config import GovernanceConfig

from gateway.providers import provider_for

_frozen = ConfigDict(frozen=True, extra="forbid")


class Timeouts(BaseModel):
    model_config = _frozen
    connect_s: PositiveFloat = 5.0
    first_byte_s: PositiveFloat = Field(
        default=60.0, description="time to response headers (and, for streams, the first event)")
    total_s: PositiveFloat = 600.0


class CircuitBreakerConfig(BaseModel):
    model_config = _frozen
    failure_threshold: PositiveInt = Field(default=5, description="consecutive failures that open the circuit")
    cooldown_s: PositiveFloat = Field(default=30.0, description="open -> half-open after this long")


class RetryConfig(BaseModel):
    model_config = _frozen
    max_attempts: PositiveInt = Field(default=3, description="total attempts across deployments")
    backoff_base_s: NonNegativeFloat = 0.05
    backoff_max_s: NonNegativeFloat = 2.0
    retry_on_status: list[int] = Field(default_factory=lambda: [408, 429, 500, 502, 503, 504],
                                       description="upstream statuses that move on to the next deployment")


class Deployment(BaseModel):
    model_config = _frozen
    name: str
    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(default=None, description="upstream model name; null -> the alias itself")
    api_key_env: str | None = Field(default=None, description="environment variable holding the upstream's API key")
    api_key_file: Path | None = Field(default=None, description="or a file holding it (not both)")
    weight: PositiveFloat = Field(default=1.0, description="weighted load balancing within a priority")
    priority: NonNegativeInt = Field(default=0, description="lower is tried first; weights balance within a priority")
    provider: str = Field(default="openai", description="the kind of upstream (gateway/providers/: auth header, "
                          "URL shape), recorded as gen_ai.provider.name: azure_openai is Azure OpenAI, any other "
                          "value an OpenAI-compatible server")
    api_version: str | None = Field(default=None, description="Azure OpenAI's api-version (required there, only there)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers sent to this upstream")
    timeouts: Timeouts | None = Field(default=None, description="null -> routing.timeouts")

    @model_validator(mode="after")
    def _check(self) -> Deployment:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {self.base_url!r})")
        if self.api_key_env and self.api_key_file:
            raise ValueError("set api_key_env or api_key_file, not both")
        errors = provider_for(self.provider).check(self)
        if errors:
            raise ValueError("; ".join(errors))
        return self


class Price(BaseModel):
    model_config = _frozen
    input_per_1m: NonNegativeFloat = Field(default=0.0, description="USD per 1M input tokens")
    output_per_1m: NonNegativeFloat = 0.0


class ModelAlias(BaseModel):
    model_config = _frozen
    deployments: list[Deployment] = Field(min_length=1)
    price: Price | None = None


class RoutingConfig(BaseModel):
    model_config = _frozen
    retry: RetryConfig = RetryConfig()
    timeouts: Timeouts = Timeouts()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    max_connections: PositiveInt = Field(default=1000, description="pooled connections per process (all upstreams)")
    max_connections_per_host: NonNegativeInt = Field(default=0, description="0 = unlimited")


class EmitterConfig(BaseModel):
    model_config = _frozen
    queue_max: PositiveInt = Field(default=50_000, description="in-memory events before spilling to the spool")
    batch_max: PositiveInt = 500
    compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = Field(
        default="zstd", description="aiokafka lz4 is level 9: costlier")
    linger_ms: NonNegativeInt = Field(
        default=20, description="a batch that is not full waits this long for more events")
    spool_max_bytes: PositiveInt = Field(
        default=1 << 30, description="1 GiB; beyond this events are dropped (and counted)")
    spool_segment_bytes: PositiveInt = 16 << 20
    retry_interval_s: PositiveFloat = Field(default=2.0, description="how often to probe the broker while spooling")
    retain_group: str | None = Field(
        default=None, description="retention (gateway/events/recovery.py): every delivered event stays on disk until "
                                  "this consumer group (the archiver, \"gatewatch-archiver\") has committed past it, "
                                  "and is sent again if the broker comes back without it. null: off — a replicated "
                                  "Kafka keeps what it acknowledged. Unset, the embedded broker (no "
                                  "kafka.bootstrap_servers) turns it on for the archiver's group.")
    retain_max_bytes: NonNegativeInt = Field(
        default=256 << 20, description="past this the oldest are released early (counted); 0: none kept")
    retain_poll_s: PositiveFloat = Field(default=1.0, description="how often committed and end offsets are read")
    reset_hold_s: NonNegativeFloat = Field(
        default=5.0, description="after the broker came back empty, send nothing for this long (emit() spools), so "
                                 "that consumers still at old-log positions see the new log while it is short, and "
                                 "rewind (consumers/sources/kafka.py); about the worker's retry_max_s (5 s): a "
                                 "consumer retrying a commit with its partitions paused fetches only after its backoff")


class TenantConfig(BaseModel):
    model_config = _frozen
    capture: Literal["full", "hashes", "none"] = Field(
        default="full", description="what the events store of prompts and answers")


class GatewayConfig(BaseModel):
    model_config = _frozen
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    instance_id: str | None = Field(
        default=None, description="null -> hostname-pid; recorded on every event with a sequence number")
    max_body_bytes: PositiveInt = Field(default=8 << 20, description="larger requests get 413 (8 MiB)")
    max_json_depth: int = Field(
        default=64, ge=8, le=200, description="JSON nesting allowed in a body (a chat body needs ~6 levels; tool "
                                              "schemas some more): deeper is a 400 before any work, well below the "
                                              "254 levels orjson can serialise for the upstream and the event "
                                              "(error nesting_too_deep, param names where)")
    max_messages: PositiveInt = Field(
        default=4096, description="chat messages / Responses input items / completions prompts in one request "
                                  "(400 above)")
    max_inputs: PositiveInt = Field(
        default=2048, description="embeddings inputs in one request (OpenAI's own limit; 400 too_many_items above)")
    shutdown_grace_s: NonNegativeFloat = Field(
        default=20.0, description="SIGTERM: stop accepting, let requests and streams finish this long")
    emitter: EmitterConfig = Field(
        default_factory=EmitterConfig, description="events to Kafka, spooled to disk while the broker is away")
    keys_file: Path | None = Field(default=None, description="null -> $GATEWATCH_HOME/keys.yaml")
    allow_unauthenticated: bool = Field(
        default=False, description="dev only: requests without a key go to tenant \"anonymous\"")


class GatewaySettings(Protocol):
    """The gateway's slice of the root configuration: what ``create_app`` reads (``gatewatch.config.Settings``
    is one). The gateway declares it; the composition root satisfies it, so nothing here imports upwards."""

    @property
    def gateway(self) -> GatewayConfig: ...
    @property
    def governance(self) -> GovernanceConfig: ...
    @property
    def routing(self) -> RoutingConfig: ...
    @property
    def models(self) -> Mapping[str, ModelAlias]: ...
    @property
    def keys_file(self) -> Path: ...
    @property
    def policy_dir(self) -> Path: ...
    @property
    def usage_file(self) -> Path: ...
    def tenant(self, name: str) -> TenantConfig: ...
