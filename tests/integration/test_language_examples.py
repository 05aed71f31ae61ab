"""The validating examples in other languages read the committed schemas exactly as the
worker decodes events: the Node one (Ajv 8, JSON Schema 2020-12, ajv-formats) and the Go
one (gojsonschema, Debian's golang-github-xeipuuv-gojsonschema-dev) call the README's
example events valid, and agree with the decoder on every one-field variant of them made
with the values validators read differently. The Java example needs a validator from
Maven Central, which is not reachable here: its events are checked, not its code."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from crmstream.schemas import InvalidEvent, decode
from crmstream.streams import topics
from crmstream.streams.tools.contracts import file_name
from tests.unit.test_schema_agreement import CONTRACTS, TRICKY_NUMBERS, TRICKY_TEXT

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EVENTS = EXAMPLES / "events.jsonl"
SCHEMAS = ROOT / "schemas" / "json"
GOJSONSCHEMA = Path("/usr/share/gocode/src/github.com/xeipuuv/gojsonschema")
REMOVE = object()


def missing(message: str) -> None:
    """Fail under CI=true, where the Makefile's `system` target installs what is needed;
    elsewhere skip with the install command."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def node_command(tmp_path_factory) -> list[str]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the Node example (Debian: apt-get install nodejs)"
    assert (EXAMPLES / "node" / "node_modules" / "ajv").is_dir(), (
        "the example's packages are missing: make (or npm ci --prefix examples/node)"
    )
    return [node, str(EXAMPLES / "node" / "validate.mjs")]


def go_command(tmp_path_factory) -> list[str]:
    """Build examples/go with Debian's Go and gojsonschema (GOPATH mode: no module proxy)."""
    go = shutil.which("go")
    if not go or not GOJSONSCHEMA.is_dir():
        missing(
            "Go and gojsonschema are needed for the Go example: apt-get install -y golang-go "
            "golang-github-xeipuuv-gojsonschema-dev (make test does it when run as root)"
        )
    folder = tmp_path_factory.mktemp("go")
    binary = folder / "validate"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode"}
    if not any(name in env for name in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(folder / "cache")  # Go needs a build cache somewhere
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=EXAMPLES / "go",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    return [str(binary), "-schemas", str(SCHEMAS)]


@pytest.fixture(scope="module", params=["node", "go"])
def validator(request, tmp_path_factory) -> list[str]:
    """The command line of one language's example."""
    return {"node": node_command, "go": go_command}[request.param](tmp_path_factory)


def run(command: list[str], lines: list[dict]) -> list[dict]:
    result = subprocess.run(
        command,
        input="".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def accepted(topic: str, event: object) -> bool:
    try:
        decode(json.dumps(event, ensure_ascii=False).encode(), topics.INPUT_TYPES[topic])
    except InvalidEvent:
        return False
    return True


def examples() -> list[dict]:
    return [json.loads(line) for line in EVENTS.read_text().splitlines() if line.strip()]


def test_the_example_events_are_valid_for_the_example_and_the_worker(validator):
    lines = examples()
    assert [line["topic"] for line in lines] == list(topics.INPUTS)
    verdicts = run(validator, lines)
    assert [v["valid"] for v in verdicts] == [True] * len(lines), verdicts
    assert [v["event_id"] for v in verdicts] == [line["event"]["event_id"] for line in lines]
    assert all(accepted(line["topic"], line["event"]) for line in lines)


def test_the_example_and_the_decoder_agree_on_every_variant(validator):
    values = [*TRICKY_TEXT, *TRICKY_NUMBERS, True, False, None, [], {}, REMOVE]
    cases = []
    for example in examples():
        record_type = topics.INPUT_TYPES[example["topic"]]
        for field in CONTRACTS[record_type]["properties"]:
            for value in values:
                event = copy.deepcopy(example["event"])
                if value is REMOVE:
                    event.pop(field, None)
                else:
                    event[field] = value
                cases.append({"topic": example["topic"], "event": event})
    verdicts = run(validator, cases)
    assert len(verdicts) == len(cases)
    disagreements = [
        (case, verdict["errors"])
        for case, verdict in zip(cases, verdicts, strict=True)
        if verdict["valid"] != accepted(case["topic"], case["event"])
    ]
    assert not disagreements, disagreements[:5]
    assert sum(v["valid"] for v in verdicts) > 100  # the variants are not all invalid


def test_the_java_example_reads_the_repository_schemas():
    """The Java example cannot be built here (its validator comes from Maven Central): it
    names the schema file of every input topic, and the events it is shown with are valid
    for a JSON Schema 2020-12 validator with format assertions on, as it runs networknt's."""
    source = (EXAMPLES / "java" / "src/main/java/dev/crmstream/examples/Validate.java").read_text()
    named = dict(re.findall(r'"(crm\.[a-z-]+)", "([a-z_]+\.json)"', source))
    assert named == {topic: file_name(kind) for topic, kind in topics.INPUT_TYPES.items()}
    assert "SpecificationVersion.DRAFT_2020_12" in source
    assert "formatAssertionsEnabled(true)" in source
    for line in examples():
        schema = json.loads((SCHEMAS / named[line["topic"]]).read_text())
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        assert not list(validator.iter_errors(line["event"])), line
        broken = {**line["event"], "occurred_at": "2026-02-30T10:00:00Z"}
        assert not validator.is_valid(broken)  # the date-time format is checked
