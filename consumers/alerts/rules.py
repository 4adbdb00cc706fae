"""The alert rules file (``$GATEWATCH_HOME/alerts.yaml`` by default), validated once, every error at once.

Example::

    webhooks:
      ops: {url: https://hooks.example.com/alerts, kind: json, headers: {Authorization: Bearer x}}
      slack: {url: https://hooks.slack.com/services/T/B/X, kind: slack}
    rules:
      - id: high-error-rate
        metric: error_rate
        window: 5m
        op: ">"
        threshold: 0.05
        for: 1                  # fire on the 2nd consecutive breaching evaluation
        group_by: [tenant]
        severity: critical
        notify: [ops, slack]
        cooldown: 10m
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
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

Metric = Literal["error_rate", "latency_p99_ms", "ttft_p99_ms", "toxicity_rate", "contradiction_rate",
                 "drift_flag", "pii_block_rate", "budget_consumption", "custom_sql"]
GroupColumn = Literal["tenant", "model"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_READ_ONLY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
SUMMARY_FIELDS = ("rule", "metric", "value", "threshold", "op", "severity", "window", "group", "tenant", "model")
DEFAULT_SUMMARY = "{rule}: {metric} {value} {op} {threshold} ({group})"


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration`` for whole units: 300 s -> ``5m``."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse_duration(value: Any) -> timedelta:
    """``30s`` / ``5m`` / ``2h`` / ``1d``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"duration must look like 30s, 5m, 2h or 1d, got {value!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class WebhookConfig(_Frozen):
    url: str
    kind: Literal["json", "slack"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: PositiveFloat = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"webhook url must be http(s)://host/..., got {value!r}")
        return value


class Budget(_Frozen):
    """Budget per tenant for ``budget_consumption`` (value = used this calendar month / budget)."""

    unit: Literal["usd", "tokens"] = "usd"
    default: PositiveFloat | None = None  # tenants not listed; None -> not checked
    tenants: dict[str, PositiveFloat] = Field(default_factory=dict)

    def for_tenant(self, tenant: str) -> float | None:
        return self.tenants.get(tenant, self.default)


class AlertRule(_Frozen):
    id: str
    metric: Metric
    window: timedelta = timedelta(minutes=5)
    op: Op = ">"
    threshold: float
    for_: int = Field(default=0, ge=0, alias="for")  # breaching evaluations in a row before firing, minus one
    group_by: tuple[GroupColumn, ...] = ("tenant",)
    filter: dict[GroupColumn, str | list[str]] = Field(default_factory=dict)
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = DEFAULT_SUMMARY
    notify: tuple[str, ...] = ()
    cooldown: timedelta = timedelta(minutes=10)
    budget: Budget | None = None  # budget_consumption only
    sql: str | None = None  # custom_sql only: SELECT <group columns...>, <value>

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("id must be 1-128 characters of letters, digits, _ . : -")
        return value

    @field_validator("window", "cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        try:
            value.format_map(dict.fromkeys(SUMMARY_FIELDS, ""))
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"summary template {value!r} is invalid ({type(exc).__name__}: {exc}); "
                             f"fields: {', '.join(SUMMARY_FIELDS)}") from None
        return value

    @model_validator(mode="after")
    def _metric_options(self) -> AlertRule:
        errors = []
        if self.window <= timedelta(0):
            errors.append("window must be positive")
        if len(set(self.group_by)) != len(self.group_by):
            errors.append("group_by must not repeat a column")
        if self.metric == "budget_consumption":
            if self.budget is None:
                errors.append("budget_consumption needs budget: {unit, default, tenants}")
            if "tenant" not in self.group_by:
                errors.append("budget_consumption must group by tenant")
        elif self.budget is not None:
            errors.append("budget is only for metric budget_consumption")
        if self.metric == "custom_sql":
            if not self.sql or not _READ_ONLY.match(self.sql):
                errors.append("custom_sql needs sql: a SELECT (or WITH ... SELECT) returning group columns, value")
        elif self.sql is not None:
            errors.append("sql is only for metric custom_sql")
        if errors:
            raise ValueError("; ".join(errors))
        return self


class RulesFile(_Frozen):
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict)
    rules: tuple[AlertRule, ...] = ()
    interval_s: PositiveInt | None = None  # overrides worker.alerts.interval_s when set

    @model_validator(mode="after")
    def _references(self) -> RulesFile:
        errors = []
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            errors.append(f"rule ids must be unique, repeated: {dupes}")
        for rule in self.rules:
            unknown = [n for n in rule.notify if n not in self.webhooks]
            if unknown:
                errors.append(f"rule {rule.id!r} notifies unknown webhooks {unknown}; "
                              f"defined: {sorted(self.webhooks)}")
        if errors:
            raise ValueError("; ".join(errors))
        return self


class RulesError(ValueError):
    """The rules file is invalid; ``errors`` lists every problem (``path: message``)."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


def parse_rules(data: Mapping[str, Any] | None, source: str = "<rules>") -> RulesFile:
    try:
        return RulesFile.model_validate(data or {})
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise RulesError(source, errors) from None


def load_rules(path: Path) -> RulesFile:
    """Read and validate a rules file; RulesError lists every problem at once."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RulesError(str(path), [f"not valid YAML: {exc}"]) from None
    if data is not None and not isinstance(data, Mapping):
        raise RulesError(str(path), ["<root>: must be a mapping with webhooks and rules"])
    return parse_rules(data, str(path))
