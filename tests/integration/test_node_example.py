"""The Node example (Ajv 8, JSON Schema 2020-12, ajv-formats) validates events exactly as
the worker decodes them: the README's example events are valid, and so is, or is not,
every one-field variant of them made with the values validators read differently."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

from crmstream.schemas import InvalidEvent, decode
from crmstream.streams import topics
from tests.unit.test_schema_agreement import CONTRACTS, TRICKY_NUMBERS, TRICKY_TEXT

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
EVENTS = ROOT / "examples" / "events.jsonl"
REMOVE = object()


def run_node(lines: list[dict]) -> list[dict]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the Node example (Debian: apt-get install nodejs)"
    assert (EXAMPLE / "node_modules" / "ajv").is_dir(), (
        "the example's packages are missing: make (or npm ci --prefix examples/node)"
    )
    result = subprocess.run(
        [node, str(EXAMPLE / "validate.mjs")],
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


def test_the_example_events_are_valid_for_node_and_the_worker():
    lines = examples()
    assert [line["topic"] for line in lines] == list(topics.INPUTS)
    verdicts = run_node(lines)
    assert [v["valid"] for v in verdicts] == [True] * len(lines), verdicts
    assert all(accepted(line["topic"], line["event"]) for line in lines)


def test_ajv_and_the_decoder_agree_on_every_variant():
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
    verdicts = run_node(cases)
    assert len(verdicts) == len(cases)
    disagreements = [
        (case, verdict["errors"])
        for case, verdict in zip(cases, verdicts, strict=True)
        if verdict["valid"] != accepted(case["topic"], case["event"])
    ]
    assert not disagreements, disagreements[:5]
    assert sum(v["valid"] for v in verdicts) > 100  # the variants are not all invalid
