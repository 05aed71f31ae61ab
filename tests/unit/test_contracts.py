"""Contract files: the committed copies are current, and they say what the worker enforces.

Publishers in other languages validate against ``schemas/json/*.json`` and read
``schemas/asyncapi.yaml``; the worker validates with msgspec. These tests check that the
committed files are what ``python -m crmstream.streams.tools.contracts`` generates now, and that
the JSON Schema accepts and rejects the same events as :func:`crmstream.schemas.decode`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from crmstream.schemas import (
    CUSTOMER_ID_PATTERN,
    Alert,
    AudienceChange,
    AuditEvent,
    ChatMessage,
    CustomerDetails,
    DeadLetterRecord,
    Erasure,
    Feedback,
    InvalidEvent,
    Item,
    Purchase,
    TierChange,
    Trigger,
    decode,
    encode,
)
from crmstream.schemas.inputs import MAX_MONEY, MAX_TEXT
from crmstream.streams import topics
from crmstream.streams.deadletter import deadletter_headers
from crmstream.streams.tools import contracts

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
REGENERATE = (
    "the committed contract files are stale: run `make contracts` "
    "(python -m crmstream.streams.tools.contracts) and commit schemas/json/ and "
    "schemas/asyncapi.yaml"
)
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

#: The contract file of every record type, spelled out rather than computed.
FILES: dict[type[msgspec.Struct], str] = {
    Purchase: "purchase.json",
    ChatMessage: "chat_message.json",
    Feedback: "feedback.json",
    CustomerDetails: "customer_details.json",
    TierChange: "tier_change.json",
    Alert: "alert.json",
    Trigger: "trigger.json",
    AudienceChange: "audience_change.json",
    DeadLetterRecord: "dead_letter_record.json",
    Erasure: "erasure.json",
    AuditEvent: "audit_event.json",
}

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def load_schema(record_type: type) -> dict[str, Any]:
    return json.loads((SCHEMAS / "json" / FILES[record_type]).read_text(encoding="utf-8"))


def validator(record_type: type) -> Draft202012Validator:
    return Draft202012Validator(load_schema(record_type))


def as_json(record: msgspec.Struct) -> dict[str, Any]:
    """What a publisher sends: the record encoded by crmstream, as a JSON document."""
    return json.loads(encode(record))


# --- (a) the committed files are what the generator writes --------------------------------


def test_committed_json_schemas_are_current():
    generated = contracts.json_schemas()
    committed = {path.name: path.read_bytes() for path in (SCHEMAS / "json").glob("*.json")}
    assert sorted(committed) == sorted(generated), REGENERATE
    outdated = sorted(name for name, text in generated.items() if committed[name] != text.encode())
    assert outdated == [], f"{outdated}: {REGENERATE}"


def test_committed_asyncapi_is_current():
    committed = (SCHEMAS / "asyncapi.yaml").read_bytes().decode()
    assert committed == contracts.asyncapi(), REGENERATE


def test_generator_writes_into_this_repository():
    # `make contracts` writes next to the installed package; that must be this checkout.
    assert contracts.default_directory().resolve() == SCHEMAS.resolve()


def test_write_and_check_find_and_fix_stale_files(tmp_path: Path, capsys):
    expected = sorted(contracts.expected_files(tmp_path))
    assert contracts.write(tmp_path) == expected
    assert contracts.stale(tmp_path) == []
    assert contracts.write(tmp_path) == []
    assert contracts.main(["--check", "--directory", str(tmp_path)]) == 0

    (tmp_path / "json" / "purchase.json").write_text("{}\n")
    (tmp_path / "json" / "retired_event.json").write_text("{}\n")
    (tmp_path / "asyncapi.yaml").unlink()
    outdated = sorted(
        [
            tmp_path / "asyncapi.yaml",
            tmp_path / "json" / "purchase.json",
            tmp_path / "json" / "retired_event.json",
        ]
    )
    assert contracts.stale(tmp_path) == outdated
    capsys.readouterr()
    assert contracts.main(["--check", "--directory", str(tmp_path)]) == 1
    assert "make contracts" in capsys.readouterr().err
    assert contracts.stale(tmp_path) == outdated, "--check must not write"

    assert contracts.main(["--directory", str(tmp_path)]) == 0
    assert contracts.stale(tmp_path) == []
    assert not (tmp_path / "json" / "retired_event.json").exists()


# --- (b) the JSON Schema files are valid and agree with the decoder ------------------------


def test_every_record_type_has_a_schema_file():
    record_types = {*topics.INPUT_TYPES.values(), *topics.OUTPUT_TYPES.values()}
    assert record_types == set(FILES)
    assert sorted(path.name for path in (SCHEMAS / "json").glob("*.json")) == sorted(FILES.values())


@pytest.mark.parametrize("record_type", list(FILES), ids=lambda t: t.__name__)
def test_schema_file_is_a_valid_2020_12_schema_of_its_record(record_type):
    schema = load_schema(record_type)
    assert schema["$schema"] == DRAFT_2020_12
    assert validator_for(schema) is Draft202012Validator
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"{FILES[record_type]} is not a valid 2020-12 schema: {exc.message}")
    assert schema["$id"].endswith("/" + FILES[record_type])
    assert schema["title"] == record_type.__name__
    assert schema["description"].split()[:3] == (record_type.__doc__ or "").split()[:3]
    fields = msgspec.structs.fields(record_type)
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {field.encode_name for field in fields}
    assert set(schema["required"]) == {field.encode_name for field in fields if field.required}


def valid_events() -> list[msgspec.Struct]:
    return [
        Purchase(event_id="e1", customer_id="c1", occurred_at=AT, amount=12.5),
        Purchase(
            event_id="e2",
            customer_id="Cust_0042.eu-west",
            occurred_at=AT,
            amount=MAX_MONEY,
            currency="EUR",
            cost=0.0,
            order_id="o-17",
            items=[Item(sku="A1", quantity=2, unit_price=10.0, category="books"), Item(sku="B2")],
        ),
        ChatMessage(
            event_id="e3",
            customer_id="c1",
            occurred_at=AT,
            conversation_id="conv-1",
            sender="customer",
            text="Where is my order?",
            intent="delivery",
        ),
        ChatMessage(
            event_id="e4",
            customer_id="c1",
            occurred_at=AT,
            conversation_id="conv-1",
            sender="bot",
            text="x" * MAX_TEXT,
            channel="email",
        ),
        Feedback(event_id="e5", customer_id="c1", occurred_at=AT, rating=5),
        Feedback(event_id="e6", customer_id="c1", occurred_at=AT, nps=0),
        Feedback(
            event_id="e7", customer_id="c1", occurred_at=AT, rating=1, nps=10, text="", order_id="o"
        ),
    ]


@pytest.mark.parametrize("event", valid_events(), ids=lambda e: f"{type(e).__name__}-{e.event_id}")
def test_valid_event_matches_its_schema(event):
    document = as_json(event)
    errors = [error.message for error in validator(type(event)).iter_errors(document)]
    assert errors == []
    assert decode(encode(event), type(event)) == event


@pytest.mark.parametrize("event", valid_events()[::2], ids=lambda e: type(e).__name__)
def test_unknown_fields_are_accepted_by_schema_and_decoder(event):
    document = {**as_json(event), "x_publisher_trace": "abc", "nested": {"any": [1, 2]}}
    assert validator(type(event)).is_valid(document)
    assert decode(json.dumps(document).encode(), type(event)) == event


BASES: dict[type, dict[str, Any]] = {
    Purchase: as_json(Purchase(event_id="e1", customer_id="c1", occurred_at=AT, amount=12.5)),
    ChatMessage: as_json(
        ChatMessage(
            event_id="e1",
            customer_id="c1",
            occurred_at=AT,
            conversation_id="conv-1",
            sender="customer",
            text="hello",
        )
    ),
    Feedback: as_json(Feedback(event_id="e1", customer_id="c1", occurred_at=AT, rating=4)),
}

COMMON_INVALID = {
    "missing event_id": {"event_id": ...},
    "empty event_id": {"event_id": ""},
    "missing customer_id": {"customer_id": ...},
    "customer_id with a space": {"customer_id": "c 1"},
    "customer_id with a slash": {"customer_id": "c/1"},
    "customer_id too long": {"customer_id": "c" * 65},
    "missing occurred_at": {"occurred_at": ...},
    "occurred_at as a number": {"occurred_at": 1767323045},
    "schema_version 2": {"schema_version": 2},
}

INVALID = [
    *[(t, name, change) for t in BASES for name, change in COMMON_INVALID.items()],
    (Purchase, "negative amount", {"amount": -0.01}),
    (Purchase, "amount above the maximum", {"amount": MAX_MONEY * 10}),
    (Purchase, "amount as text", {"amount": "12.5"}),
    (Purchase, "missing amount", {"amount": ...}),
    (Purchase, "negative cost", {"cost": -1}),
    (Purchase, "lowercase currency", {"currency": "usd"}),
    (Purchase, "item quantity 0", {"items": [{"sku": "A1", "quantity": 0}]}),
    (Purchase, "item without sku", {"items": [{"quantity": 1}]}),
    (ChatMessage, "sender robot", {"sender": "robot"}),
    (ChatMessage, "missing sender", {"sender": ...}),
    (ChatMessage, "empty text", {"text": ""}),
    (ChatMessage, "text too long", {"text": "x" * (MAX_TEXT + 1)}),
    (ChatMessage, "unknown intent", {"intent": "spam"}),
    (ChatMessage, "missing conversation_id", {"conversation_id": ...}),
    (Feedback, "rating 6", {"rating": 6}),
    (Feedback, "rating 0", {"rating": 0}),
    (Feedback, "nps 11", {"nps": 11}),
    (Feedback, "nps -1", {"nps": -1}),
    (Feedback, "neither rating nor nps", {"rating": ..., "nps": ...}),
    (Feedback, "rating and nps both null", {"rating": None, "nps": None}),
    (Feedback, "text too long", {"text": "x" * (MAX_TEXT + 1)}),
]


@pytest.mark.parametrize(
    ("record_type", "change"),
    [(t, change) for t, _, change in INVALID],
    ids=[f"{t.__name__}: {name}" for t, name, _ in INVALID],
)
def test_invalid_event_is_rejected_by_schema_and_decoder(record_type, change):
    base = BASES[record_type]
    check = validator(record_type)
    # Only the change makes the event invalid: the base passes both.
    assert check.is_valid(base)
    decode(json.dumps(base).encode(), record_type)

    document = {**base, **change}
    document = {key: value for key, value in document.items() if value is not ...}
    assert not check.is_valid(document), f"the JSON Schema accepts {change}"
    with pytest.raises(InvalidEvent):
        decode(json.dumps(document).encode(), record_type)


# --- (c) the AsyncAPI document ---------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text(encoding="utf-8"))


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def pointer(node: Any, fragment: str) -> Any:
    """Follow a JSON pointer (``/a/b``); raise LookupError if it leads nowhere."""
    for token in fragment.split("/")[1:] if fragment else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise LookupError(fragment)
    return node


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The target of a ``$ref``: inside ``document``, or in a file relative to schemas/."""
    target, _, fragment = ref.partition("#")
    root: Any = document
    if target:
        path = SCHEMAS / target
        if not path.is_file():
            raise LookupError(f"{ref}: no file {path}")
        text = path.read_text(encoding="utf-8")
        root = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return pointer(root, fragment)


