"""Decode a raw batch into valid events and dead letters, without ever raising.

Per-message Python work is the throughput budget, so the common case runs in
C: ``map`` applies the typed msgspec decoder to a chunk of messages in one
call, and the size limit, UTF-8 validity and timestamp conversion are checked
once per batch (:func:`_suspects`, :func:`koxpulse.tsparse.many_to_ms`). A
chunk that contains an invalid message is decoded message by message; only
those messages take the slow path that explains why they were refused.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from operator import attrgetter

import msgspec

from koxpulse.batches import DeadLetter, DecodedBatch, RawBatch
from koxpulse.events import (
    MAX_MESSAGE_BYTES,
    AnyEvent,
    InvalidMessage,
    decode_event,
    fast_decoder,
)
from koxpulse.tsparse import many_to_ms

CHUNK = 16  # an invalid message sends its chunk down the slow path: keep chunks small
_TS = attrgetter("ts")


def _suspects(msgs: list[bytes]) -> set[int]:
    """Indexes of messages that are too large or not UTF-8, found with batch-level checks."""
    bad: set[int] = set()
    if msgs and max(map(len, msgs)) > MAX_MESSAGE_BYTES:
        bad.update(i for i, m in enumerate(msgs) if len(m) > MAX_MESSAGE_BYTES)
    joined = b"\n".join(msgs)  # "\n" keeps fragments of two messages from pairing up
    starts: list[int] | None = None
    offset = 0
    while True:
        try:
            joined[offset:].decode()
            return bad
        except UnicodeDecodeError as err:
            if starts is None:
                starts = list(accumulate((len(m) + 1 for m in msgs), initial=0))
            i = bisect_right(starts, offset + err.start) - 1
            bad.add(i)
            offset = starts[i + 1]


def decode_batch(batch: RawBatch) -> DecodedBatch:
    """Split a raw batch into events and one dead letter per invalid message."""
    msgs = batch.messages
    pos = batch.positions
    events: list[AnyEvent] = []
    positions: list[int] = []
    dead: list[DeadLetter] = []
    decode = fast_decoder.decode
    suspects = _suspects(msgs)

    def refuse(i: int, bad: InvalidMessage) -> None:
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

    for start in range(0, len(msgs), CHUNK):
        stop = min(start + CHUNK, len(msgs))
        if not suspects or suspects.isdisjoint(range(start, stop)):
            try:
                events.extend(map(decode, msgs[start:stop]))
            except msgspec.MsgspecError:
                del events[len(positions) :]  # drop the chunk's partial output
            else:
                positions.extend(pos[start:stop])
                continue
        for i in range(start, stop):
            try:
                if i in suspects:
                    raise InvalidMessage("", "")  # explained below by decode_event
                ev = decode(msgs[i])
            except (msgspec.MsgspecError, InvalidMessage):
                try:
                    ev, _ = decode_event(msgs[i])
                except InvalidMessage as bad:
                    refuse(i, bad)
                    continue
            events.append(ev)
            positions.append(pos[i])

    stamps, failures = many_to_ms(list(map(_TS, events)))
    if failures:
        # Rare: a well-formed event whose ts is not a valid time. It becomes a dead letter.
        index_of = {p: i for i, p in enumerate(pos)}
        for j, err in sorted(failures.items()):
            refuse(index_of[positions[j]], InvalidMessage(err.code, err.reason))
        keep = [j for j in range(len(events)) if j not in failures]
        events = [events[j] for j in keep]
        positions = [positions[j] for j in keep]
        stamps = stamps[keep]
        dead.sort(key=lambda d: int(d.position.rpartition(":")[2]))
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
        idle=batch.idle,
    )
