"""The remote-encoder hop's flow control (pure) and the too-slow guard across unrelated clocks; fake clocks only."""

from __future__ import annotations

import heapq
import sys
import threading

import numpy as np
import pytest

from services.encoder.guard import GuardedEncoder, OverloadGuard
from services.encoder.remote import PayloadCount, RemoteEncoderLink
from shared.errors import ParameterError
from shared.messages import Event, Percept
from testkit.clock import FakeClock


# ---------------------------------------------------------------------------------------------- in-flight bound
def test_in_flight_bound_with_a_slow_encoder_counts_expired_calls_until_they_end():
    """An encoder 5x slower than the event rate: the head never has more than the cap unfinished (sent - finished),
    expired calls included (they are cancelled but stay counted until their result or error comes back)."""
    clock = FakeClock()
    cap = 3
    link = RemoteEncoderLink(max_in_flight=cap, floor_s=0.05, ceiling_s=0.25, miss_limit=10**6, clock=clock)
    encode_s, interval_s = 0.5, 0.1  # a serial encoder: one call at a time, 500 ms each; an event every 100 ms
    queue: list[tuple[float, int]] = []  # (finish time, call) of calls the encoder has accepted
    encoder_free_at = 0.0
    deadlines: dict[int, float] = {}
    worst = 0
    for n in range(400):
        clock.t = n * interval_s
        while queue and queue[0][0] <= clock.t:  # results (of calls long expired) come back
            _, call = heapq.heappop(queue)
            link.finished(call, encode_s=encode_s, in_time=False)
        for call, deadline in list(deadlines.items()):
            if deadline <= clock.t and call in link.in_flight:
                link.expired()
                del deadlines[call]
        if link.can_send():
            link.sent(n)
            deadlines[n] = clock.t + link.deadline_s()
            encoder_free_at = max(encoder_free_at, clock.t) + encode_s
            heapq.heappush(queue, (encoder_free_at, n))
        sent, finished = link.counters["sent"], link.counters["finished"] + link.counters["failed"]
        assert sent - finished == link.unfinished <= cap
        worst = max(worst, sent - finished)
    assert worst == cap  # the bound was reached (the encoder really was too slow), never passed
    assert link.counters["refused_full"] > 0 and link.counters["expired"] > 0
    with pytest.raises(ParameterError):
        for call in range(10_000, 10_000 + cap + 1):
            link.sent(call)


def test_cancelled_call_leaves_the_count_only_when_ray_reports_it_over():
    clock = FakeClock()
    link = RemoteEncoderLink(max_in_flight=1, miss_limit=2, clock=clock)
    link.sent("a")
    link.expired()  # the caller cancels it here ...
    assert link.unfinished == 1 and not link.can_send()
    link.failed("a", encoder_dead=False)  # ... and Ray reports TaskCancelledError later
    assert link.unfinished == 0 and link.can_send() and link.up


# ---------------------------------------------------------------------------------------------- deadline
def test_deadline_adapts_to_measured_round_trips_between_floor_and_ceiling():
    clock = FakeClock()
    link = RemoteEncoderLink(
        max_in_flight=4, floor_s=0.04, ceiling_s=0.25, factor=2.0, margin_s=0.01, min_samples=8, clock=clock
    )
    assert link.deadline_s() == 0.25  # nothing measured yet: the ceiling
    for i in range(20):  # a fast hop: 5 ms round trips
        clock.t = i
        link.sent(i)
        clock.t = i + 0.005
        link.finished(i, encode_s=0.002)
    assert link.deadline_s() == pytest.approx(0.04)  # 2 x 5 ms + 10 ms = 20 ms < floor
    for i in range(20, 120):  # a slower hop: 60 ms
        clock.t = i
        link.sent(i)
        clock.t = i + 0.06
        link.finished(i)
    assert link.deadline_s() == pytest.approx(0.13)
    for i in range(120, 200):  # very slow: clamped to the ceiling
        clock.t = i
        link.sent(i)
        clock.t = i + 0.4
        link.finished(i)
    assert link.deadline_s() == 0.25


# ---------------------------------------------------------------------------------------------- down / probe / resume
def test_death_marks_down_at_once_probe_then_resume():
    clock = FakeClock(100.0)
    link = RemoteEncoderLink(max_in_flight=4, probe_interval_s=0.5, miss_limit=3, clock=clock)
    link.sent(1)
    link.sent(2)
    link.failed(1, encoder_dead=True)  # RayActorError: no waiting for deadlines
    assert not link.up and not link.can_send()
    assert link.should_probe()
    link.probe_sent()
    assert not link.should_probe()  # one probe in flight at a time
    link.probe_failed()
    clock.t += 0.2
    assert not link.should_probe()  # the interval has not passed
    clock.t += 0.4
    assert link.should_probe()
    link.probe_sent()
    link.probe_answered()
    assert link.up and link.can_send()
    assert link.counters["downs"] == 1 and link.counters["ups"] == 1


