"""Contract files generated from the msgspec records: JSON Schema and AsyncAPI.

The ``msgspec.Struct`` definitions in :mod:`crmstream.schemas` are the source of truth.
This module renders them as files that publishers and consumers in other languages can
use, committed under ``schemas/``:

* ``schemas/json/<record>.json``: one JSON Schema (draft 2020-12) per record type;
* ``schemas/asyncapi.yaml``: an AsyncAPI 3.0 document naming every topic, its key, its
  payload (by reference to the JSON Schema files) and, for dead letters, its headers.

``python -m crmstream.streams.tools.contracts`` (``make contracts``) rewrites them;
``--check`` only reports stale files. ``tests/unit/test_contracts.py`` fails while the
committed files differ from what this module generates.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import yaml

import crmstream.schemas
from crmstream.schemas import CUSTOMER_ID_PATTERN, Feedback, InvalidEvent
from crmstream.streams import topics
from crmstream.streams.deadletter import deadletter_headers

#: Version of the contract documents. Not the package version: that changes with every
#: development install, and the generated files must not.
CONTRACT_VERSION = "1.0.0"
#: JSON Schema dialect of the generated schema files.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Base of each schema file's ``$id`` (an identifier, not a location that is fetched).
SCHEMA_ID_BASE = "https://crmstream.dev/schemas/"
#: AsyncAPI ``schemaFormat`` of the payload schemas (they are JSON Schema 2020-12 files).
SCHEMA_FORMAT = "application/schema+json;version=2020-12"
#: Version of the AsyncAPI Kafka bindings used for message keys.
KAFKA_BINDING_VERSION = "0.4.0"
#: Folder, inside ``schemas/``, that holds the JSON Schema files.
JSON_FOLDER = "json"
#: File name, inside ``schemas/``, of the AsyncAPI document.
ASYNCAPI_FILE = "asyncapi.yaml"

#: Every record type with a contract file: inputs first, then outputs.
RECORD_TYPES: tuple[type[msgspec.Struct], ...] = tuple(
    dict.fromkeys([*topics.INPUT_TYPES.values(), *topics.OUTPUT_TYPES.values()])
)

# Rules msgspec cannot see because the Struct checks them in ``__post_init__``. A key that
# is present with ``null`` does not count, as in the Struct.
_EXTRA_RULES: dict[type[msgspec.Struct], dict[str, Any]] = {
    Feedback: {
        "anyOf": [
            {"required": ["rating"], "properties": {"rating": {"type": "integer"}}},
            {"required": ["nps"], "properties": {"nps": {"type": "integer"}}},
        ]
    },
}

_API_DESCRIPTION = """\
Topics crmstream reads and writes. Applications publish purchases, chat messages and feedback
as JSON, keyed by `customer_id`; crmstream validates them, keeps live customer profiles and
publishes alerts, tier changes and marketing triggers. Records it rejects go, unchanged, to
`crm.deadletter`.

