"""The container files: docker-compose.yml, Dockerfile, .env.example.

No Docker engine is needed. The compose file is validated twice:

- by a real Compose implementation, Debian's ``docker-compose`` (1.29), whose
  ``config -q`` checks the file against the Compose schema offline (skipped, with the reason,
  only when the binary is absent; ``scripts/deps.sh`` installs it), and a negative control
  showing that the same check rejects a broken copy;
- by PyYAML, for what the schema cannot know: four services built from the one image, each
  running ``python -m services.<name>`` on its own port with a ``/readyz`` healthcheck, waiting
  for healthy Kafka and PostgreSQL, and every port published on 127.0.0.1 only.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

APP_SERVICES = ("ingest", "staging", "notifier", "incentives")
INFRA = ("kafka", "postgres")


# --- helpers ----------------------------------------------------------------------------------


def _compose_bin() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("docker-compose (Debian's 1.29) is not installed, so the compose file cannot "
                    "be validated by a Compose parser; `scripts/deps.sh` installs it")
    return found


def _compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f <file> config -q`` from the file's folder, as ops would run it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "QS_", "DOCKER_", "POSTGRES_"))}
    return subprocess.run(
        [_compose_bin(), "-f", str(compose_file), "config", "-q"],
        cwd=compose_file.parent, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )


def _as_dict(env: Any) -> dict[str, Any]:
    """A service's ``environment`` as a dict, whichever form (mapping or KEY=VALUE list)."""
    if env is None:
        return {}
    if isinstance(env, dict):
        return env
    out: dict[str, Any] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def _command(svc: dict[str, Any]) -> str:
    cmd = svc.get("command")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _healthcheck_test(svc: dict[str, Any]) -> list[str]:
    test = svc["healthcheck"]["test"]
    return test if isinstance(test, list) else ["CMD-SHELL", test]


# Each service's own port (its ServiceDefinition; checked below).
PORTS = {"ingest": 8001, "staging": 8002, "notifier": 8003, "incentives": 8004}


def _port(name: str) -> int:
    return PORTS[name]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.is_file(), "docker-compose.yml is missing at the repository root"
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_ports_are_the_services_own(name):
    module = importlib.import_module(f"services.{name}.service")
    assert module.DEFINITION.port == PORTS[name]


# --- a real Compose parser ------------------------------------------------------------------


