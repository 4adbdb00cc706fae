"""The ``governance`` section of gatewatch.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, SecretStr


class GovernanceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    policy_dir: Path | None = Field(
        default=None, description="null -> $GATEWATCH_HOME/policies (missing or empty: built-in defaults)")
    reload_poll_s: PositiveFloat = Field(
        default=1.0, description="how often the policy files' mtimes are checked (SIGHUP reloads at once)")
    pii_threads: PositiveInt = Field(
        default=4, description="worker threads shared by every redactor (presidio runs off the event loop)")
    hash_secret: SecretStr | None = Field(
        default=None, description="key of the PII `hash` action; null -> random per process")
    usage_file: Path | None = Field(default=None, description="null -> $GATEWATCH_HOME/usage.json")
    usage_flush_s: PositiveFloat = 5.0