Payload schemas are the JSON Schema files in `./json/`, generated from the msgspec records in
`crmstream.schemas` by `python -m crmstream.streams.tools.contracts` (`make contracts`). Do not edit
this file by hand.
"""

_TOPIC_DESCRIPTIONS = {
    topics.PURCHASES: "Completed purchases, published by applications. Keyed by `customer_id`.",
    topics.CHATS: "Support conversation messages, published by applications. "
    "Keyed by `customer_id`.",
    topics.FEEDBACK: "Ratings and NPS answers, published by applications. Keyed by `customer_id`.",
    topics.CUSTOMERS: "Customers' names, contact details, country, marketing consent per "
    "channel and external ids, published by applications. Keyed by `customer_id`. Names, "
    "e-mail addresses and phone numbers are stored only as keyed hashes (and encrypted "
    "copies when a key is configured).",
    topics.ALERTS: "Alerts for a human to look at, published by crmstream. Keyed by `customer_id`.",
    topics.TIER_CHANGES: "Value-tier changes, published by crmstream. Keyed by `customer_id`.",
    topics.TRIGGERS: "Marketing rules that fired, published by crmstream. Keyed by `customer_id`.",
    topics.AUDIENCES: "Customers entering and leaving audiences, published by crmstream. "
    "Keyed by `customer_id`.",
    topics.ERASURES: "Customers crmstream erased, published by crmstream (`crmstream erase`, "
    "`DELETE /api/customers/{id}`). Keyed by `customer_id`: delete what you hold of them.",
    topics.AUDIT: "Who read a profile, erased a customer, acknowledged an alert, changed "
    "the rules or replayed dead letters, and when; published by crmstream.",
    topics.DEADLETTER: "Input records crmstream rejected, published by crmstream. Key and "
    "value are the original record's, byte for byte, so a record can be fixed and replayed; "
    "why and where it was rejected is in the headers.",
}

_DEADLETTER_HEADERS = {
    "__connect.errors.topic": "Topic the rejected record was read from.",
    "__connect.errors.partition": "Partition the rejected record was read from, as decimal text.",
    "__connect.errors.offset": "Offset of the rejected record, as decimal text.",
    "__connect.errors.exception.class.name": "Always `crmstream.InvalidEvent`.",
    "__connect.errors.exception.message": "The reason as `<code> at <path>: <message>`.",
    "crm.error.code": "Machine-readable reason, e.g. `invalid_json`, `schema_violation`, "
    "`unknown_schema_version`, `bad_customer_id`, `too_large`, `too_deep`, `invalid_utf8`, "
    "or a processing-stage code: `tombstone`, `key_mismatch`, `unsupported_currency`, "
    "`erased`, `future_timestamp`.",
    "crm.error.path": "JSON path of the offending field (`$` for the whole record).",
    "crm.error.message": "The reason, for humans.",
    "crm.source.timestamp": "Timestamp of the rejected record, in seconds since the epoch "
    "(decimal text); present only when the source record had one.",
}

_HEADER_RULES: dict[str, Any] = {
    "__connect.errors.partition": {"pattern": "^[0-9]+$"},
    "__connect.errors.offset": {"pattern": "^[0-9]+$"},
    "__connect.errors.exception.class.name": {"const": "crmstream.InvalidEvent"},
}


def file_name(record_type: type) -> str:
    """Name of the JSON Schema file for a record type.

    Examples
    --------
    >>> from crmstream.schemas import DeadLetterRecord, Purchase
    >>> file_name(Purchase), file_name(DeadLetterRecord)
    ('purchase.json', 'dead_letter_record.json')
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", record_type.__name__).lower() + ".json"


