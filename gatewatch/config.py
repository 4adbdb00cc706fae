"""The one place that reads configuration: a YAML file plus environment overrides.

- File: ``$GATEWATCH_CONFIG`` or ``./gatewatch.yaml``; created with commented defaults when missing.
- Environment: ``GATEWATCH__SECTION__FIELD=value`` overrides ``section.field`` (value parsed as YAML,
  so ``GATEWATCH__GATEWAY__PORT=9000`` is an int). ``GATEWATCH_HOME`` is the state directory
  (default ``./.gatewatch``).
- Validation reports every error at once (``schemas.config.ConfigError`` carries the list), the worker's
  section included.
- The default file is rendered from these models (``default_config_yaml``): one source of defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from consumers.config import WorkerConfig
from gatewatch.defaults import render_defaults
from gateway.config import GatewayConfig, ModelAlias, RoutingConfig, TenantConfig
from gateway.governance.config import GovernanceConfig
from schemas.config import ConfigError, KafkaConfig, format_validation_error

ENV_PREFIX = "GATEWATCH__"
ARCHIVER_GROUP = "gatewatch-archiver"  # the worker's archiver group (consumers/registry.py; not imported here)


_MODELS_EXAMPLE = {"gpt-4o-mini": {
    "price": {"input_per_1m": 0.15, "output_per_1m": 0.60},
    "deployments": [
        {"name": "vllm-a", "base_url": "http://10.0.0.5:8000/v1", "model": "meta-llama/Llama-3.1-8B-Instruct",
         "api_key_env": "VLLM_API_KEY", "weight": 3},
        {"name": "openai-fallback", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
         "priority": 1}]}}


class EmbeddedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    broker_port: int = Field(default=9092, ge=1, le=65535,
                             description="the embedded broker (when kafka.bootstrap_servers is unset)")
    mock_upstream_port: int = Field(default=8090, ge=1, le=65535,
                                    description="the mock upstream (when models is empty)")
    retain_events: bool = Field(
        default=True, description="the embedded broker keeps topics in memory only: unless "
        "gateway.emitter.retain_group is set, the gateway keeps each delivered event on disk until the archiver "
        "committed it, and sends it again if the broker restarted without it (docs/reliability.md, \"Durable "
        "embedded broker\"). false: events acknowledged but not yet archived are lost (and counted) when the "
        "broker process dies")


class Settings(BaseModel):
    """The whole gatewatch.yaml: one section per component (each validates itself), every error at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    home: Path = Field(default=Path(".gatewatch"),
                       description="state directory (keys, policies, spool, warehouse); $GATEWATCH_HOME sets it")
    gateway: GatewayConfig = Field(default_factory=GatewayConfig,
                                   description="the OpenAI-compatible gateway (`gatewatch gateway`, or under `up`)")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig, description="the event bus from the gateway to the worker")
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig, description="upstream choice, retries, timeouts and circuit breaking: the "
        "lowest priority first, weighted-random within it (README, Routing)")
    models: dict[str, ModelAlias] = Field(
        default_factory=dict, examples=[_MODELS_EXAMPLE],
        description="model aliases -> upstream deployments; empty -> `gatewatch up` routes every model to the "
        "built-in mock upstream")
    tenants: dict[str, TenantConfig] = Field(
        default_factory=dict, examples=[{"default": {"capture": "full"}, "acme": {"capture": "hashes"}}],
        description="tenant -> {capture: full | hashes | none}: what the events store of prompts and answers; a "
        "tenant not listed gets the settings of `default` (capture: full unless set)")
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig, description="what `gatewatch up` starts next "
                                     "to the gateway: the broker (no kafka.bootstrap_servers) and the mock upstream "
                                     "(no models)")
    governance: GovernanceConfig = Field(
        default_factory=GovernanceConfig, description="tenant policies live in a directory (default.yaml + "
        "<tenant>.yaml), hot-reloaded; without any file the built-in default applies: regex PII redaction of "
        "requests and events (docs/governance.md)")
    worker: WorkerConfig = Field(default_factory=WorkerConfig, description="the consumers (`gatewatch worker`): "
                                 "pipelines, warehouse, console, scorers, alerts")

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


DEFAULT_HEADER = """\
# Gatewatch configuration. Every key is optional: the defaults are shown commented out (rendered from the
# configuration models, as in docs/gatewatch.default.yaml). Remove the leading "# " of a line to set it.
# Environment overrides: GATEWATCH__<SECTION>__<FIELD>=value (parsed as YAML), e.g. GATEWATCH__GATEWAY__PORT=9000;
# GATEWATCH_HOME sets `home`. `gatewatch config check` lists every error at once; `gatewatch config show` prints
# the effective configuration.
"""


def default_config_yaml(*, examples: bool = True) -> str:
    """The default gatewatch.yaml: every section and field of ``Settings`` with its default, commented out.
    ``load_settings`` writes it where no file exists; docs/gatewatch.default.yaml is this text, committed."""
    return render_defaults(Settings, DEFAULT_HEADER, examples=examples)


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
        cfg_path.write_text(default_config_yaml())
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
