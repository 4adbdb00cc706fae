"""The ``governance`` section of gatewatch.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, SecretStr


class GovernanceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    policy_dir: Path | None = None  # None -> $GATEWATCH_HOME/policies (missing or empty: built-in defaults)
    reload_poll_s: PositiveFloat = 1.0  # how often the policy files' mtimes are checked (SIGHUP reloads at once)
    pii_threads: PositiveInt = 4  # worker threads shared by every redactor (presidio runs off the event loop)
    hash_secret: SecretStr | None = None  # key of the PII `hash` action; None -> random per process
    usage_file: Path | None = None  # None -> $GATEWATCH_HOME/usage.json
    usage_flush_s: PositiveFloat = 5.0