def json_schema(record_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record type, as a mapping.

    The record's own definition is the root of the schema (not a ``$ref`` into
    ``$defs``), so rules that msgspec cannot express, such as Feedback's "rating or nps",
    can sit beside its properties.

    Examples
    --------
    >>> from crmstream.schemas import Purchase
    >>> schema = json_schema(Purchase)
    >>> schema["$id"]
    'https://crmstream.dev/schemas/purchase.json'
    >>> schema["required"]
    ['event_id', 'customer_id', 'occurred_at', 'amount']
    """
    generated = msgspec.json.schema(record_type)
    definitions: dict[str, Any] = dict(generated.get("$defs", {}))
    name = generated["$ref"].rsplit("/", 1)[-1]
    root = definitions.pop(name)
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID_BASE + file_name(record_type),
        **root,
        "title": name,
        "description": _description(record_type.__doc__ or name),
        **_EXTRA_RULES.get(record_type, {}),
    }
    if definitions:
        schema["$defs"] = definitions
    # A definition that refers to the record itself must now point at the root.
    return _tidy(schema, f"#/$defs/{name}")


def json_schemas() -> dict[str, str]:
    """The JSON Schema of every record type, as file text keyed by file name.

    The text is stable: sorted keys, two-space indent, a trailing newline.

    Examples
    --------
    >>> schemas = json_schemas()
    >>> sorted(schemas)[:3]
    ['alert.json', 'audience_change.json', 'audit_event.json']
    >>> schemas["feedback.json"].endswith("}\\n")
    True
    """
    return {
        file_name(record_type): _render_json(json_schema(record_type))
        for record_type in RECORD_TYPES
    }


def asyncapi() -> str:
    """The AsyncAPI 3.0 document for every topic, as YAML text.

    Channels carry one message each; payload schemas are referenced from
    ``./json/<record>.json`` through ``components.schemas``. Input topics have a
    ``receive`` operation (the workers consume them) and output topics a ``send`` one.

    Examples
    --------
    >>> document = yaml.safe_load(asyncapi())
    >>> document["asyncapi"], document["channels"]["purchases"]["address"]
    ('3.0.0', 'crm.purchases')
    """
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in topics.ALL:
        channel_id = _channel_id(topic)
        message_id = _message_id(topic)
        channels[channel_id] = {
            "address": topic,
            "description": _TOPIC_DESCRIPTIONS[topic],
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
        }
        messages[message_id] = _message(topic)
        action = "receive" if topic in topics.INPUTS else "send"
        operations[action + channel_id[0].upper() + channel_id[1:]] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": _operation_summary(topic, action),
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
        }
    schemas = {
        record_type.__name__: {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"$ref": f"./{JSON_FOLDER}/{file_name(record_type)}"},
        }
        for record_type in RECORD_TYPES
    }
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "crmstream",
            "version": CONTRACT_VERSION,
            "description": _API_DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
    return yaml.dump(
        document,
        Dumper=_PlainDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def expected_files(directory: Path) -> dict[Path, str]:
    """Every generated file under ``directory`` (the ``schemas/`` folder) and its text."""
    files = {directory / JSON_FOLDER / name: text for name, text in json_schemas().items()}
    files[directory / ASYNCAPI_FILE] = asyncapi()
    return files


def stale(directory: Path) -> list[Path]:
    """Files under ``directory`` that differ from what would be generated.

    That is generated files that are missing or whose text differs, and ``*.json`` files
    in ``json/`` that are no longer generated. Empty when everything is current.
    """
    expected = expected_files(directory)
    outdated = [
        path
        for path, text in expected.items()
        if not path.is_file() or path.read_bytes() != text.encode()
    ]
    return sorted(outdated + _leftovers(directory, expected))


def write(directory: Path) -> list[Path]:
    """Write the contract files under ``directory`` (the repository's ``schemas/``).

    Removes ``*.json`` files in ``json/`` that are no longer generated, and leaves
    current files untouched.

    Returns
    -------
    list of Path
        The files written or removed (empty when everything was current).
    """
    expected = expected_files(directory)
    (directory / JSON_FOLDER).mkdir(parents=True, exist_ok=True)
    changed = []
    for path, text in expected.items():
        data = text.encode()
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            changed.append(path)
    leftovers = _leftovers(directory, expected)
    for path in leftovers:
        path.unlink()
    return sorted(changed + leftovers)


def default_directory() -> Path:
    """The repository's ``schemas/`` folder (crmstream is installed editable)."""
    return Path(crmstream.schemas.__file__).parent


def main(argv: Sequence[str] | None = None) -> int:
    """Write the contract files, or with ``--check`` list stale ones and return 1."""
    parser = argparse.ArgumentParser(
        prog="python -m crmstream.streams.tools.contracts",
        description="Generate schemas/json/*.json and schemas/asyncapi.yaml.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is stale"
    )
    parser.add_argument(
        "--directory",
        type=Path,
        default=None,
        help="the schemas/ folder (default: the installed crmstream.schemas package)",
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory or default_directory()
    if args.check:
        outdated = stale(directory)
        for path in outdated:
            print(f"stale: {path}")
        if outdated:
            print("run `make contracts` to regenerate them", file=sys.stderr)
        return 1 if outdated else 0
    for path in write(directory):
        print(f"{'wrote' if path.exists() else 'removed'} {path}")
    return 0


class _PlainDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` without aliases, and with multi-line text as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_PlainDumper.add_representer(str, _represent_text)


def _message(topic: str) -> dict[str, Any]:
    if topic == topics.DEADLETTER:
        record_type = topics.OUTPUT_TYPES[topic]
        return {
            "name": "DeadLetter",
            "title": "Rejected input record",
            "summary": "The original key and value of a rejected record; the reason is in "
            "the headers.",
            "description": _TOPIC_DESCRIPTIONS[topic]
            + "\n\n`crmstream deadletter list --json` presents these records as "
            f"`{record_type.__name__}` (`#/components/schemas/{record_type.__name__}`, "
            f"`./{JSON_FOLDER}/{file_name(record_type)}`).",
            "contentType": "application/octet-stream",
            "headers": _deadletter_headers_schema(),
            "payload": {
                "type": "string",
                "format": "binary",
                "description": "The rejected record's value, byte for byte: possibly not "
                "JSON, not UTF-8, or empty.",
            },
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "format": "binary",
                        "description": "The rejected record's key, byte for byte "
                        "(normally its `customer_id`; may be absent).",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
    record_type = (topics.INPUT_TYPES | topics.OUTPUT_TYPES)[topic]
    return {
        "name": record_type.__name__,
        "title": record_type.__name__,
        "summary": _description(record_type.__doc__ or "").split("\n", 1)[0],
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{record_type.__name__}"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "pattern": CUSTOMER_ID_PATTERN,
                    "description": "The record's `customer_id`, UTF-8 encoded.",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _deadletter_headers_schema() -> dict[str, Any]:
    # The names come from the code that writes the headers, so a new header fails here
    # (KeyError) until it is described.
    sample = InvalidEvent("code", "message")
    always = [name for name, _ in deadletter_headers(sample, "topic", 0, 0)]
    every = [name for name, _ in deadletter_headers(sample, "topic", 0, 0, timestamp=0.0)]
    return {
        "type": "object",
        "description": "Kafka record headers; every value is UTF-8 text.",
        "properties": {
            name: {
                "type": "string",
                "description": _DEADLETTER_HEADERS[name],
                **_HEADER_RULES.get(name, {}),
            }
            for name in every
        },
        "required": always,
    }


def _operation_summary(topic: str, action: str) -> str:
    if action == "receive":
        return f"The workers consume `{topic}`; records they reject go to `{topics.DEADLETTER}`."
    return f"crmstream publishes to `{topic}`."


def _channel_id(topic: str) -> str:
    first, *rest = topic.removeprefix("crm.").split("-")
    return first + "".join(part.capitalize() for part in rest)


def _message_id(topic: str) -> str:
    if topic == topics.DEADLETTER:
        return "DeadLetter"
    return (topics.INPUT_TYPES | topics.OUTPUT_TYPES)[topic].__name__


def _description(docstring: str) -> str:
    # cleandoc: Python 3.13 strips docstring indentation itself and 3.11 does not; the
    # generated files must not depend on which one ran the generator. Single backticks
    # are what AsyncAPI's CommonMark and most schema viewers render as code.
    return inspect.cleandoc(docstring).replace("``", "`")


def _tidy(node: Any, self_ref: str) -> Any:
    if isinstance(node, dict):
        tidied = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                tidied[key] = _description(value)
            elif key == "$ref" and value == self_ref:
                tidied[key] = "#"
            else:
                tidied[key] = _tidy(value, self_ref)
        return tidied
    if isinstance(node, list):
        return [_tidy(item, self_ref) for item in node]
    return node


def _render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _leftovers(directory: Path, expected: dict[Path, str]) -> list[Path]:
    folder = directory / JSON_FOLDER
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.glob("*.json") if path not in expected)


if __name__ == "__main__":
    sys.exit(main())
