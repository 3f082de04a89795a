"""Numenta Anomaly Benchmark (NAB v1.1) support: an exact scorer and a corpus runner.

The scorer reproduces NAB's own numbers so that detector changes can be judged
against the published leaderboard; the runner streams every corpus file through
a detector one value at a time, as the benchmark requires.
"""
