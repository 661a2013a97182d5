"""deploy/docker-compose.yaml, deploy/Dockerfile and deploy/.env.example, checked without a Docker engine.

``docker compose config`` (the compose v2 plugin that ``scripts/install-docker-compose`` puts in ``.venv/docker``)
validates and resolves the file; the tests assert on its JSON: the ten services, health checks, start order, volumes,
the wiring of the hybrec containers. Each hybrec command is run with ``--help`` through the real CLI, so a renamed
command or option fails here rather than in a container. Skips when the docker CLI or the plugin is missing; fails
instead when ``HYBREC_REQUIRE_TEST_TOOLS=1`` (CI, where ``make test`` installs the plugin).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hybrec.cli import app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"

STORES = {"postgresdb", "redis", "chroma_db", "ollama"}
ENGINES = {"als_trainer", "als_reco_engine", "chat_reco_engine"}
ONE_SHOTS = {"pull_ollama_model", "ingest_postgres_db", "ingest_chroma_db"}
HEALTHY, COMPLETED = "service_healthy", "service_completed_successfully"
STORES_HEALTHY = {"postgresdb": HEALTHY, "redis": HEALTHY, "chroma_db": HEALTHY}
START_ORDER: dict[str, dict[str, str]] = {
    "pull_ollama_model": {"ollama": HEALTHY},
    "ingest_postgres_db": {"postgresdb": HEALTHY},
    "ingest_chroma_db": {"ingest_postgres_db": COMPLETED, "chroma_db": HEALTHY},
    "als_trainer": {"ingest_postgres_db": COMPLETED, **STORES_HEALTHY},
    "als_reco_engine": {"als_trainer": HEALTHY, **STORES_HEALTHY},
    "chat_reco_engine": {
        "als_trainer": HEALTHY,
        "ingest_chroma_db": COMPLETED,
        "pull_ollama_model": COMPLETED,
        "ollama": HEALTHY,
        **STORES_HEALTHY,
    },
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY", re.IGNORECASE)


def _unavailable(reason: str) -> None:
    if os.environ.get("HYBREC_REQUIRE_TEST_TOOLS") == "1":
        pytest.fail(f"{reason}, and HYBREC_REQUIRE_TEST_TOOLS=1 (CI) requires this test to run")
    pytest.skip(reason)


def _compose_env() -> dict[str, str]:
    """The environment under which ``docker compose`` works: DOCKER_CONFIG pointing at the plugin's folder."""
    if shutil.which("docker") is None:
        _unavailable("the docker CLI is not installed")
    candidates = [REPO / ".venv" / "docker", Path(sys.executable).parent.parent / "docker"]
    if os.environ.get("DOCKER_CONFIG"):
        candidates.insert(0, Path(os.environ["DOCKER_CONFIG"]))
    # Only what docker needs: a variable of the shell (POSTGRES_PASSWORD, HYBREC_LLM_MODEL ...) would win over the
    # env file in the interpolation and change what is tested.
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    for folder in candidates:
        if (folder / "cli-plugins" / "docker-compose").exists():
            env["DOCKER_CONFIG"] = str(folder)
            break
    probe = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        _unavailable("the docker compose plugin is missing (run scripts/install-docker-compose)")
    return env


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    command = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"]
    return subprocess.run(command, env=_compose_env(), cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["services"]


def _hybrec_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if name in ENGINES | ONE_SHOTS}


