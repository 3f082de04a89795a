"""Input connectors. Each yields :class:`koxpulse.batches.RawBatch` items, one partition per batch.

The rest of the dataflow only sees raw batches, so a new source (Kafka, a
socket) plugs in without touching decoding, windows or sinks.
"""
