"""Bytes to validated records and back, with machine-readable rejection reasons."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from crmstream.schemas.inputs import (
    CUSTOMER_ID_PATTERN,
    TIMESTAMP_PATTERN,
    CustomerDetails,
    InputEvent,
)

T = TypeVar("T")

#: Payloads larger than this are rejected before they are parsed.
MAX_PAYLOAD_BYTES = 64 * 1024
#: Deeper nesting of arrays and objects is rejected before parsing (no event needs it, and
#: the parser recurses).
MAX_DEPTH = 32

_TOKEN = re.compile(rb'[\[\]{}"\\]')
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = b"[{", b"]}", ord('"'), ord("\\")

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN.rstrip("$"))
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN.removeprefix("^").removesuffix("$"))
_PATH = re.compile(r" - at `(?P<path>\$[^`]*)`$")
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


class _OccurredAt(msgspec.Struct):
    """Only the timestamp's text: msgspec's datetime parser is laxer than RFC 3339."""

    occurred_at: str = ""


class _At(msgspec.Struct):
    at: str = ""


class _ConsentTimes(msgspec.Struct):
    """Only the consent timestamps' text (checked as strictly as ``occurred_at``)."""

    consent: dict[str, _At] = {}


_occurred_at = msgspec.json.Decoder(_OccurredAt)
_consent_times = msgspec.json.Decoder(_ConsentTimes)
_encoder = msgspec.json.Encoder()


class InvalidEvent(ValueError):
    """An input record that cannot be accepted.

    Attributes
    ----------
    code : str
        Machine-readable reason: ``too_large``, ``too_deep``, ``invalid_utf8``, ``invalid_json``,
        ``schema_violation``, ``unknown_schema_version`` or ``bad_customer_id`` from
        decoding; the processing stage adds its own (``tombstone``, ``key_mismatch``,
        ``unsupported_currency``, ``future_timestamp``).
    path : str
        JSON path of the offending field (``$`` for the whole record).
    message : str
        A sentence for humans.
    """

    def __init__(self, code: str, message: str, path: str = "$") -> None:
        super().__init__(f"{code} at {path}: {message}")
        self.code = code
        self.path = path
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """Return the reason as a JSON-ready mapping."""
        return {"code": self.code, "path": self.path, "message": self.message}


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder


def decode(raw: bytes, type_: type[T]) -> T:
    """Decode and validate one JSON record, or raise :class:`InvalidEvent`.

    Examples
    --------
    >>> from crmstream.schemas import Purchase
    >>> p = decode(b'{"event_id": "e1", "customer_id": "c1", '
    ...            b'"occurred_at": "2026-01-02T03:04:05Z", "amount": 12.5}', Purchase)
    >>> p.amount, p.currency
    (12.5, 'USD')
    >>> try:
    ...     decode(b'{"event_id": "e1", "customer_id": "c1", '
    ...            b'"occurred_at": "2026-01-02T03:04:05Z", "amount": -1}', Purchase)
    ... except InvalidEvent as exc:
    ...     print(exc.code, exc.path)
    schema_violation $.amount

    As in JSON Schema, an integral float is an integer:

    >>> from crmstream.schemas import Feedback
    >>> decode(b'{"event_id": "f1", "customer_id": "c1", '
    ...        b'"occurred_at": "2026-01-02T03:04:05Z", "rating": 5.0}', Feedback).rating
    5
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidEvent("too_large", f"payload is {len(raw)} bytes, limit {MAX_PAYLOAD_BYTES}")
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise InvalidEvent("too_deep", f"arrays and objects nest deeper than {MAX_DEPTH}")
    if not raw.isascii():
        # The parser checks UTF-8 only in the fields it reads, not in ignored ones.
        try:
            raw.decode()
        except UnicodeDecodeError as exc:
            raise InvalidEvent(
                "invalid_utf8", f"payload is not valid UTF-8: {exc.reason}"
            ) from None
    try:
        record = _decoder(type_).decode(raw)
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_utf8", f"payload is not valid UTF-8: {exc.reason}") from None
    except msgspec.ValidationError as exc:
        text = str(exc)
        if not (text.startswith("Expected `int") and "got `float`" in text):
            raise _classify(text) from None
        record = _decode_integral_floats(raw, type_)
    except msgspec.DecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if isinstance(record, InputEvent) and not _TIMESTAMP.fullmatch(
        _occurred_at.decode(raw).occurred_at
    ):
        raise InvalidEvent(
            "schema_violation",
            "Expected an RFC 3339 date-time with `T`, seconds and an offset "
            "(`Z` or `+hh:mm`), e.g. 2026-05-01T10:00:00Z",
            "$.occurred_at",
        )
    if isinstance(record, CustomerDetails) and record.consent:
        for channel, given in _consent_times.decode(raw).consent.items():
            if not _TIMESTAMP.fullmatch(given.at):
                raise InvalidEvent(
                    "schema_violation",
                    "Expected an RFC 3339 date-time with `T`, seconds and an offset",
                    f"$.consent.{channel}.at",
                )
    customer_id = getattr(record, "customer_id", None)
    if customer_id is not None and not _CUSTOMER_ID.fullmatch(customer_id):
        raise InvalidEvent(
            "bad_customer_id", f"customer_id must match {CUSTOMER_ID_PATTERN}", "$.customer_id"
        )
    return record


def _decode_integral_floats(raw: bytes, type_: type[T]) -> T:
    """Decode ``raw`` again with every integral float (``5.0``, ``1e2``) read as an integer,
    as JSON Schema reads them; only records that failed on such a float come here."""
    try:
        return msgspec.convert(_integral(msgspec.json.decode(raw)), type_)
    except msgspec.ValidationError as exc:
        raise _classify(str(exc)) from None


def _integral(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def nesting_depth(raw: bytes) -> int:
    """Deepest nesting of JSON arrays and objects in ``raw`` (brackets in strings ignored).

    Examples
    --------
    >>> nesting_depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    depth = deepest = 0
    in_string = False
    escaped_until = -1
    # One pass over the structural characters only: linear in the payload, whatever it is.
    for match in _TOKEN.finditer(raw):
        position = match.start()
        if position < escaped_until:
            continue
        char = raw[position]
        if in_string:
            if char == _BACKSLASH:
                escaped_until = position + 2
            elif char == _QUOTE:
                in_string = False
        elif char == _QUOTE:
            in_string = True
        elif char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSE:
            depth -= 1
    return deepest


def _classify(text: str) -> InvalidEvent:
    match = _PATH.search(text)
    path = match["path"] if match else "$"
    message = text[: match.start()] if match else text
    if path == "$.customer_id":
        return InvalidEvent("bad_customer_id", message, path)
    if path == "$.schema_version":
        return InvalidEvent("unknown_schema_version", message, path)
    return InvalidEvent("schema_violation", message, path)


def encode(record: Any) -> bytes:
    """Encode a record as compact JSON.

    Examples
    --------
    >>> from crmstream.schemas import Purchase
    >>> raw = (b'{"event_id":"e1","customer_id":"c1",'
    ...        b'"occurred_at":"2026-01-02T03:04:05Z","amount":1.0}')
    >>> decode(encode(decode(raw, Purchase)), Purchase) == decode(raw, Purchase)
    True
    """
    return _encoder.encode(record)
