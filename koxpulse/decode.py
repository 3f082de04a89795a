"""Decode a raw batch into valid events and dead letters, without ever raising."""

from __future__ import annotations

import msgspec

from koxpulse.batches import DeadLetter, DecodedBatch, RawBatch
from koxpulse.events import (
    MAX_MESSAGE_BYTES,
    AnyEvent,
    InvalidMessage,
    decode_event,
    fast_decoder,
)
from koxpulse.tsparse import rfc3339_to_ms


def decode_batch(batch: RawBatch) -> DecodedBatch:
    """Split a raw batch into events and one dead letter per invalid message.

    The loop inlines the fast path of :func:`decode_event` (one C call, an
    integer check) because it runs once per message; anything unusual goes
    through :func:`decode_event` itself for the precise reason.
    """
    events: list[AnyEvent] = []
    stamps: list[int] = []
    positions: list[int] = []
    dead: list[DeadLetter] = []
    append_event = events.append
    append_ts = stamps.append
    append_pos = positions.append
    decode = fast_decoder.decode
    to_ms = rfc3339_to_ms
    msgs = batch.messages
    pos = batch.positions
    for i in range(len(msgs)):
        raw = msgs[i]
        try:
            if len(raw) > MAX_MESSAGE_BYTES:
                raise ValueError
            if not raw.isascii():
                raw.decode()  # JSON text must be UTF-8 everywhere, unknown fields included
            ev = decode(raw)
            ts = ev.ts
            ms = ts if ts.__class__ is int else to_ms(ts)  # type: ignore[arg-type]
        except (ValueError, msgspec.MsgspecError):
            try:
                ev, ms = decode_event(raw)
            except InvalidMessage as bad:
                dead.append(
                    DeadLetter(
                        received_at_ms=batch.received_at_ms,
                        source=batch.source,
                        position=batch.position(i),
                        reason=bad.reason,
                        code=bad.code,
                        raw=raw[:MAX_MESSAGE_BYTES],
                    )
                )
                continue
        append_event(ev)
        append_ts(ms)  # type: ignore[arg-type]
        append_pos(pos[i])
    return DecodedBatch(
        partition=batch.partition,
        source=batch.source,
        position_prefix=batch.position_prefix,
        received_at_ms=batch.received_at_ms,
        events=events,
        ts=stamps,
        positions=positions,
        messages=len(msgs),
        eof=batch.eof,
        dead=dead,
    )
