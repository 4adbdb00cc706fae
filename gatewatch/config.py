"""The one place that reads configuration: a YAML file plus environment overrides.

- File: ``$GATEWATCH_CONFIG`` or ``./gatewatch.yaml``; created with commented defaults when missing.
- Environment: ``GATEWATCH__SECTION__FIELD=value`` overrides ``section.field`` (value parsed as YAML,
  so ``GATEWATCH__GATEWAY__PORT=9000`` is an int). ``GATEWATCH_HOME`` is the state directory
  (default ``./.gatewatch``).
- Validation reports every error at once (``ConfigError`` carries the list).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config import GatewayConfig, ModelAlias, RoutingConfig, TenantConfig
from gateway.governance.config import GovernanceConfig
from schemas.config import KafkaConfig

ENV_PREFIX = "GATEWATCH__"
ARCHIVER_GROUP = "gatewatch-archiver"  # the worker's archiver group (consumers/registry.py; not imported here)


class EmbeddedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    broker_port: int = Field(default=9092, ge=1, le=65535)
    mock_upstream_port: int = Field(default=8090, ge=1, le=65535)
    # The embedded broker keeps topics in memory only: unless gateway.emitter.retain_group is set, the gateway
    # keeps each delivered event on disk until the archiver committed it, and sends it again if the broker
    # restarted without it (docs/reliability.md, "Durable embedded broker"). false: events acknowledged but
    # not yet archived are lost (and counted) when the broker process dies.
    retain_events: bool = True


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    home: Path = Path(".gatewatch")
    gateway: GatewayConfig = GatewayConfig()
    kafka: KafkaConfig = KafkaConfig()
    routing: RoutingConfig = RoutingConfig()
    # model alias -> deployments; empty -> the embedded default routes every model to the mock upstream
    models: dict[str, ModelAlias] = Field(default_factory=dict)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    embedded: EmbeddedConfig = EmbeddedConfig()
    governance: GovernanceConfig = GovernanceConfig()
    # sections owned by later components (worker, policies) are validated by their own models
    worker: dict[str, Any] = Field(default_factory=dict)

    @property
    def keys_file(self) -> Path:
        return self.gateway.keys_file or self.home / "keys.yaml"

    @property
    def policy_dir(self) -> Path:
        return self.governance.policy_dir or self.home / "policies"

    @property
    def usage_file(self) -> Path:
        return self.governance.usage_file or self.home / "usage.json"

    @model_validator(mode="after")
    def _embedded_retention(self) -> Settings:
        """The embedded broker (no kafka.bootstrap_servers) forgets acknowledged events when it dies: turn the
        emitter's retention on for the archiver group, unless the emitter section says otherwise."""
        emitter = self.gateway.emitter
        if self.kafka.bootstrap_servers is None and self.embedded.retain_events \
                and "retain_group" not in emitter.model_fields_set:
            emitter = emitter.model_copy(update={"retain_group": ARCHIVER_GROUP})
            object.__setattr__(self, "gateway", self.gateway.model_copy(update={"emitter": emitter}))
        return self

    def tenant(self, name: str) -> TenantConfig:
        return self.tenants.get(name) or self.tenants.get("default") or TenantConfig()


class ConfigError(Exception):
    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: {len(errors)} configuration error(s)")
        self.source = source
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join([f"invalid configuration in {self.source}:"] + [f"  - {e}" for e in self.errors])


DEFAULT_CONFIG_YAML = """\
# Gatewatch configuration. Every key is optional; defaults are shown commented out.
# Environment overrides: GATEWATCH__<SECTION>__<FIELD>=value, e.g. GATEWATCH__GATEWAY__PORT=9000.

gateway:
  host: 127.0.0.1
  port: 8080
  # max_body_bytes: 8388608
  # max_json_depth: 64        # deeper nesting -> 400 (param names where)
  # max_messages: 4096        # chat messages / Responses input items / prompts per request -> 400 above
  # max_inputs: 2048          # embeddings inputs per request -> 400 above
  # shutdown_grace_s: 20

kafka:
  # unset -> `gatewatch up` starts an embedded Tansu broker on 127.0.0.1:9092
  # bootstrap_servers: kafka-1:9092,kafka-2:9092
  topic: gatewatch.events.v1

# Model aliases -> upstream deployments. Empty -> every model goes to the built-in mock upstream.
models: {}
#  gpt-4o-mini:
#    price: {input_per_1m: 0.15, output_per_1m: 0.60}
#    deployments:
#      - name: vllm-a
#        base_url: http://10.0.0.5:8000/v1
#        model: meta-llama/Llama-3.1-8B-Instruct
#        api_key_env: VLLM_API_KEY
#        weight: 3
#      - name: openai-fallback
#        base_url: https://api.openai.com/v1
#        api_key_env: OPENAI_API_KEY
#        priority: 1

# routing:
#   retry: {max_attempts: 3, backoff_base_s: 0.05, backoff_max_s: 2.0}
#   timeouts: {connect_s: 5, first_byte_s: 60, total_s: 600}
#   circuit_breaker: {failure_threshold: 5, cooldown_s: 30}

tenants:
  default:
    capture: full   # full | hashes | none: what the event stores of prompts and answers

# Governance: tenant policies live in a directory (default.yaml + <tenant>.yaml), hot-reloaded.
# Without any file the built-in default applies: regex PII redaction of requests and events.
# governance:
#   policy_dir: .gatewatch/policies
#   reload_poll_s: 1.0
"""


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _env_overrides(env: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    out = []
    for name, raw in env.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
            out.append((path, yaml.safe_load(raw) if raw != "" else None))
    return out


def format_validation_error(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]


def config_path(env: Mapping[str, str] | None = None, path: str | Path | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(path or env.get("GATEWATCH_CONFIG") or "gatewatch.yaml")


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, *, create: bool = True
) -> Settings:
    env = os.environ if env is None else env
    cfg_path = config_path(env, path)
    if not cfg_path.exists() and create:
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(DEFAULT_CONFIG_YAML)
    raw: Any = {}
    if cfg_path.exists():
        try:
            raw = yaml.safe_load(cfg_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(str(cfg_path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(cfg_path), ["top level must be a mapping"])
    errors: list[str] = []
    try:
        for keypath, value in _env_overrides(env):
            _set_path(raw, keypath, value)
    except yaml.YAMLError as exc:
        errors.append(f"environment override not valid YAML: {exc}")
    if env.get("GATEWATCH_HOME"):
        raw["home"] = env["GATEWATCH_HOME"]
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        errors.extend(format_validation_error(exc))
        raise ConfigError(str(cfg_path), errors) from None
    if errors:
        raise ConfigError(str(cfg_path), errors)
    return settings
