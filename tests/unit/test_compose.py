"""The deployment files, checked by reading them (no Docker engine is needed or used).

``docker-compose.yml`` is parsed with PyYAML and ``${VAR:-default}`` interpolations are resolved
to their defaults, as ``docker compose`` does with an empty environment. The worker's ``CRM_*``
variables are checked against :class:`Settings`, the Dockerfile against the ``crmstream``
entry point and CLI, and ``.dockerignore`` against the package directories.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from crmstream.streams.cli import build_parser
from crmstream.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _resolve(value: object) -> str:
    """A compose value as the container sees it when no variable is set: defaults applied."""
    return _INTERPOLATION.sub(lambda m: m["default"] or "", str(value))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment (mapping or ``KEY=value`` list form) with defaults applied."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): _resolve(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``depends_on`` in long form whichever form the file uses."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: spec or {} for name, spec in deps.items()}


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Each mount as ``(source, target, is_named_volume)``."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            source, target = entry.get("source", ""), entry["target"]
            named = entry.get("type", "volume") == "volume" and bool(source)
        else:
            parts = str(entry).split(":")
            if len(parts) == 1:  # an anonymous volume: just a container path
                source, target, named = "", parts[0], False
            else:
                source, target = parts[0], parts[1]
                named = not source.startswith(("/", ".", "~", "$"))
        mounts.append((source, target, named))
    return mounts


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _exec_form(arguments: str) -> list[str]:
    """An ENTRYPOINT/CMD in exec (JSON) form; shell form would not receive SIGTERM itself."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    assert all(isinstance(part, str) for part in value), arguments
    return value


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` keeps a top-level path out (last matching pattern wins)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        pattern = pattern.removeprefix("**/")
        if fnmatch.fnmatchcase(path, pattern):
            ignored = not negated
    return ignored


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.is_file(), f"missing {COMPOSE}"
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def worker_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return _environment(services["worker"])


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), f"missing {DOCKERFILE}"
    return _dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def test_the_stack_has_kafka_redis_and_workers(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "redis", "worker"} <= services.keys()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"].startswith(("redis:7", "valkey/valkey:"))
    for name in ("kafka", "redis"):
        test = (services[name].get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"


def test_depends_on_existing_services_and_waits_for_health(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, spec in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if "healthcheck" in services[target]:
                assert spec.get("condition") == "service_healthy", f"{name} -> {target}"
    assert {"kafka", "redis"} <= _depends_on(services["worker"]).keys()


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {
        source
        for service in compose["services"].values()
        for source, _, named in _volume_mounts(service)
        if named
    }
    assert used <= declared, f"undeclared volumes: {sorted(used - declared)}"
    for name in ("kafka", "redis"):
        assert any(named for *_, named in _volume_mounts(compose["services"][name])), name


def test_kafka_is_kraft_and_keeps_its_log_on_the_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    # A KRaft cluster id is a UUID: 16 bytes in unpadded URL-safe base64.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), env["CLUSTER_ID"]
    targets = {target.rstrip("/") for _, target, named in _volume_mounts(kafka) if named}
    log_dirs = env.get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs")  # the image's default
    assert all(d.rstrip("/") in targets for d in log_dirs.split(",")), (log_dirs, targets)


def test_worker_variables_are_settings_fields(worker_env: dict[str, str]) -> None:
    known = {f"CRM_{field.upper()}" for field in Settings.model_fields}
    given = {name for name in worker_env if name.startswith("CRM_")}
    assert given, "the worker is given no CRM_* variable"
    assert given <= known, f"not crmstream settings: {sorted(given - known)}"
    # ... and together they validate (types, ranges, URL scheme).
    settings = Settings(**{name[4:].lower(): worker_env[name] for name in given})
    assert settings.partitions == 8
    assert settings.replication_factor == 1


def test_worker_reaches_kafka_by_its_service_name(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    url = worker_env["CRM_KAFKA_URL"]
    assert url.startswith("kafka://"), url
    servers = Settings(kafka_url=url).bootstrap_servers
    assert servers, url
    advertised = _environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    advertised_addresses = {listener.split("://", 1)[1] for listener in advertised.split(",")}
    for server in servers:
        host, _, port = server.rpartition(":")
        assert host == "kafka" and host in services, server
        assert f"{host}:{port}" in advertised_addresses, (server, advertised)


def test_redis_has_aof_and_the_workers_acl_user(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    redis = services["redis"]
    command = [_resolve(part) for part in _command(redis)]
    assert command[command.index("--appendonly") + 1] == "yes", command
    users: dict[str, list[str]] = {}
    for i, part in enumerate(command):
        if part == "--user":
            rule = []
            for item in command[i + 1 :]:
                if item.startswith("--"):
                    break
                rule.append(item)
            users[rule[0]] = rule[1:]
    assert "off" in users.get("default", []), "the default user must be disabled"

    url = urlsplit(worker_env["CRM_REDIS_URL"])
    assert url.scheme in ("redis", "rediss")
    assert url.hostname == "redis" and url.hostname in services
    assert url.username in users, f"{url.username} is not an ACL user of redis"
    assert "on" in users[url.username]
    assert f">{url.password}" in users[url.username], "URL and ACL passwords differ"

    # The password is a secret: the worker and redis both take it from one variable.
    raw_url = str(services["worker"]["environment"]["CRM_REDIS_URL"])
    url_variables = {m["name"] for m in _INTERPOLATION.finditer(raw_url)}
    assert url_variables, f"the Redis password is hard-coded: {raw_url}"
    acl_variables = {m["name"] for m in _INTERPOLATION.finditer(" ".join(_command(redis)))}
    assert url_variables & acl_variables, (url_variables, acl_variables)


def test_workers_are_replicated_and_stop_gracefully(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    build = worker["build"]
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (context / dockerfile).resolve() == DOCKERFILE
    assert _command(worker) == ["worker"]
    assert worker["restart"] == "unless-stopped"
    assert worker["stop_grace_period"] == "30s"
    replicas = worker["deploy"]["replicas"]
    assert replicas == 2
    # A worker beyond the partition count would sit idle.
    assert replicas <= int(_environment(worker)["CRM_PARTITIONS"])


def test_dockerfile_runs_the_crmstream_worker_as_non_root(
    dockerfile: list[tuple[str, str]],
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    final = _final_stage(dockerfile)
    assert final[0][1].split()[0] == "python:3.11-slim", final[0]
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoints, "the final stage has no ENTRYPOINT"
    assert _exec_form(entrypoints[-1]) == ["crmstream"]
    assert "crmstream" in scripts
    cmds = [args for keyword, args in final if keyword == "CMD"]
    assert cmds, "the final stage has no CMD"
    command = _exec_form(cmds[-1])
    assert command == ["worker"]
    assert build_parser().parse_args(command).command == "worker"
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]


def test_dockerfile_installs_the_package_without_extras(
    dockerfile: list[tuple[str, str]],
) -> None:
    installs = [args for keyword, args in dockerfile if keyword == "RUN" and "pip install" in args]
    assert installs, "no pip install in the Dockerfile"
    targets = [word for args in installs for word in args.split() if word.startswith(".")]
    assert targets == ["."], f"expected `pip install .` without extras, got {installs}"


def test_dockerignore_keeps_secrets_out_and_the_package_in() -> None:
    assert DOCKERIGNORE.is_file(), f"missing {DOCKERIGNORE}"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = ["pyproject.toml", *pyproject["tool"]["setuptools"]["package-dir"].values()]
    for path in needed:
        assert not _dockerignored(path, patterns), f".dockerignore excludes {path}"
    for path in (".git", ".env", ".venv"):
        assert _dockerignored(path, patterns), f".dockerignore lets {path} in"


def test_the_dashboard_is_configured_by_settings_and_published_on_loopback_only(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    dashboard = services["dashboard"]
    assert dashboard["command"][0] == "dashboard"
    env = _environment(dashboard)
    known = {f"CRM_{field.upper()}" for field in Settings.model_fields}
    assert set(env) <= known, sorted(set(env) - known)
    settings = Settings(**{name[4:].lower(): value for name, value in env.items()})
    assert settings.api_token.get_secret_value()
    # the same broker, Redis and partitions as the workers
    for name in ("CRM_KAFKA_URL", "CRM_REDIS_URL", "CRM_PARTITIONS", "CRM_CHECKPOINT_SECRET"):
        assert env[name] == worker_env[name], name
    assert all(str(port).startswith("127.0.0.1:") for port in dashboard["ports"])
    assert worker_env["CRM_WEB_ENABLED"] == "true"
