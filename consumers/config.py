"""Worker configuration: the ``worker:`` section of gatewatch.yaml, a typed part of the root configuration
(``gatewatch.config.Settings.worker``), so it is validated with every other section on every load (every
error at once). Light to import: no ClickHouse client, no torch (``gatewatch config check`` and the gateway
load it too).

Example::

    worker:
      warehouse_dsn: http://default:secret@clickhouse:8123/gatewatch   # default: chdb:///<home>/warehouse
      pipelines: [archiver, toxicity, factuality, drift]
      batch: {max_records: 500, max_wait_ms: 1000}
      batch_overrides: {factuality: {max_records: 64}}
      scorers: {device: cuda, toxicity: {backend: detoxify}}
      alerts: {rules_file: /etc/gatewatch/alerts.yaml, interval_s: 30}   # default: <home>/alerts.yaml if present
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from consumers.dsn import DEFAULT_RETENTION_DAYS, validate_dsn
from consumers.scorers import SCORER_FACTORIES
from consumers.scorers.config import ScorersConfig
from schemas.config import KafkaConfig

ARCHIVER = "archiver"
DEFAULT_PIPELINES = (ARCHIVER, "toxicity", "factuality", "drift")
_frozen = ConfigDict(frozen=True, extra="forbid")


class BatchConfig(BaseModel):
    model_config = _frozen
    max_records: PositiveInt = Field(default=500, description="a batch closes at this many messages...")
    max_wait_ms: PositiveInt = Field(default=1000, description="...or this long after its first message")


class AlertsConfig(BaseModel):
    """``worker.alerts``: the alert evaluator (consumers/alerts, docs/alerts.md)."""

    model_config = _frozen
    enabled: bool = True
    rules_file: Path | None = Field(
        default=None, description="null -> <home>/alerts.yaml; the evaluator runs only when the file exists")
    interval_s: PositiveFloat = Field(default=30.0, description="the rules file's interval_s overrides it")
    query_timeout_s: PositiveFloat = 30.0
    notify_attempts: PositiveInt = Field(
        default=3, description="per webhook and transition, backoff doubling from notify_backoff_s")
    notify_backoff_s: PositiveFloat = 0.5

    def rules_path(self, home: Path) -> Path:
        return (self.rules_file or home / "alerts.yaml").expanduser()


class WorkerConfig(BaseModel):
    """The consumer worker (``gatewatch worker``): pipelines, warehouse, console, scorers, alerts."""

    model_config = _frozen
    warehouse_dsn: str | None = Field(
        default=None, description="chdb:///<abs dir>, chdb://memory or http(s)://user:pass@host:8123/db; "
        "null -> chdb:///<home>/warehouse")
    pipelines: tuple[str, ...] = Field(
        default=DEFAULT_PIPELINES, description="the archiver (the audit log) and the scorers to run")
    batch: BatchConfig = BatchConfig()
    batch_overrides: dict[str, BatchConfig] = Field(
        default_factory=lambda: {ARCHIVER: BatchConfig(max_records=2000, max_wait_ms=200)},
        description="pipeline name -> batch; the audit log flushes sooner by default (lag target: p99 <= 2 s)")
    max_rows_per_insert: PositiveInt = 50_000
    retry_base_s: PositiveFloat = Field(
        default=0.2, description="sink/scorer retry backoff (with jitter), partitions paused meanwhile")
    retry_max_s: PositiveFloat = 5.0
    start_retry_base_s: PositiveFloat = Field(
        default=1.0, description="a pipeline that cannot start (broker unreachable, model missing) is retried "
        "until it runs: backoff from start_retry_base_s doubling to start_retry_max_s, with jitter; a permanent "
        "failure (a configuration problem) retries at the cap")
    start_retry_max_s: PositiveFloat = 30.0
    start_timeout_s: PositiveFloat = Field(
        default=30.0, description="each start attempt's broker calls (topics, connecting, joining the consumer "
        "group) give up after this long (a frozen broker makes them hang); must exceed session_timeout_ms")
    shutdown_timeout_s: PositiveFloat = Field(default=30.0, description="to finish the batch in flight")
    session_timeout_ms: PositiveInt = Field(default=10_000, description="consumer group timing (aiokafka)")
    heartbeat_interval_ms: PositiveInt = 3_000
    max_poll_interval_ms: PositiveInt = 300_000
    fetch_max_bytes: PositiveInt = 16 * 1024 * 1024
    max_partition_fetch_bytes: PositiveInt = 2 * 1024 * 1024
    fetch_max_wait_ms: PositiveInt = Field(
        default=500, description="how long a broker may hold a fetch for more data (aiokafka default)")
    lag_interval_s: PositiveFloat = Field(
        default=1.0, description="how often gatewatch_consumer_lag is refreshed (and after each commit)")
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8081, ge=0, le=65535, description="0 = any free port (tests)")
    events_retention_days: PositiveInt = DEFAULT_RETENTION_DAYS
    scorers: ScorersConfig = Field(default_factory=ScorersConfig, description="the scoring models (docs/scorers.md)")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="the alert evaluator (docs/alerts.md)")
    scorer_process: Literal["auto", "inline", "child"] = Field(
        default="auto", description="where the scorer pipelines run. child: every pipeline but the archiver in "
        "one child process of the worker, at scorer_nice, so CPU-heavy scoring never delays the audit log "
        "(consumers/child); inline: in the worker's own process (tests, debugging); auto: child when the "
        "archiver and at least one scorer pipeline run in this worker, else inline")
    scorer_nice: int = Field(default=10, ge=0, le=19, description="added to the worker's niceness in the scorer child")
    scorer_sched: Literal["idle", "normal"] = Field(
        default="idle", description="idle: the scorer child's threads run under SCHED_IDLE (any other runnable "
        "task preempts them at once, so on a full machine scoring only gets what is left: it falls behind, the "
        "audit log does not); normal: only the niceness applies")
    scorer_child_stall_s: float = Field(
        default=120.0, ge=2.0, description="the scorer child reports about once a second; silent this long "
        "(from its spawn: imports and first status included: hung, stopped) it is killed and restarted")

    @model_validator(mode="after")
    def _start_timeout(self) -> WorkerConfig:
        if self.start_timeout_s * 1000 <= self.session_timeout_ms:
            raise ValueError(f"start_timeout_s ({self.start_timeout_s:g}) must exceed session_timeout_ms "
                             f"({self.session_timeout_ms}): a start joins the consumer group, which may wait "
                             "out a departed member's session")
        return self

    @field_validator("warehouse_dsn")
    @classmethod
    def _dsn(cls, value: str | None) -> str | None:
        return None if value is None else validate_dsn(value)

    @field_validator("pipelines")
    @classmethod
    def _pipelines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("pipelines must not repeat a name")
        known = known_pipelines()
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown pipelines {unknown}; known: {sorted(known)}")
        return value

    def child_pipelines(self) -> tuple[str, ...]:
        """The pipelines the scorer child process runs; empty when everything runs in the worker itself."""
        scorers = tuple(name for name in self.pipelines if name != ARCHIVER)
        if self.scorer_process == "inline" or (self.scorer_process == "auto" and ARCHIVER not in self.pipelines):
            return ()
        return scorers

    def batch_for(self, pipeline: str) -> BatchConfig:
        return self.batch_overrides.get(pipeline, self.batch)

    def dsn(self, home: Path) -> str:
        return self.warehouse_dsn or f"chdb://{home.expanduser().resolve() / 'warehouse'}"

    def consumer_options(self) -> dict[str, Any]:
        return {"session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "max_poll_interval_ms": self.max_poll_interval_ms,
                "fetch_max_bytes": self.fetch_max_bytes,
                "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
                "fetch_max_wait_ms": self.fetch_max_wait_ms}


class WorkerSettings(Protocol):
    """What the worker process reads of the root configuration (``gatewatch.config.Settings`` is one)."""

    @property
    def home(self) -> Path: ...
    @property
    def kafka(self) -> KafkaConfig: ...
    @property
    def worker(self) -> WorkerConfig: ...


def known_pipelines() -> set[str]:
    """The archiver plus the scorer names."""
    return {ARCHIVER, *SCORER_FACTORIES}
