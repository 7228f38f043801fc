"""The shared-memory ring across real OS processes: wrap-around, many readers, overruns, mid-read overwrite, late
attach."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ParameterError, RingBufferError, RingOverrunError, RingTimeoutError
from shared.ring import AudioRing

CTX = mp.get_context("spawn")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ramp(start: int, n: int) -> np.ndarray:
    """Samples whose value is their absolute index (exact in float32 below 2**24)."""
    return (np.arange(start, start + n) % (1 << 24)).astype(np.float32)


@pytest.fixture
def ring():
    r = AudioRing.create(capacity_samples=1000, sample_rate_hz=48000)
    yield r
    r.close()
    r.unlink()


def test_wrap_around_returns_exact_samples(ring):
    written = 0
    for size in [256, 300, 700, 999, 1, 513] * 4:
        ring.write(ramp(written, size))
        written += size
        start = max(ring.oldest_available, written - 777)
        np.testing.assert_array_equal(ring.read(start, written), ramp(start, written - start))
    assert ring.write_counter == written


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(np.float64),
        lambda a: a.astype(">f4"),
        lambda a: a.astype(np.int32),
        lambda a: a,
        lambda a: np.repeat(a, 2)[::2],
        lambda a: a.tolist(),
    ],
    ids=["float64", "big-endian", "int32", "float32", "strided", "list"],
)
def test_blocks_of_any_numeric_type_and_layout_are_stored_as_the_ring_dtype(ring, convert):
    """The writer's fast copy only takes float32 blocks as they are; others are converted, not rejected or garbled."""
    written = 0
    for size in (256, 600, 256):  # the last block wraps: slots 856..999 then 0..111
        ring.write(convert(ramp(written, size)))
        written += size
    np.testing.assert_array_equal(ring.read(written - 800, written), ramp(written - 800, 800))


def test_window_spanning_the_wrap_has_two_segments(ring):
    ring.write(ramp(0, 900))
    ring.write(ramp(900, 300))  # slots 900..999 then 0..199
    window = ring.window(850, 1150)
    assert len(window.segments) == 2
    np.testing.assert_array_equal(window.copy(), ramp(850, 300))


def test_overrun_is_raised_and_counted(ring):
    ring.write(ramp(0, 2500))
    with pytest.raises(RingOverrunError):
        ring.read(1000, 1200)
    assert ring.overruns == 1
    reader = ring.reader(start=0)
    with pytest.raises(RingOverrunError):
        reader.read(10)
    assert reader.overruns == 1
    assert reader.skip_to_oldest() == 1500 and reader.lost_samples == 1500
    np.testing.assert_array_equal(reader.read(10), ramp(1500, 10))


def test_zero_copy_window_overwritten_during_use_is_detected(ring):
    ring.write(ramp(0, 800))
    window = ring.window(100, 400)
    assert window.is_valid()
    ring.write(ramp(800, 350))  # claims slots of samples 0..149: overlaps the window's start
    with pytest.raises(RingOverrunError):
        window.check_valid()
    with pytest.raises(RingOverrunError):
        window.copy()


def test_unwritten_range_times_out_and_bad_ranges_raise(ring):
    ring.write(ramp(0, 10))
    with pytest.raises(RingTimeoutError):
        ring.read(5, 20, timeout_s=0.01)
    with pytest.raises(RingTimeoutError):
        ring.read(5, 20)
    with pytest.raises(ParameterError):
        ring.read(10, 5)
    with pytest.raises(ParameterError):
        ring.read(0, 5000)
    with pytest.raises(ParameterError):
        ring.write(np.zeros((4, 2), np.float32))


def test_block_longer_than_ring_keeps_its_tail(ring):
    ring.write(ramp(0, 2500))
    assert ring.write_counter == 2500
    np.testing.assert_array_equal(ring.read(1500, 2500), ramp(1500, 1000))


def test_attach_errors_and_owner_only_unlink(ring):
    with pytest.raises(RingBufferError):
        AudioRing.attach("musichal_ring_does_not_exist")
    other = AudioRing.attach(ring.name)
    with pytest.raises(RingBufferError):
        other.unlink()
    other.close()
    other.close()  # idempotent
    with pytest.raises(RingBufferError):
        other.read(0, 1)


# ------------------------------------------------------------------ hypothesis: index arithmetic
@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(16, 300),
    ops=st.lists(st.tuples(st.sampled_from(["w", "r"]), st.integers(1, 400), st.integers(0, 800)), max_size=40),
)
def test_index_arithmetic_matches_a_reference_model(capacity, ops):
    ring = AudioRing.create(capacity_samples=capacity, sample_rate_hz=48000)
    try:
        total = 0
        for kind, a, b in ops:
            if kind == "w":
                ring.write(ramp(total, a))
                total += a
                assert ring.write_counter == total
                continue
            start, end = b, b + min(a, capacity)
            if end > total:
                with pytest.raises(RingTimeoutError):
                    ring.read(start, end)
            elif start < total - capacity:
                with pytest.raises(RingOverrunError):
                    ring.read(start, end)
            else:
                np.testing.assert_array_equal(ring.read(start, end), ramp(start, end - start))
    finally:
        ring.close()
        ring.unlink()