def test_the_ten_services_of_the_topology(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == STORES | ENGINES | ONE_SHOTS


def test_long_running_services_have_health_checks_and_restart(services: dict[str, dict[str, Any]]) -> None:
    for name in STORES | ENGINES:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert services[name]["restart"] == "unless-stopped", name
    assert services["postgresdb"]["healthcheck"]["test"][1].startswith("pg_isready")
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert "/api/v2/heartbeat" in services["chroma_db"]["healthcheck"]["test"][-1]
    assert "/api/tags" in services["ollama"]["healthcheck"]["test"][-1]
    assert services["als_trainer"]["healthcheck"]["test"][1:] == ["hybrec", "model", "active"]
    for name in ("als_reco_engine", "chat_reco_engine"):
        assert "http://127.0.0.1:8000/ready" in services[name]["healthcheck"]["test"][-1]
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no" and "healthcheck" not in services[name], name


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, expected in START_ORDER.items():
        actual = {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}
        assert actual == expected, name
    for name in STORES:
        assert "depends_on" not in services[name], name


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {m["source"]: (m["target"], bool(m.get("read_only"))) for m in service.get("volumes", [])}


def test_named_volumes(config: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres_data", "redis_data", "chroma_data", "ollama_models", "models"} <= set(config["volumes"])
    for service in services.values():
        assert all(m["type"] == "volume" for m in service.get("volumes", [])), "bind mounts tie the file to a host"
    assert _mounts(services["postgresdb"])["postgres_data"] == ("/var/lib/postgresql/data", False)
    assert _mounts(services["redis"])["redis_data"] == ("/data", False)
    assert _mounts(services["chroma_db"])["chroma_data"][0] == "/data"
    assert services["chroma_db"]["command"][:3] == ["run", "--path", "/data"]
    assert _mounts(services["ollama"])["ollama_models"] == ("/root/.ollama", False)
    # The trainer writes the ALS artifacts under <var_dir>/models; the two engines read the same volume there.
    artifacts = services["als_trainer"]["environment"]["HYBREC_VAR_DIR"] + "/models"
    assert _mounts(services["als_trainer"])["models"] == (artifacts, False)
    for name in ("als_reco_engine", "chat_reco_engine"):
        assert services[name]["environment"]["HYBREC_VAR_DIR"] + "/models" == artifacts
        assert _mounts(services[name])["models"] == (artifacts, True)


def test_hybrec_containers_are_wired_to_the_stores(services: dict[str, dict[str, Any]]) -> None:
    hybrec = _hybrec_services(services)
    assert {s["image"] for s in hybrec.values()} == {"hybrec:local"}
    for name, service in hybrec.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile" and Path(service["build"]["context"]) == REPO
        env = service["environment"]
        assert re.fullmatch(r"postgresql\+psycopg://[^:]+:[^@]+@postgresdb:5432/\w+", env["HYBREC_DATABASE_URL"]), name
        assert env["HYBREC_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["HYBREC_CHROMA_URL"] == "http://chroma_db:8000", name
        assert (env["HYBREC_LLM_BACKEND"], env["HYBREC_LLM_BASE_URL"]) == ("ollama", "http://ollama:11434/v1"), name
        assert env["HYBREC_LLM_MODEL"], name
    # The store's credentials are the ones PostgreSQL is created with.
    pg = services["postgresdb"]["environment"]
    url = hybrec["als_trainer"]["environment"]["HYBREC_DATABASE_URL"]
    assert url.startswith(f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@")
    assert url.endswith(f"/{pg['POSTGRES_DB']}")
    published = {name: [p["target"] for p in s.get("ports", [])] for name, s in services.items()}
    assert published["als_reco_engine"] == [8000] and published["chat_reco_engine"] == [8000]
    # On loopback unless the operator opens them (BIND_ADDRESS): keys are off until HYBREC_API_KEYS is set.
    assert {p.get("host_ip") for name in ("als_reco_engine", "chat_reco_engine") for p in services[name]["ports"]} == {
        "127.0.0.1"
    }
    assert all(not ports for name, ports in published.items() if name not in {"als_reco_engine", "chat_reco_engine"})


def test_each_hybrec_command_is_a_real_subcommand(services: dict[str, dict[str, Any]]) -> None:
    commands = {name: s["command"] for name, s in _hybrec_services(services).items()}
    commands["als_trainer healthcheck"] = services["als_trainer"]["healthcheck"]["test"][1:]
    assert commands["als_trainer"] == ["hybrec", "trainer"]
    assert commands["als_reco_engine"][:3] == ["hybrec", "serve", "reco"]
    assert commands["chat_reco_engine"][:3] == ["hybrec", "serve", "chat"]
    assert commands["ingest_chroma_db"][:3] == ["hybrec", "index", "catalog"]
    runner = CliRunner()
    for name, command in commands.items():
        assert command[0] == "hybrec", name
        # --help is handled after the arguments are parsed: an unknown command or option still fails.
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{name}: `{' '.join(command)}` is not a hybrec command: {result.output}"
        assert "Usage" in result.output, name


def test_a_missing_password_stops_compose_with_a_clear_error(tmp_path: Path) -> None:
    env_file = tmp_path / "no-password.env"
    env_file.write_text("POSTGRES_USER=hybrec\n")
    result = compose_config(env_file)
    assert result.returncode != 0 and "set POSTGRES_PASSWORD" in result.stderr


def test_no_secret_is_written_in_the_repository() -> None:
    compose = COMPOSE.read_text()
    # Credentials only ever come from the env file: a secret-named key or a URL's password is an interpolation.
    for line in compose.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and SECRET_NAME.search(key) and not key.startswith("#"):
            assert value.strip().startswith("${"), line
    for password in re.findall(r"://[^/\s:@]+:([^@\s]+)@", compose):
        assert password.startswith("${"), password
    # The example env file holds placeholders, never a usable value.
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, sep, value = line.lstrip("# ").partition("=")
        if sep and SECRET_NAME.search(key):
            assert re.search(r"change-me|replace", value), line
    for line in DOCKERFILE.read_text().splitlines():
        assert not (re.match(r"\s*(ENV|ARG)\b", line) and SECRET_NAME.search(line)), line
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[[x.strip() for x in ignored].index("*")] == "*", "the build context is an allowlist"


def test_dockerfile_builds_what_the_services_run() -> None:
    steps = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    text = "\n".join(steps)
    assert steps[0] == "FROM python:3.11-slim"
    torch_pin = next(
        d
        for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("torch==")
    )
    torch_step = next(i for i, s in enumerate(steps) if "pip install" in s and torch_pin in s)
    package_step = next(i for i, s in enumerate(steps) if re.search(r"pip install \.(\s|$|\[)", s))
    build_step = steps.index("RUN python -m hybrec.als.build")
    scan_step = steps.index("RUN python -m hybrec.vectors.scan_kernel")
    user_step = next(i for i, s in enumerate(steps) if s.startswith("USER "))
    assert "download.pytorch.org/whl/cpu" in steps[torch_step], "the CPU build of torch, not PyPI's CUDA one"
    assert torch_step < package_step < build_step
    # The kernels are compiled as the user that loads them (their caches live in that user's home).
    assert user_step < build_step and user_step < scan_step and steps[user_step] not in ("USER root", "USER 0")
    assert "COPY src ./src" in text and "COPY params ./params" in text
    assert "ENV HYBREC_VAR_DIR=/var/lib/hybrec" in text
    chroma_pin = next(
        d
        for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("chromadb==")
    )
    assert f"CHROMA_VERSION={chroma_pin.split('==')[1]}" in ENV_EXAMPLE.read_text(), "server and client versions"
