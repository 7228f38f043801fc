"""NoteScheduler: time order, late events sent at once and counted, stop → panic, every note paired over JACK."""

from __future__ import annotations

import random
import threading
import time

import pytest

from services.midi_out.engine import ListSink, MidiOutStage
from services.midi_out.scheduler import NoteScheduler
from shared.config import MidiConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent
from testkit.midi import ReceiverModel, expected_panic
from testkit.system import fifo_allowed


class NoteOnSignalSink(ListSink):
    """ListSink that signals each note-on (so tests wait on an Event, not a sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.note_on_seen = threading.Event()

    def send(self, message):
        super().send(message)
        if message[0] & 0xF0 == 0x90:
            self.note_on_seen.set()


def make_stage(sink, profile="mpe", member_channels=15):
    stage = MidiOutStage(MidiConfig(profile=profile, member_channels=member_channels), sink)
    stage.start()
    return stage


def test_sends_in_time_order_and_counts_late():
    sink = ListSink()
    stage = make_stage(sink)
    now = time.monotonic()
    rng = random.Random(3)
    past = [
        NoteEvent(note_id=i, pitch=50 + i, velocity=90, t_on=now - 1.0 + 0.01 * i, t_off=now - 0.5 + 0.01 * i)
        for i in range(5)
    ]
    future = [
        NoteEvent(note_id=10 + i, pitch=70 + i, velocity=90, t_on=now + 0.05 + 0.004 * i, t_off=now + 0.1 + 0.004 * i)
        for i in range(10)
    ]
    notes = past + future
    rng.shuffle(notes)
    frozen = [now]  # the clock stands still while the notes are handed over (a loaded machine takes its time), so
    # "late on arrival" is exactly the past notes; then it runs with real time for the scheduler's thread

    def clock() -> float:
        return frozen[0] if frozen else time.monotonic()

    scheduler = NoteScheduler(stage, clock=clock)
    scheduler.sent_log = []
    with scheduler:
        for n in notes:
            scheduler.schedule(n)
        frozen.clear()
        assert scheduler.wait_idle(timeout_s=20.0)
        stats = scheduler.stats()
    dues = [due for due, _actual, _action, _id in scheduler.sent_log]
    assert dues == sorted(dues)
    assert len(dues) == 2 * len(notes)
    assert stats["sent"] == 2 * len(notes) and stats["scheduled"] == len(notes)
    assert stats["late_on_arrival"] == 2 * len(past)  # both the on and the off were already due
    assert stats["late"] >= 2 * len(past)  # they went out at once, counted as late
    assert all(actual >= due for due, actual, _a, _i in scheduler.sent_log)  # never early
    # note-ons reach the sink in due-time order too
    on_pitches = [m[1] for m in sink.messages if m[0] & 0xF0 == 0x90]
    assert on_pitches == [n.pitch for n in sorted(notes, key=lambda n: n.t_on)]
    assert ReceiverModel().feed_all(sink.messages).on == set()


def test_stop_drops_pending_and_panics():
    sink = NoteOnSignalSink()
    stage = make_stage(sink)
    now = time.monotonic()
    scheduler = NoteScheduler(stage).start()
    scheduler.schedule(NoteEvent(note_id=1, pitch=60, velocity=90, t_on=now, t_off=now + 3600))
    scheduler.schedule(NoteEvent(note_id=2, pitch=62, velocity=90, t_on=now + 3600, t_off=now + 3601))
    assert sink.note_on_seen.wait(10.0)
    sink.clear()
    scheduler.stop()
    scheduler.stop()  # idempotent
    assert sink.messages[0] == [0x81, 60, 0]
    assert sink.messages[1:33] == expected_panic()
    assert scheduler.counters["dropped_on_stop"] == 3
    assert not scheduler.running
    with pytest.raises(ParameterError):
        scheduler.schedule(NoteEvent(note_id=3, pitch=60, velocity=90, t_on=now, t_off=now))


def test_zero_length_note_still_ends():
    sink = ListSink()
    stage = make_stage(sink, profile="mono")
    now = time.monotonic() + 0.01
    with NoteScheduler(stage) as scheduler:
        scheduler.schedule(NoteEvent(note_id=1, pitch=60, velocity=90, t_on=now, t_off=now))
        assert scheduler.wait_idle(timeout_s=10.0)
    model = ReceiverModel().feed_all(sink.messages[:-32])  # before the stop's panic
    assert model.note_ons == model.note_offs == 1 and model.on == set()


@pytest.mark.jack
def test_every_note_on_gets_its_note_off_over_jack(jack_link):
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=6), jack_link.output, owns_sink=False)
    stage.start()
    rng = random.Random(11)
    base = time.monotonic() + 0.02
    notes = []
    for i in range(40):
        t_on = base + rng.uniform(0.0, 0.15)
        notes.append(
            NoteEvent(
                note_id=i,
                pitch=rng.choice([60, 62, 64]),
                velocity=rng.randint(1, 127),
                t_on=t_on,
                t_off=t_on + rng.uniform(0.0, 0.05),
                bend_semitones=rng.uniform(-2, 2),
            )
        )
    scheduler = NoteScheduler(stage).start()
    for n in notes:
        scheduler.schedule(n)
    assert scheduler.wait_idle(timeout_s=30.0)
    received = jack_link.reader.wait_for(stage.counters["messages_sent"])
    assert len(received) == stage.counters["messages_sent"]
    model = ReceiverModel().feed_all(received)
    assert model.on == set()  # silent before any panic
    assert model.double_on == [] and model.stray_off == []
    assert model.note_ons == 40 and model.note_offs == 40
    scheduler.stop()


def test_bad_arguments_raise():
    with pytest.raises(ParameterError):
        NoteScheduler(object())
    stage = make_stage(ListSink())
    with pytest.raises(ParameterError):
        NoteScheduler(stage, late_tolerance_ms=-1)
    with NoteScheduler(stage) as scheduler:
        with pytest.raises(ParameterError):
            scheduler.schedule("C4")


def test_clocked_steps_and_reactions_are_counted_apart():
    """A clocked note arrives ahead of its time (not late); a reaction, due at once, arrives after it (counted as
    the reaction's, not the clock's). Fake clock: nothing here depends on timing."""
    from testkit.waiting import wait_until

    clock = [100.0]
    stage = make_stage(ListSink())
    scheduler = NoteScheduler(stage, clock=lambda: clock[0]).start()
    try:
        scheduler.schedule(NoteEvent(note_id=1, pitch=60, velocity=90, t_on=100.04, t_off=100.3))
        scheduler.schedule(
            NoteEvent(note_id=2, pitch=64, velocity=90, t_on=99.99, t_off=100.2, stamps={"reaction": 1.0})
        )
        assert wait_until(lambda: scheduler.counters["sent"] >= 1, timeout_s=10.0, poll_s=0.01)
        clock[0] = 100.04  # the clocked note's time: it goes out on time
        assert wait_until(lambda: scheduler.counters["sent"] >= 2, timeout_s=10.0, poll_s=0.01)
        clock[0] = 200.0
        assert scheduler.wait_idle(timeout_s=10.0)
        c = scheduler.counters
        assert (c["clocked_notes"], c["clocked_late_on_arrival"], c["clocked_late"]) == (1, 0, 0)
        assert (c["reaction_notes"], c["reaction_late_on_arrival"], c["reaction_late"]) == (1, 1, 1)
        assert c["late_on_arrival"] == 1 and c["late"] == 3  # the reaction's note-on and both note-offs
    finally:
        scheduler.stop()


class _SilentStage:
    """A stage that keeps nothing (the scheduler's own memory is what is measured)."""

    def note_on(self, note):
        pass

    def note_off(self, note_id):
        pass

    def panic(self):
        pass


def _send_past_due(scheduler, first_id, count, now):
    for i in range(count):  # due 0-40 ms ago: sent at once, errors spread over two decades
        due = now - 0.0001 - 0.04 * ((i * 7919) % count) / count
        scheduler.schedule(NoteEvent(note_id=first_id + i, pitch=60, velocity=90, t_on=due, t_off=due))
    assert scheduler.wait_idle(timeout_s=120.0)


def test_schedule_errors_are_kept_in_constant_memory_with_their_percentiles():
    """A long set sends hundreds of thousands of events: the error statistics take no memory per event, and their
    p50/p95/p99 stay within 0.5 % of the exact ones (checked against the scheduler's own sent log)."""
    import tracemalloc

    import numpy as np

    scheduler = NoteScheduler(_SilentStage()).start()
    try:
        scheduler.sent_log = []
        _send_past_due(scheduler, 0, 2_000, time.monotonic())
        errors_ms = np.array([(actual - due) * 1e3 for due, actual, _, _ in scheduler.sent_log])
        stats = scheduler.stats()["error_ms"]
        for q in (50, 95, 99):
            exact = float(np.percentile(errors_ms, q))
            assert abs(stats[f"p{q}"] - exact) <= 0.005 * abs(exact), (q, stats, exact)
        assert stats["max"] == pytest.approx(errors_ms.max())
        scheduler.sent_log = None
        tracemalloc.start()
        try:
            _send_past_due(scheduler, 10_000, 2_000, time.monotonic())
            before, _ = tracemalloc.get_traced_memory()
            for batch in range(25):  # 100,000 more events, in batches as large as the first (the heap's peak size)
                _send_past_due(scheduler, 20_000 + 2_000 * batch, 2_000, time.monotonic())
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # a sample kept per event is >= 8 bytes (800 KB here); the heap's own size varies with each batch's peak
        assert after - before < 400_000, f"{after - before} bytes kept for 100,000 events"
        assert scheduler.stats()["sent"] == 108_000  # 54,000 notes, on and off
    finally:
        scheduler.stop(panic=False)


def test_the_scheduler_thread_runs_real_time_where_the_system_allows_it_and_says_which():
    """midi_out's scheduler asks for SCHED_FIFO (``midi.scheduler_priority``): where allowed its thread runs under it
    (so it wakes on time beside a busy stack), elsewhere it runs as before and its stats say so; 0 keeps the normal
    policy. The caller's own thread is never changed."""
    import os

    allowed = fifo_allowed()
    for priority, expect_fifo in ((5, allowed), (0, False)):
        scheduler = NoteScheduler(_SilentStage(), realtime_priority=priority).start()
        try:
            assert scheduler.wait_started()
            native = scheduler._thread.native_id
            policy = os.sched_getscheduler(native)
            assert (policy == os.SCHED_FIFO) == expect_fifo, (priority, policy)
            if expect_fifo:
                assert os.sched_getparam(native).sched_priority == priority
            assert scheduler.realtime == expect_fifo and scheduler.stats()["realtime"] == expect_fifo
        finally:
            scheduler.stop(panic=False)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    with pytest.raises(ParameterError):
        NoteScheduler(_SilentStage(), realtime_priority=100)
