"""Worker configuration (the ``worker:`` section of gatewatch.yaml), validated once at startup.

Example::

    worker:
      warehouse_dsn: http://default:secret@clickhouse:8123/gatewatch   # default: chdb:///<home>/warehouse
      pipelines: [archiver, toxicity, factuality, drift]
      batch: {max_records: 500, max_wait_ms: 1000}
      batch_overrides: {factuality: {max_records: 64}}
      console_port: 8081
      events_retention_days: 90
      scorers: {device: cuda, toxicity: {backend: detoxify}}
      scorer_process: auto   # auto | inline | child: where the scorer pipelines run (see below)
      scorer_nice: 10        # CPU niceness added in that child process
      scorer_sched: idle     # idle (SCHED_IDLE: runs only on CPU nothing else wants) | normal
      scorer_child_stall_s: 120   # a child silent this long (hung, stopped) is killed and restarted
      start_retry_base_s: 1       # a pipeline that cannot start is retried: 1 s doubling to 30 s, jittered
      start_retry_max_s: 30
      start_timeout_s: 30         # one start attempt's broker calls (a frozen broker makes them hang)
      alerts: {rules_file: /etc/gatewatch/alerts.yaml, interval_s: 30}   # default: <home>/alerts.yaml if present

``scorer_process``: ``child`` runs the scorer pipelines (every pipeline but the archiver) in one child
process of the worker, at ``scorer_nice``, so CPU-heavy scoring never delays the audit log (consumers/child);
``inline`` runs them in the worker's own process (tests, debugging); ``auto`` (default) means ``child`` when
the archiver and at least one scorer pipeline run in this worker, else ``inline``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from consumers.warehouse import DEFAULT_RETENTION_DAYS, validate_dsn

try:  # the scorers land separately; until they do, their section stays a plain mapping
    from consumers.scorers.config import ScorersConfig as _ScorersConfig
except ImportError:  # pragma: no cover - depends on the tree
    _ScorersConfig = None  # type: ignore[assignment,misc]

ARCHIVER = "archiver"
DEFAULT_PIPELINES = (ARCHIVER, "toxicity", "factuality", "drift")


class BatchConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    max_records: PositiveInt = 500  # a batch closes at this many messages...
    max_wait_ms: PositiveInt = 1000  # ...or this long after its first message


class AlertsConfig(BaseModel):
    """``worker.alerts``: the alert evaluator (consumers/alerts, docs/alerts.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    rules_file: Path | None = None  # None -> <home>/alerts.yaml; the evaluator runs only when the file exists
    interval_s: PositiveFloat = 30.0  # the rules file's interval_s overrides it
    query_timeout_s: PositiveFloat = 30.0
    notify_attempts: PositiveInt = 3  # per webhook and transition, backoff doubling from notify_backoff_s
    notify_backoff_s: PositiveFloat = 0.5

    def rules_path(self, home: Path) -> Path:
        return (self.rules_file or home / "alerts.yaml").expanduser()


class WorkerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # None -> chdb:///<home>/warehouse (filled in by ``from_settings``)
    warehouse_dsn: str | None = None
    pipelines: tuple[str, ...] = DEFAULT_PIPELINES
    batch: BatchConfig = BatchConfig()
    # pipeline name -> batch; the audit log flushes sooner by default (lag target: p99 <= 2 s)
    batch_overrides: dict[str, BatchConfig] = Field(
        default_factory=lambda: {ARCHIVER: BatchConfig(max_records=2000, max_wait_ms=200)})
    max_rows_per_insert: PositiveInt = 50_000
    retry_base_s: PositiveFloat = 0.2  # sink/scorer retry backoff (with jitter), partitions paused meanwhile
    retry_max_s: PositiveFloat = 5.0
    # a pipeline that cannot start (broker unreachable, model missing) is retried until it runs: backoff from
    # start_retry_base_s doubling to start_retry_max_s, with jitter; a permanent failure (a configuration
    # problem) retries at the cap. Each attempt's broker calls (topics, connecting, joining the consumer
    # group) give up after start_timeout_s, which must exceed the group's session timeout.
    start_retry_base_s: PositiveFloat = 1.0
    start_retry_max_s: PositiveFloat = 30.0
    start_timeout_s: PositiveFloat = 30.0
    shutdown_timeout_s: PositiveFloat = 30.0  # to finish the batch in flight
    # consumer group timing and fetch bounds (aiokafka)
    session_timeout_ms: PositiveInt = 10_000
    heartbeat_interval_ms: PositiveInt = 3_000
    max_poll_interval_ms: PositiveInt = 300_000
    fetch_max_bytes: PositiveInt = 16 * 1024 * 1024
    max_partition_fetch_bytes: PositiveInt = 2 * 1024 * 1024
    fetch_max_wait_ms: PositiveInt = 500  # how long a broker may hold a fetch for more data (aiokafka default)
    lag_interval_s: PositiveFloat = 1.0  # how often gatewatch_consumer_lag is refreshed (and after each commit)
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8081, ge=0, le=65535)  # 0 = any free port (tests)
    events_retention_days: PositiveInt = DEFAULT_RETENTION_DAYS
    # a ScorersConfig once consumers.scorers is installed
    scorers: Any = Field(default_factory=dict, validate_default=True)
    alerts: AlertsConfig = AlertsConfig()
    scorer_process: Literal["auto", "inline", "child"] = "auto"
    scorer_nice: int = Field(default=10, ge=0, le=19)  # added to the worker's niceness in the scorer child
    # idle: the scorer child's threads run under SCHED_IDLE — any other runnable task preempts them at once,
    # so on a full machine scoring only gets what is left (it falls behind; the audit log does not);
    # normal: only the niceness applies
    scorer_sched: Literal["idle", "normal"] = "idle"
    # the scorer child reports about once a second; silent this long (from its spawn: imports and first
    # status included) it is killed and restarted
    scorer_child_stall_s: float = Field(default=120.0, ge=2.0)

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
        unknown = [name for name in value if known is not None and name not in known]
        if unknown:
            raise ValueError(f"unknown pipelines {unknown}; known: {sorted(known or ())}")
        return value

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorers(cls, value: Any) -> Any:
        if _ScorersConfig is None or isinstance(value, _ScorersConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError("scorers must be a mapping")  # noqa: TRY004 -- pydantic wants ValueError
        try:
            return _ScorersConfig.model_validate(value)
        except ValidationError as exc:
            raise ValueError("; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None

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


def known_pipelines() -> set[str] | None:
    """The archiver plus the scorer names; None while the scorers package is absent (not checked)."""
    try:
        from consumers.scorers import SCORER_FACTORIES
    except ImportError:
        return None
    return {ARCHIVER, *SCORER_FACTORIES}
