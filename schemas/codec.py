"""Bytes to validated records and back, with machine-readable rejection reasons."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from crmstream.schemas.inputs import CUSTOMER_ID_PATTERN

T = TypeVar("T")

#: Payloads larger than this are rejected before they are parsed.
MAX_PAYLOAD_BYTES = 64 * 1024
#: Deeper nesting of arrays and objects is rejected before parsing (no event needs it, and
#: the parser recurses).
MAX_DEPTH = 32

_TOKEN = re.compile(rb'[\[\]{}"\\]')
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = b"[{", b"]}", ord('"'), ord("\\")

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN.rstrip("$"))
_PATH = re.compile(r" - at `(?P<path>\$[^`]*)`$")
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


class InvalidEvent(ValueError):
    """An input record that cannot be accepted.

    Attributes
    ----------
    code : str
        Machine-readable reason: ``too_large``, ``too_deep``, ``invalid_utf8``, ``invalid_json``,
        ``schema_violation``, ``unknown_schema_version`` or ``bad_customer_id`` from
        decoding; the processing stage adds its own (``tombstone``, ``key_mismatch``,
        ``unsupported_currency``).
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
        raise _classify(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    customer_id = getattr(record, "customer_id", None)
    if customer_id is not None and not _CUSTOMER_ID.fullmatch(customer_id):
        raise InvalidEvent(
            "bad_customer_id", f"customer_id must match {CUSTOMER_ID_PATTERN}", "$.customer_id"
        )
    return record


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