def test_consecutive_misses_mark_down_and_an_in_time_result_resets_them():
    link = RemoteEncoderLink(max_in_flight=8, miss_limit=2, clock=FakeClock())
    link.sent(1)
    link.expired()
    link.sent(2)
    link.finished(2)  # in time: the run of misses is broken
    link.expired()
    assert link.up
    link.expired()
    assert not link.up
    link.finished(1, in_time=False)  # a late result still proves the encoder alive
    assert link.up


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ParameterError):
        RemoteEncoderLink(floor_s=0.3, ceiling_s=0.25)
    with pytest.raises(ParameterError):
        RemoteEncoderLink(max_in_flight=0)


# ---------------------------------------------------------------------------------------------- guard vs clock offset
class _Primary:
    def __init__(self, clock: FakeClock, encode_s: float) -> None:
        self.clock, self.encode_s = clock, encode_s

    def process(self, item, **_):
        event, _window = item
        self.clock.t += self.encode_s
        return Percept(event_id=event.event_id, token=0, features=np.zeros(2, np.float32))


def _events(n: int, *, t0_head: float, spacing_s: float = 0.25) -> list[Event]:
    sr = 48_000
    out = []
    for i in range(n):
        onset = int(i * spacing_s * sr)
        out.append(
            Event(
                event_id=i,
                onset_sample=onset,
                window_start=onset,
                window_end=onset + 24_000,
                sample_rate_hz=sr,
                t_detected=t0_head + i * spacing_s,
            )
        )
    return out


@pytest.mark.parametrize("offset_s", [1e6, -1e6])
def test_guard_on_a_node_with_an_unrelated_clock_uses_the_heads_lag(offset_s):
    """Encoder clock = head clock + 10^6 s (another machine / time namespace). With the head's lag passed in, a fast
    encoder is never overloaded; comparing the head's ``t_detected`` with the node's clock would call every event
    late (offset +10^6) — the old behaviour, kept only for the one-clock local case."""
    head_t0 = 5_000.0
    events = _events(40, t0_head=head_t0)
    node_clock = FakeClock(head_t0 + offset_s)
    guarded = GuardedEncoder(
        _Primary(node_clock, 0.01),
        object(),
        OverloadGuard(window_events=4, recover_events=4),
        deadline_s=0.25,
        clock=node_clock,
    )
    for event in events:
        node_clock.t = event.t_detected + offset_s + 0.002
        guarded.process((event, np.zeros(24_000, np.float32)), lag_s=0.003)  # the head measured 3 ms
    assert guarded.guard.counters["overloaded"] == 0 and not guarded.guard.degraded
    assert guarded.guard.max_lag_s == pytest.approx(0.003)  # the stats' evidence that no clocks were mixed

    if offset_s > 0:  # what a cross-clock comparison does: every event "1e6 s late", degraded after 4 events
        naive = GuardedEncoder(
            _Primary(node_clock, 0.01),
            object(),
            OverloadGuard(window_events=4, recover_events=4),
            deadline_s=0.25,
            clock=node_clock,
        )
        for event in events[:4]:
            node_clock.t = event.t_detected + offset_s
            naive.process((event, np.zeros(24_000, np.float32)))
        assert naive.guard.degraded and naive.guard.max_lag_s >= offset_s


def test_guard_with_head_lag_still_trips_on_a_really_slow_encoder():
    head_t0 = 10.0
    events = _events(12, t0_head=head_t0, spacing_s=0.1)
    node_clock = FakeClock(1e6)
    guarded = GuardedEncoder(
        _Primary(node_clock, 0.3),
        _Primary(node_clock, 0.001),
        OverloadGuard(window_events=4, recover_events=4),
        deadline_s=0.25,
        clock=node_clock,
    )
    for event in events:
        guarded.process((event, np.zeros(24_000, np.float32)), lag_s=0.001)
    assert guarded.guard.degraded  # 300 ms per event, 100 ms between onsets: overloaded on durations alone


# ---------------------------------------------------------------------------------------------- payload count
def test_the_payload_count_read_while_windows_are_sent_is_always_a_whole_pair():
    """The oracle's receive loop adds a window while ``stats`` reads from another thread: every read must see
    windows and bytes from the same moment, so bytes per event is exactly the window's size (the CI failure this
    answers: 31 windows with 32 windows' bytes, 33032.3 B)."""
    count = PayloadCount()
    window_bytes = 32_000
    done = threading.Event()
    reads: list[float | None] = []

    def send() -> None:
        for _ in range(200_000):
            count.add(window_bytes)
        done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows: every interleaving gets its chance
    try:
        sender = threading.Thread(target=send)
        sender.start()
        while not done.is_set():
            reads.append(count.summary()["bytes_per_event"])
        sender.join()
    finally:
        sys.setswitchinterval(interval)
    seen = [r for r in reads if r is not None]
    assert len(seen) > 100  # the reads really overlapped the sending
    assert set(seen) == {float(window_bytes)}, sorted(set(seen))[:5]
    assert count.summary() == {
        "windows_sent": 200_000,
        "bytes_sent": 200_000 * window_bytes,
        "bytes_per_event": 32_000.0,
    }