def test_compose_file_is_valid_for_docker_compose():
    result = _compose_config(COMPOSE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # -q: nothing printed when valid


def test_docker_compose_rejects_a_broken_depends_on_condition(tmp_path: Path):
    """Negative control: the validator above really validates (and is not location-sensitive)."""
    text = COMPOSE.read_text(encoding="utf-8")
    good = tmp_path / "good" / "docker-compose.yml"
    good.parent.mkdir()
    good.write_text(text, encoding="utf-8")
    assert _compose_config(good).returncode == 0

    assert "condition: service_healthy" in text
    broken = tmp_path / "broken" / "docker-compose.yml"
    broken.parent.mkdir()
    broken.write_text(
        text.replace("condition: service_healthy", "condition: service_very_healthy", 1),
        encoding="utf-8")
    result = _compose_config(broken)
    assert result.returncode != 0
    assert "service_very_healthy" in result.stderr


# --- structure (PyYAML) ---------------------------------------------------------------------


def test_the_expected_services_and_nothing_built_elsewhere(services):
    assert set(INFRA) | set(APP_SERVICES) <= set(services)
    built = {name for name, svc in services.items() if "build" in svc}
    assert built == {*APP_SERVICES, "provider-sandbox", "console"}


def test_console_reads_the_services_over_the_compose_network(services):
    console = services["console"]
    assert console["command"] == "python -m services.console"
    assert console["ports"] == ["127.0.0.1:8006:8006"]
    assert (ROOT / "services" / "console" / "__main__.py").is_file()
    env = _as_dict(console["environment"])
    assert env["QS_HOST"] == "0.0.0.0"
    assert env["QS_CONSOLE_STAGING_URL"] == "http://staging:8002"
    assert env["QS_CONSOLE_NOTIFIER_URL"] == "http://notifier:8003"
    assert env["QS_CONSOLE_INCENTIVES_URL"] == "http://incentives:8004"
    for upstream in ("staging", "notifier", "incentives"):
        assert console["depends_on"][upstream]["condition"] == "service_healthy"
    joined = " ".join(_healthcheck_test(console))
    assert "http://127.0.0.1:8006/readyz" in joined and "curl" not in joined


def test_notifier_talks_to_the_provider_sandbox(services):
    notifier = services["notifier"]
    assert notifier["depends_on"]["provider-sandbox"]["condition"] == "service_healthy"
    for channel in ("sms", "email", "voice", "letter"):
        url = notifier["environment"][f"QS_PROVIDER_{channel.upper()}_URL"]
        assert url == f"http://provider-sandbox:8005/v1/{channel}"
    sandbox = services["provider-sandbox"]
    assert sandbox["command"] == "python -m services.sandbox"
    assert sandbox["ports"] == ["127.0.0.1:8005:8005"]
    assert (ROOT / "services" / "sandbox" / "__main__.py").exists()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_runs_its_module_from_the_one_image(services, name):
    svc = services[name]
    assert _command(svc) == f"python -m services.{name}"
    assert (ROOT / "services" / name / "__main__.py").is_file()
    build = svc["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert dockerfile == "Dockerfile"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_waits_for_healthy_kafka_and_postgres(services, name):
    depends = services[name]["depends_on"]
    assert isinstance(depends, dict), "depends_on needs the long form to carry conditions"
    for infra in INFRA:
        assert depends[infra]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_healthcheck_hits_readyz_on_its_own_port(services, name):
    port = _port(name)
    test = _healthcheck_test(services[name])
    assert test[0] in ("CMD", "CMD-SHELL")
    joined = " ".join(test)
    assert f"http://127.0.0.1:{port}/readyz" in joined
    assert "curl" not in joined and "wget" not in joined  # python:3.11-slim has neither
    if test[0] == "CMD":
        assert test[1] == "python" and test[2] == "-c"
        compile(test[3], f"<{name} healthcheck>", "exec")  # the probe is valid Python


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_environment_points_at_the_compose_network(services, name):
    env = _as_dict(services[name].get("environment"))
    assert env["QS_HOST"] == "0.0.0.0"
    assert env["QS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    url = env["QS_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://")
    assert re.search(r"@postgres:5432/qingshou$", url), url
    assert "QS_PORT" not in env or int(env["QS_PORT"]) == _port(name)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_publishes_its_port_on_loopback(services, name):
    port = _port(name)
    assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_every_published_port_is_bound_to_loopback(services):
    published = [(name, p) for name, svc in services.items() for p in svc.get("ports", [])]
    assert published
    for name, port in published:
        if isinstance(port, dict):  # long syntax
            assert port.get("host_ip") == "127.0.0.1", (name, port)
        else:
            assert str(port).startswith("127.0.0.1:"), (name, port)
            assert str(port).count(":") == 2, (name, port)


def test_kafka_is_apache_kafka_4_in_kraft_single_node_mode(services):
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"]), kafka["image"]
    env = {k: str(v) for k, v in _as_dict(kafka["environment"]).items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])  # base64url of a UUID
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", key

    # listeners: the compose network name kafka:9092, a controller, all in the protocol map
    protocol_map = dict(
        x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(x.split("://") for x in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    assert "kafka:9092" in advertised.values()
    assert set(listeners) <= set(protocol_map) and set(advertised) <= set(listeners)
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in advertised

    # the host port goes to a listener that advertises exactly what the host dials
    for mapping in kafka.get("ports", []):
        host_ip, host_port, container_port = str(mapping).split(":")
        name = next(n for n, addr in listeners.items() if addr.endswith(f":{container_port}"))
        assert advertised[name] == f"{host_ip}:{host_port}", (mapping, advertised)

    test = " ".join(_healthcheck_test(kafka))
    assert "/opt/kafka/bin/" in test and "localhost:9092" in test


def test_postgres_has_the_database_a_volume_and_pg_isready(compose, services):
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:1[56](\.\d+)*", pg["image"]), pg["image"]
    env = _as_dict(pg["environment"])
    assert env["POSTGRES_DB"] == "qingshou"
    volume = pg["volumes"][0].split(":")[0]
    assert volume in (compose.get("volumes") or {}), "PostgreSQL data needs a named volume"
    assert "pg_isready" in " ".join(_healthcheck_test(pg))
    assert pg["ports"] == ["127.0.0.1:55432:5432"]
    user = env.get("POSTGRES_USER", "postgres")
    for name in APP_SERVICES:
        url = _as_dict(services[name]["environment"])["QS_DATABASE_URL"]
        assert url.startswith(f"postgresql+asyncpg://{user}:") or url.startswith(
            f"postgresql+asyncpg://{user}@"), url


# --- Dockerfile and .env.example ------------------------------------------------------------


def test_dockerfile_builds_the_project_as_a_non_root_user():
    assert DOCKERFILE.is_file(), "Dockerfile is missing at the repository root"
    lines = [ln.strip() for ln in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    text = "\n".join(lines)
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^COPY pyproject\.toml\b", text, re.M)
    assert re.search(r"pip install[^\n]*\s\.(\s|$)", text), "the project is installed with pip"
    assert "[dev]" not in text, "no dev extras in the image"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    exposed = {int(p) for ln in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in ln.split()}
    assert {_port(name) for name in APP_SERVICES} <= exposed
    assert re.search(r"^CMD\s", text, re.M)
    assert "ENTRYPOINT" not in text, "compose overrides the CMD per service"
    for package in ("shared", "services"):
        assert re.search(rf"^COPY {package}\b", text, re.M), package


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "*" in ignored or {".venv", ".git", ".env", ".local"} <= set(ignored)


def test_env_example_documents_every_setting_and_the_production_warning():
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for field in ServiceSettings.model_fields:
        assert re.search(rf"^#?\s*QS_{field.upper()}\b", text, re.M), f"QS_{field.upper()}"
    assert "QS_ENVIRONMENT=production" in text
    assert re.search(r"PRODUCTION", text)
