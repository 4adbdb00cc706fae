"""compose.yaml and deploy/: checked without a Docker engine.

- compose.yaml validates against the Compose Specification's JSON Schema (../shared/data/compose-spec.json);
- every Gatewatch container's configuration (deploy/gatewatch.yaml + its GATEWATCH__* environment) loads
  through the project's own schema (gatewatch.config.load_settings, the worker's section included),
  and its command parses with the `gatewatch` CLI;
- start order (depends_on + health checks), published ports, Prometheus targets, Grafana provisioning
  and the Dockerfile targets agree with each other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from consumers.warehouse import validate_dsn
from gatewatch.cli import build_parser
from gatewatch.config import Settings, load_settings
from gateway.upstream.router import resolve_key_errors

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "data" / "compose-spec.json"
GATEWATCH_SERVICES = ("migrate", "mock-upstream", "gateway", "worker")
_INTERP = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with an environment (empty: the defaults)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m[1], m[2], m[3]
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return arg if op else ""

    return _INTERP.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw, {})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def settings_of(service: dict[str, Any]) -> Settings:
    return load_settings(ROOT / "deploy" / "gatewatch.yaml", env_of(service), create=False)


def container_ports(service: dict[str, Any]) -> set[int]:
    out = {int(p) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        out.add(int(str(p["target"] if isinstance(p, dict) else p).split(":")[-1].split("/")[0]))
    return out


def host_ports(service: dict[str, Any]) -> list[int]:
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append(int(p["published"]))
            continue
        parts = str(p).split(":")
        if len(parts) >= 2:
            lo, _, hi = parts[-2].partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    return out


def test_validates_against_the_compose_spec(raw: dict[str, Any], compose: dict[str, Any]) -> None:
    schema = json.loads(SPEC.read_text())
    assert "draft-07" in schema["$schema"]  # written without the '#' jsonschema looks the draft up by
    cls = jsonschema.Draft7Validator
    cls.check_schema(schema)
    for doc in (raw, compose):
        errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_has_the_production_services(services: dict[str, Any]) -> None:
    assert {"clickhouse", "migrate", "gateway", "worker", "grafana", "prometheus"} <= set(services)
    assert "redpanda" in services or "kafka" in services


def test_depends_on_names_services_and_waits_for_health(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot job"
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name not in seen:
            for dep in services[name].get("depends_on", {}):
                visit(dep, (*path, name))
            seen.add(name)

    for name in services:
        visit(name, ())


def test_start_order(services: dict[str, Any]) -> None:
    broker = "redpanda" if "redpanda" in services else "kafka"
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"][broker]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "readyz" in json.dumps(services["gateway"]["healthcheck"]["test"])
    for name in ("clickhouse", broker, "gateway", "worker", "grafana", "prometheus"):
        assert "healthcheck" in services[name], name


def test_published_ports_do_not_collide(services: dict[str, Any]) -> None:
    used: dict[int, str] = {}
    for name, svc in services.items():
        for port in host_ports(svc):
            assert port not in used, f"host port {port}: {used[port]} and {name}"
            used[port] = name
    assert used[8080] == "gateway" and used[3000] == "grafana" and used[9090] == "prometheus"


def test_gatewatch_commands_parse_with_the_cli(services: dict[str, Any]) -> None:
    for name in GATEWATCH_SERVICES:
        args = build_parser().parse_args(services[name]["command"])  # ENTRYPOINT is `gatewatch`
        assert args.cmd == {"mock-upstream": "mock-upstream"}.get(name, name)
        if name == "migrate":
            dsn = urlsplit(validate_dsn(args.dsn))
            assert dsn.scheme == "http" and dsn.hostname == "clickhouse" and dsn.port == 8123


def test_gateway_config_loads_with_the_project_schema(services: dict[str, Any]) -> None:
    gw = services["gateway"]
    settings = settings_of(gw)
    assert settings.gateway.host == "0.0.0.0"
    assert settings.gateway.port in container_ports(gw)
    assert str(settings.gateway.port) in json.dumps(gw["healthcheck"]["test"])
    # what `gatewatch gateway` itself refuses to start without
    assert settings.kafka.bootstrap_servers and settings.models
    assert resolve_key_errors(settings.models) == []
    for alias in settings.models.values():
        for dep in alias.deployments:
            host = urlsplit(dep.base_url)
            if host.hostname in services:
                assert host.port in container_ports(services[host.hostname]), dep.base_url
    # the keys file lives on the volume every replica shares
    mounts = [v for v in gw["volumes"] if isinstance(v, str)]
    assert any(settings.keys_file.parent.as_posix() == m.split(":")[1] for m in mounts)


def test_worker_config_loads_with_the_project_schema(services: dict[str, Any]) -> None:
    worker = services["worker"]
    settings = settings_of(worker)
    cfg = settings.worker
    dsn = urlsplit(cfg.dsn(Path(settings.home)))
    assert dsn.scheme == "http" and dsn.hostname == "clickhouse" and dsn.password
    assert dsn.port in container_ports(services["clickhouse"])
    assert cfg.console_host == "0.0.0.0" and cfg.console_port in container_ports(worker)
    assert str(cfg.console_port) in json.dumps(worker["healthcheck"]["test"])


def test_every_gatewatch_container_agrees_on_kafka(services: dict[str, Any]) -> None:
    broker = "redpanda" if "redpanda" in services else "kafka"
    topics = set()
    for name in ("gateway", "worker"):
        settings = settings_of(services[name])
        host, _, port = (settings.kafka.bootstrap_servers or "").partition(":")
        assert host == broker, name
        assert f"{broker}:{port}" in json.dumps(services[broker]), f"{broker} does not advertise {host}:{port}"
        topics.add(settings.kafka.topic)
    assert len(topics) == 1


def test_worker_reserves_one_gpu(raw: dict[str, Any]) -> None:
    (device,) = raw["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
    text = (ROOT / "compose.yaml").read_text()
    assert "Delete this `deploy:`" in text  # how to run without a GPU


def test_dockerfile_targets(services: dict[str, Any]) -> None:
    for name in GATEWATCH_SERVICES:
        build = services[name]["build"]
        dockerfile = (ROOT / build["context"] / build["dockerfile"]).read_text()
        stages = dict(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\n((?:(?!^FROM ).*\n)*)", dockerfile, re.M))
        assert build["target"] in stages, name
    stages = dict(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\n((?:(?!^FROM ).*\n)*)",
                             (ROOT / "deploy" / "Dockerfile").read_text(), re.M))
    assert "consumers" not in stages["gateway"].replace("COPY consumers", "")  # no torch in the gateway
    assert ".[consumers]" in stages["worker"]
    assert services["migrate"]["build"]["target"] == "worker"  # `gatewatch migrate` needs the consumers extra


def test_bind_mounts_exist(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_scrapes_the_gateway_and_worker(services: dict[str, Any]) -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets: set[tuple[str, int]] = set()
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            targets |= {(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sc["targets"]}
        for sd in job.get("dns_sd_configs", []):
            targets |= {(n, int(sd["port"])) for n in sd["names"]}
        assert job.get("metrics_path", "/metrics") == "/metrics"
    for host, port in targets - {("localhost", 9090)}:
        assert host in services, f"prometheus scrapes unknown service {host}"
        assert port in container_ports(services[host]), f"{host} does not listen on {port}"
    assert {h for h, _ in targets} >= {"gateway", "worker"}
    assert ("gateway", settings_of(services["gateway"]).gateway.port) in targets
    assert ("worker", settings_of(services["worker"]).worker.console_port) in targets


def test_grafana_provisioning_is_mounted(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    env = env_of(grafana)
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in grafana["volumes"] if v.startswith(".")}
    prov = mounts["/etc/grafana/provisioning"]
    for path in prov.rglob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1, path
        for ref in re.findall(r"\$\{(\w+)\}", path.read_text()):
            assert ref in env, f"{path.name} reads ${{{ref}}}; grafana's environment lacks it"
    (provider,) = yaml.safe_load((prov / "dashboards" / "gatewatch.yaml").read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert dashboards.is_dir() and len(list(dashboards.glob("*.json"))) >= 5
    (ds,) = yaml.safe_load((prov / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert env[ds["jsonData"]["host"].strip("${}")] in services
    assert ds["jsonData"]["port"] in container_ports(services["clickhouse"])
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).relative_to(provider["options"]["path"])).exists()
