"""The event schema of contract v1 §1, decoded and validated by msgspec in one pass.

The typed decoder is the fast path: one C call turns a JSON line into a
validated, immutable event. Only when it refuses a message do we spend time on
:func:`explain_invalid`, which re-reads the message generically to say
precisely what is wrong in words a producer's engineer can act on.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

from koxpulse.timeutil import MAX_TS_MS, MIN_TS_MS
from koxpulse.tsparse import TimestampError, out_of_range_reason, rfc3339_to_ms

MAX_MESSAGE_BYTES: Final = 64 * 1024
EVENT_TYPES: Final = ("scan", "redemption", "order", "shipment")

EventId = Annotated[str, Meta(min_length=1, max_length=128)]
Name64 = Annotated[str, Meta(min_length=1, max_length=64)]
EpochMs = Annotated[int, Meta(ge=MIN_TS_MS, le=MAX_TS_MS)]
# Upper bound keeps a JSON literal such as 1e400 (parsed as infinity) out of sums.
Money = Annotated[float, Meta(ge=0, le=1e12)]
Latitude = Annotated[float, Meta(ge=-90, le=90)]
Longitude = Annotated[float, Meta(ge=-180, le=180)]
PositiveInt = Annotated[int, Meta(ge=1, le=2**53)]


class Event(Struct, frozen=True, gc=False, tag_field="type"):
    """Fields every event has. ``ts`` stays as sent; the decoder adds epoch ms beside it."""

    event_id: EventId
    ts: EpochMs | str  # strings are checked and converted by koxpulse.tsparse
    region: Name64
    channel: Name64


class Scan(Event, frozen=True, gc=False, tag="scan"):
    """A consumer scanned the one-code on a product."""

    code_id: str
    user_id: str
    batch_id: str | None = None
    sku: str | None = None
    outlet_id: str | None = None
    device_id: str | None = None
    city: str | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    campaign_id: str | None = None
    variant: str | None = None


class Redemption(Event, frozen=True, gc=False, tag="redemption"):
    """The reward behind a scanned code was claimed (核销)."""

    code_id: str
    user_id: str
    outlet_id: str | None = None
    device_id: str | None = None
    amount: Money | None = None
    campaign_id: str | None = None
    variant: str | None = None


class Order(Event, frozen=True, gc=False, tag="order"):
    """A purchase."""

    order_id: str
    user_id: str
    amount: Money
    quantity: PositiveInt = 1
    sku: str | None = None
    outlet_id: str | None = None
    campaign_id: str | None = None
    variant: str | None = None


class Shipment(Event, frozen=True, gc=False, tag="shipment"):
    """A batch of coded units authorised for sale in ``region``/``channel``."""

    batch_id: str
    codes: PositiveInt
    sku: str | None = None
    outlet_id: str | None = None


AnyEvent = Scan | Redemption | Order | Shipment
EVENT_CLASSES: Final = {
    "scan": Scan,
    "redemption": Redemption,
    "order": Order,
    "shipment": Shipment,
}

fast_decoder = msgspec.json.Decoder(AnyEvent)
_generic = msgspec.json.Decoder()


class InvalidMessage(Exception):
    """A message that is not a valid event; ``code`` is a bounded label for metrics."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def decode_event(raw: bytes) -> tuple[AnyEvent, int]:
    """Decode one message into an event and its epoch-millisecond time.

    Raises :class:`InvalidMessage` with a precise reason for anything the
    contract calls invalid.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage("oversized", f"message is larger than 64 KiB ({len(raw)} bytes)")
    try:
        if not raw.isascii():
            raw.decode()  # JSON text must be UTF-8 everywhere, unknown fields included
        ev = fast_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        code, reason = explain_invalid(raw, exc)
        raise InvalidMessage(code, reason) from exc
    ts = ev.ts
    if ts.__class__ is int:
        return ev, ts  # type: ignore[return-value]
    try:
        return ev, rfc3339_to_ms(ts)  # type: ignore[arg-type]
    except TimestampError as exc:
        raise InvalidMessage(exc.code, exc.reason) from exc


_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`)?(?P<rest>.*)$")

_WANT_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "int | str": "an RFC 3339 string with a UTC offset or integer epoch milliseconds",
    "str | null": "a string",
    "float | null": "a number",
    "int | null": "an integer",
}


def explain_invalid(raw: bytes, exc: Exception) -> tuple[str, str]:
    """Turn a refusal of the typed decoder into ``(code, human reason)``.

    Runs only on invalid input, so clarity wins over speed here.
    """
    if not raw.strip():
        return "empty", "message is empty"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return (
            "invalid_utf8",
            f"message is not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})",
        )
    try:
        doc = _generic.decode(raw)
    except msgspec.DecodeError as err:
        return "not_json", f"message is not valid JSON: {err}"
    if not isinstance(doc, dict):
        return "not_object", f"message is a JSON {_json_kind(doc)}, not an object"
    etype = doc.get("type")
    if "type" not in doc:
        return "missing_field", "message is missing required field type"
    if not isinstance(etype, str):
        return "wrong_type", f"field type must be a string, got {_json_kind(etype)}"
    if etype not in EVENT_CLASSES:
        return (
            "unknown_type",
            f"unknown event type {etype[:64]!r} (expected scan, redemption, order or shipment)",
        )
    msg = str(exc)
    m = _MISSING.search(msg)
    if m:
        return "missing_field", f"{etype} is missing required field {m['field']}"
    path_m = _AT_PATH.search(msg)
    field = path_m["path"] if path_m else ""
    body = msg[: path_m.start()] if path_m else msg
    value = doc.get(field) if field else None
    if field == "ts":
        return _explain_ts(value, body)
    e = _EXPECTED.match(body)
    if e and e["got"]:
        want = _WANT_WORDS.get(e["want"], e["want"])
        return (
            "wrong_type",
            f"{etype} field {field} must be {want}, got {_describe(value)}",
        )
    if e:
        bound = e["rest"].strip()
        return (
            "out_of_range",
            f"{etype} field {field} must be {_bound_words(e['want'], bound)}, got {_show(value)}",
        )
    return "invalid", f"{etype} is invalid: {msg}"


def _explain_ts(value: Any, body: str) -> tuple[str, str]:
    if isinstance(value, str):
        if "timezone" in body:
            return "ts_no_offset", f"ts {value[:64]} has no UTC offset"
        return (
            "ts_invalid",
            f"ts {value[:64]!r} is not an RFC 3339 time with a UTC offset or epoch milliseconds",
        )
    if isinstance(value, bool) or not isinstance(value, int):
        return (
            "wrong_type",
            "ts must be an RFC 3339 string with a UTC offset or integer epoch milliseconds, "
            f"got {_describe(value)}",
        )
    return (
        "out_of_range",
        out_of_range_reason(value),
    )


def _bound_words(want: str, bound: str) -> str:
    if want == "str" and "length" in bound:
        return f"a string of {bound.replace('of ', '')}"
    return f"{want.replace('float', 'a number').replace('int', 'an integer')} {bound}".strip()


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(value: Any) -> str:
    kind = _json_kind(value)
    return kind if value is None else f"{kind} {_show(value)}"


def _show(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
