"""Gateway configuration models: defaults in code, validated once at start (see gatewatch.config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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

_frozen = ConfigDict(frozen=True, extra="forbid")


class Timeouts(BaseModel):
    model_config = _frozen
    connect_s: PositiveFloat = 5.0
    first_byte_s: PositiveFloat = 60.0  # time to response headers (and, for streams, the first event)
    total_s: PositiveFloat = 600.0


class CircuitBreakerConfig(BaseModel):
    model_config = _frozen
    failure_threshold: PositiveInt = 5  # consecutive failures that open the circuit
    cooldown_s: PositiveFloat = 30.0  # open -> half-open after this long


class RetryConfig(BaseModel):
    model_config = _frozen
    max_attempts: PositiveInt = 3  # total attempts across deployments
    backoff_base_s: NonNegativeFloat = 0.05
    backoff_max_s: NonNegativeFloat = 2.0
    retry_on_status: list[int] = Field(default_factory=lambda: [408, 429, 500, 502, 503, 504])


class Deployment(BaseModel):
    model_config = _frozen
    name: str
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # upstream model name; None -> the alias itself
    api_key_env: str | None = None
    api_key_file: Path | None = None
    weight: PositiveFloat = 1.0
    priority: NonNegativeInt = 0  # lower is tried first; weights balance within a priority
    provider: str = "openai"  # recorded as gen_ai.provider.name
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts | None = None  # None -> routing.timeouts

    @model_validator(mode="after")
    def _check(self) -> Deployment:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {self.base_url!r})")
        if self.api_key_env and self.api_key_file:
            raise ValueError("set api_key_env or api_key_file, not both")
        return self


class Price(BaseModel):
    model_config = _frozen
    input_per_1m: NonNegativeFloat = 0.0  # USD per 1M input tokens
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
    max_connections: PositiveInt = 1000  # pooled connections per process (all upstreams)
    max_connections_per_host: NonNegativeInt = 0  # 0 = unlimited


class EmitterConfig(BaseModel):
    model_config = _frozen
    queue_max: PositiveInt = 50_000  # in-memory events before spilling to the spool
    batch_max: PositiveInt = 500
    compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "zstd"  # aiokafka lz4 is level 9: costlier
    linger_ms: NonNegativeInt = 20  # a batch that is not full waits this long for more events
    spool_max_bytes: PositiveInt = 1 << 30  # 1 GiB; beyond this events are dropped (and counted)
    spool_segment_bytes: PositiveInt = 16 << 20
    retry_interval_s: PositiveFloat = 2.0  # how often to probe the broker while spooling
    # Retention (gateway/events/recovery.py): every delivered event stays on disk until this consumer group
    # (the archiver, "gatewatch-archiver") has committed past it, and is sent again if the broker comes back
    # without it. None: off — a replicated Kafka keeps what it acknowledged; the embedded default turns it on.
    retain_group: str | None = None
    retain_max_bytes: NonNegativeInt = 256 << 20  # past this the oldest are released early (counted); 0: none kept
    retain_poll_s: PositiveFloat = 1.0  # how often committed and end offsets are read
    # after the broker came back empty, send nothing for this long (emit() spools), so that consumers still at
    # old-log positions see the new log while it is short, and rewind (consumers/sources/kafka.py); about the
    # worker's retry_max_s (5 s): a consumer retrying a commit with its partitions paused fetches only after
    reset_hold_s: NonNegativeFloat = 5.0


class TenantConfig(BaseModel):
    model_config = _frozen
    capture: Literal["full", "hashes", "none"] = "full"


class GatewayConfig(BaseModel):
    model_config = _frozen
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    instance_id: str | None = None  # None -> hostname-pid
    max_body_bytes: PositiveInt = 8 << 20  # 8 MiB
    # JSON nesting allowed in a body (a chat body needs ~6 levels; tool schemas some more): deeper is a 400
    # before any work, well below the 254 levels orjson can serialise for the upstream and the event
    max_json_depth: int = Field(default=64, ge=8, le=200)
    max_messages: PositiveInt = 4096  # chat messages / Responses input items / completions prompts in one request
    max_inputs: PositiveInt = 2048  # embeddings inputs in one request (OpenAI's own limit)
    shutdown_grace_s: NonNegativeFloat = 20.0
    emitter: EmitterConfig = EmitterConfig()
    keys_file: Path | None = None  # None -> $GATEWATCH_HOME/keys.yaml
    allow_unauthenticated: bool = False  # dev only: requests without a key go to tenant "anonymous"
