"""The ingest counts as paused after a few of its own gaps (htj2k/ingest_pace.py)."""

from neuronova.htj2k.ingest_pace import IngestPace
from tests.support.clock import ManualClock


def arrivals(pace: IngestPace, clock: ManualClock, gap: float, count: int) -> None:
    for _ in range(count):
        clock.now += gap
        pace.arrived()


def test_nothing_arrived_means_no_ingest() -> None:
    assert not IngestPace(0.150, ManualClock()).busy()


def test_a_fast_ingest_is_taken_as_paused_soon_after_its_last_instance() -> None:
    clock = ManualClock()
    pace = IngestPace(0.150, clock)
    arrivals(pace, clock, 0.004, 50)
    assert abs(pace.window() - 0.032) < 1e-6  # eight gaps of 4 ms
    clock.now += 0.025
    assert pace.busy()
    clock.now += 0.010
    assert not pace.busy()


def test_a_slow_sender_is_waited_for_the_longest_window() -> None:
    clock = ManualClock()
    pace = IngestPace(0.150, clock)
    arrivals(pace, clock, 0.040, 20)  # a modality sending an instance every 40 ms
    assert pace.window() == 0.150
    clock.now += 0.120
    assert pace.busy()  # a gap the sender makes anyway: not a pause


def test_the_pace_follows_the_ingest_and_a_new_burst_starts_from_the_longest_window() -> None:
    clock = ManualClock()
    pace = IngestPace(0.150, clock)
    arrivals(pace, clock, 0.001, 30)
    assert pace.window() == 0.025
    arrivals(pace, clock, 0.015, 30)  # the ingest slows down: the window grows with it
    assert 0.1 < pace.window() <= 0.150
    clock.now += 1.0  # a long pause, then one instance: nothing known of the new burst's pace
    pace.arrived()
    assert pace.window() == 0.150


def test_no_window_at_all_when_the_longest_is_zero() -> None:
    clock = ManualClock()
    pace = IngestPace(0.0, clock)
    arrivals(pace, clock, 0.001, 5)
    assert pace.window() == 0.0 and not pace.busy()
