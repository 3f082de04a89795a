"""IdleExit: the partitions of a process end together, once all have been quiet."""

from __future__ import annotations

from koxpulse.sources.kafka import IdleExit


def test_not_over_while_any_partition_has_had_a_message_within_the_idle_time() -> None:
    idle = IdleExit(2.0)
    idle.join("sparse:0")
    idle.join("busy:0")
    idle.report("sparse:0", caught_up=True, last_message=0.0)  # its only message
    idle.report("busy:0", caught_up=True, last_message=9.0)
    assert not idle.over(10.0)  # sparse has been quiet for 10 s, busy for 1 s
    assert not idle.ended
    assert idle.over(11.0)
    assert idle.ended


def test_not_over_while_a_partition_has_not_been_read_to_its_end() -> None:
    idle = IdleExit(1.0)
    idle.join("a:0")
    idle.join("b:0")
    idle.report("a:0", caught_up=True, last_message=0.0)
    assert not idle.over(50.0)  # b never read to its end (or not yet read at all)
    idle.report("b:0", caught_up=False, last_message=0.0)
    assert not idle.over(50.0)
    idle.report("b:0", caught_up=True, last_message=0.0)
    assert idle.over(50.0)


def test_the_decision_is_final() -> None:
    idle = IdleExit(1.0)
    idle.join("a:0")
    idle.report("a:0", caught_up=True, last_message=0.0)
    assert idle.over(1.0)
    idle.report("a:0", caught_up=False, last_message=5.0)
    assert idle.over(5.0)
