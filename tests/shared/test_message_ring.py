"""Message rings: length-prefixed records across processes, wrap-around, overrun skip, typed messages."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from shared.errors import ParameterError
from shared.message_ring import MessageRing
from shared.messages import NoteEvent

CTX = mp.get_context("spawn")


@pytest.fixture
def ring():
    r = MessageRing.create(capacity_bytes=256)
    yield r
    r.close()
    r.unlink()


def test_records_wrapping_the_ring_come_back_whole(ring):
    reader = ring.reader()
    for i in range(200):
        payload = bytes([i % 256]) * (1 + i % 37)
        ring.send(payload)
        assert reader.receive(timeout_s=0.0) == payload
    assert reader.received == 200 and reader.overruns == 0


def test_slow_reader_overrun_skips_to_newest_and_counts(ring):
    reader = ring.reader()
    for _i in range(100):
        ring.send(b"x" * 20)
    assert reader.receive(timeout_s=0.0) is None  # everything it missed is gone: nothing stale is returned
    assert reader.overruns == 1
    ring.send(b"fresh")
    assert reader.receive(timeout_s=0.0) == b"fresh"


def test_typed_messages_and_limits(ring):
    big = MessageRing.create(capacity_bytes=4096)
    reader = big.reader()
    note = NoteEvent(note_id=5, pitch=64, velocity=70, t_on=1.0, t_off=2.0, source_state=3, source_event_id=9)
    big.send_message(note)
    assert reader.receive_message(timeout_s=0.1) == note
    big.close()
    big.unlink()
    with pytest.raises(ParameterError):
        ring.send(b"y" * 200)
    with pytest.raises(ParameterError):
        MessageRing.attach(_audio_ring_name())


def _audio_ring_name():
    from shared.ring import AudioRing

    audio = AudioRing.create(capacity_samples=64, sample_rate_hz=48000)
    name = audio.name
    _audio_ring_name.keep = audio  # unlinked at the end of the test module
    return name


def teardown_module():
    keep = getattr(_audio_ring_name, "keep", None)
    if keep is not None:
        keep.close()
        keep.unlink()


def _consumer(name, n, result):
    ring = MessageRing.attach(name)
    reader = ring.reader(from_start=True)
    total = 0
    for i in range(n):
        payload = reader.receive(timeout_s=30.0)
        if payload != i.to_bytes(4, "little") * (1 + i % 5):
            result.value = -1 - i
            ring.close()
            return
        total += 1
    result.value = total
    ring.close()


def test_many_records_across_processes_in_order():
    ring = MessageRing.create(
        capacity_bytes=1 << 18
    )  # holds all records: the late-starting consumer reads from the start
    try:
        n = 5000
        result = CTX.Value("q", 0)
        p = CTX.Process(target=_consumer, args=(ring.name, n, result))
        p.start()
        sent = 0
        while sent < n:
            ring.send(sent.to_bytes(4, "little") * (1 + sent % 5))
            sent += 1
        p.join(60)
        assert p.exitcode == 0 and result.value == n
    finally:
        ring.close()
        ring.unlink()