# ------------------------------------------------------------------ real OS processes
def _writer_process(name, total, block, progress, n_readers):
    ring = AudioRing.attach(name)
    written = 0
    while written < total:
        # test-only backpressure: never lap the slowest reader, so the readers' checks are deterministic
        while written + block - min(progress[i] for i in range(n_readers)) > ring.capacity:
            ring.wait_for(0, timeout_s=0.0005)
        n = min(block, total - written)
        ring.write(ramp(written, n))
        written += n
    ring.close_writer()
    ring.close()


def _reader_process(name, total, chunk, progress, index, result):
    ring = AudioRing.attach(name)
    reader = ring.reader(start=0)
    bad = 0
    while reader.cursor < total:
        n = min(chunk, total - reader.cursor)
        start = reader.cursor
        data = reader.read(n, timeout_s=10.0)
        bad += int(np.count_nonzero(data != ramp(start, n)))
        progress[index] = reader.cursor
    result[index] = bad
    ring.close()


def test_one_writer_many_readers_across_processes():
    total, block = 400_000, 256
    ring = AudioRing.create(capacity_samples=8192, sample_rate_hz=48000)
    try:
        n_readers = 3
        progress = CTX.Array("q", n_readers)
        result = CTX.Array("q", [-1] * n_readers)
        readers = [
            CTX.Process(target=_reader_process, args=(ring.name, total, chunk, progress, i, result))
            for i, chunk in enumerate([100, 256, 1000])
        ]
        for p in readers:
            p.start()
        writer = CTX.Process(target=_writer_process, args=(ring.name, total, block, progress, n_readers))
        writer.start()
        writer.join(120)
        for p in readers:
            p.join(120)
        assert writer.exitcode == 0 and all(p.exitcode == 0 for p in readers)
        assert list(result) == [0, 0, 0]
        assert ring.write_counter == total and ring.writer_closed
    finally:
        ring.close()
        ring.unlink()


def _hold_window_process(name, start, end, taken, release, outcome):
    ring = AudioRing.attach(name)
    window = ring.window(start, end)
    _ = float(window.segments[0][0])  # touch the data
    taken.set()
    release.wait(30)
    try:
        window.check_valid()
        outcome.value = 1
    except RingOverrunError:
        outcome.value = 2
    del window
    ring.close()


def test_mid_read_overwrite_detected_in_another_process():
    ring = AudioRing.create(capacity_samples=1000, sample_rate_hz=48000)
    try:
        ring.write(ramp(0, 900))
        taken, release, outcome = CTX.Event(), CTX.Event(), CTX.Value("i", 0)
        p = CTX.Process(target=_hold_window_process, args=(ring.name, 0, 500, taken, release, outcome))
        p.start()
        assert taken.wait(60)
        ring.write(ramp(900, 400))  # overwrites samples 0..299 while the other process holds its view
        release.set()
        p.join(60)
        assert p.exitcode == 0 and outcome.value == 2
    finally:
        ring.close()
        ring.unlink()


def _late_reader(name, ready, outcome):
    ring = AudioRing.attach(name)
    start = ring.write_counter
    reader = ring.reader()
    ready.set()
    data = reader.read(500, timeout_s=30)
    outcome.value = int(np.array_equal(data, ramp(start, 500)) and start == 3000)
    ring.close()


def test_late_attach_reads_from_the_current_counter_and_blocks_until_data():
    ring = AudioRing.create(capacity_samples=4000, sample_rate_hz=48000)
    try:
        ring.write(ramp(0, 3000))
        ready, outcome = CTX.Event(), CTX.Value("i", 0)
        p = CTX.Process(target=_late_reader, args=(ring.name, ready, outcome))
        p.start()
        assert ready.wait(60)
        ring.write(ramp(3000, 250))  # the reader is (or will be) blocked waiting for 500 samples
        ring.write(ramp(3250, 250))
        p.join(60)
        assert p.exitcode == 0 and outcome.value == 1
    finally:
        ring.close()
        ring.unlink()


def test_attaching_process_neither_unlinks_nor_warns_at_exit():
    ring = AudioRing.create(capacity_samples=1000, sample_rate_hz=48000)
    try:
        code = textwrap.dedent(f"""
            import sys; sys.path.insert(0, {REPO!r})
            from shared.ring import AudioRing
            r = AudioRing.attach({ring.name!r}); r.write(__import__('numpy').ones(10, 'float32')); r.close()
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr
        assert os.path.exists(f"/dev/shm/{ring.name}")
        assert ring.write_counter == 10
    finally:
        ring.close()
        ring.unlink()
    assert not os.path.exists(f"/dev/shm/{ring.name}")
