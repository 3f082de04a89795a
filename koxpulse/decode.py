"""Decode a raw batch into valid events and dead letters, without ever raising."""

from __future__ import annotations

from koxpulse.batches import DeadLetter, DecodedBatch, RawBatch
from koxpulse.events import MAX_MESSAGE_BYTES, AnyEvent, InvalidMessage, decode_event


def decode_batch(batch: RawBatch) -> DecodedBatch:
    """Split a raw batch into events and one dead letter per invalid message."""
    events: list[AnyEvent] = []
    stamps: list[int] = []
    positions: list[int] = []
    dead: list[DeadLetter] = []
    append_event = events.append
    append_ts = stamps.append
    append_pos = positions.append
    msgs = batch.messages
    pos = batch.positions
    for i in range(len(msgs)):
        try:
            ev, ms = decode_event(msgs[i])
        except InvalidMessage as bad:
            dead.append(
                DeadLetter(
                    received_at_ms=batch.received_at_ms,
                    source=batch.source,
                    position=batch.position(i),
                    reason=bad.reason,
                    code=bad.code,
                    raw=msgs[i][:MAX_MESSAGE_BYTES],
                )
            )
            continue
        append_event(ev)
        append_ts(ms)
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