def deref(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"} and node["$ref"].startswith("#"):
        node = resolve(document, node["$ref"])
    return node


def channel_messages(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The one message of each channel, by topic."""
    found = {}
    for channel in document["channels"].values():
        (message,) = channel["messages"].values()
        found[channel["address"]] = deref(document, message)
    return found


def test_asyncapi_version_and_info(document):
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "crmstream"
    assert document["info"]["version"] == "1.0.0"
    assert document["info"]["description"]


# Fixed fields of the AsyncAPI 3.0 objects used here (extensions start with x-).
OBJECT_FIELDS = {
    "root": {
        "asyncapi",
        "id",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    },
    "channel": {
        "address",
        "messages",
        "title",
        "summary",
        "description",
        "servers",
        "parameters",
        "tags",
        "externalDocs",
        "bindings",
    },
    "operation": {
        "action",
        "channel",
        "title",
        "summary",
        "description",
        "security",
        "tags",
        "externalDocs",
        "bindings",
        "traits",
        "messages",
        "reply",
    },
    "message": {
        "headers",
        "payload",
        "correlationId",
        "contentType",
        "name",
        "title",
        "summary",
        "description",
        "tags",
        "externalDocs",
        "bindings",
        "examples",
        "traits",
    },
}
COMPONENT_KEY = re.compile(r"^[\w\d.\-_]+$")


def unknown_fields(node: dict[str, Any], kind: str) -> set[str]:
    return {key for key in node if not key.startswith("x-")} - OBJECT_FIELDS[kind]


def test_asyncapi_objects_have_only_asyncapi_3_fields(document):
    assert unknown_fields(document, "root") == set()
    for name, channel in document["channels"].items():
        assert COMPONENT_KEY.match(name)
        assert unknown_fields(channel, "channel") == set(), name
    for name, operation in document["operations"].items():
        assert COMPONENT_KEY.match(name)
        assert unknown_fields(operation, "operation") == set(), name
        assert operation["action"] in {"send", "receive"}
        assert set(operation["channel"]) == {"$ref"}
    for section, members in document["components"].items():
        for name in members:
            assert COMPONENT_KEY.match(name), f"components.{section}.{name}"
    for name, message in document["components"]["messages"].items():
        assert unknown_fields(message, "message") == set(), name
        assert message["bindings"]["kafka"]["bindingVersion"] in {"0.3.0", "0.4.0"}
    for name, schema in document["components"]["schemas"].items():
        if "schemaFormat" in schema:  # a Multi Format Schema Object
            assert set(schema) == {"schemaFormat", "schema"}, name


def test_one_channel_per_topic(document):
    addresses = [channel["address"] for channel in document["channels"].values()]
    assert sorted(addresses) == sorted(topics.ALL)
    for channel in document["channels"].values():
        assert channel["description"], channel["address"]
        assert len(channel["messages"]) == 1, channel["address"]


def test_every_ref_resolves(document):
    found = list(refs(document))
    # Each channel refers to its message and each operation to its channel and message.
    assert len(found) >= 3 * len(topics.ALL)
    unresolved = []
    for ref in found:
        try:
            resolve(document, ref)
        except LookupError:
            unresolved.append(ref)
    assert unresolved == []


def test_each_topic_carries_its_record_type(document):
    record_types = topics.INPUT_TYPES | topics.OUTPUT_TYPES
    for topic, message in channel_messages(document).items():
        if topic == topics.DEADLETTER:
            continue
        payload = deref(document, message["payload"])
        assert payload["schemaFormat"] == "application/schema+json;version=2020-12"
        assert payload["schema"] == {"$ref": f"./json/{FILES[record_types[topic]]}"}, topic
        assert resolve(document, payload["schema"]["$ref"])["title"] == record_types[topic].__name__
        assert message["contentType"] == "application/json"


def test_keys_are_customer_ids_except_dead_letters(document):
    for topic, message in channel_messages(document).items():
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string", topic
        if topic == topics.DEADLETTER:
            assert key["format"] == "binary"
            assert "pattern" not in key
        else:
            assert key["pattern"] == CUSTOMER_ID_PATTERN, topic
            assert Draft7Validator(key).is_valid("Cust_0042.eu-west")
            assert not Draft7Validator(key).is_valid("c 1")


def test_dead_letter_message_is_the_original_bytes_plus_headers(document):
    message = channel_messages(document)[topics.DEADLETTER]
    assert message["contentType"] == "application/octet-stream"
    assert message["payload"]["format"] == "binary"

    headers = deref(document, message["headers"])
    error = InvalidEvent("schema_violation", "Expected `float`, got `str`", "$.amount")
    always = deadletter_headers(error, topics.PURCHASES, 3, 42)
    every = deadletter_headers(error, topics.PURCHASES, 3, 42, timestamp=1767323045.25)
    assert headers["type"] == "object"
    assert set(headers["properties"]) == {name for name, _ in every}
    assert set(headers["required"]) == {name for name, _ in always}
    assert all(schema.get("description") for schema in headers["properties"].values())
    # What deadletter.py writes satisfies the documented headers.
    written = {name: value.decode() for name, value in every}
    errors = [e.message for e in Draft7Validator(headers).iter_errors(written)]
    assert errors == []


def test_workers_receive_inputs_and_send_outputs(document):
    actions: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        channel_ref = operation["channel"]["$ref"]
        channel = resolve(document, channel_ref)
        actions.setdefault(channel["address"], set()).add(operation["action"])
        for message in operation["messages"]:
            # AsyncAPI 3.0: an operation's messages are those of its own channel.
            assert message["$ref"].startswith(channel_ref + "/messages/")
    assert {topic: actions.get(topic) for topic in topics.INPUTS} == {
        topic: {"receive"} for topic in topics.INPUTS
    }
    assert {topic: actions.get(topic) for topic in topics.OUTPUTS} == {
        topic: {"send"} for topic in topics.OUTPUTS
    }
