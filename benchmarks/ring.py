"""Ring-buffer throughput vs. multiprocessing.Queue for the same 256-sample blocks, and reader wake-up latency.

Prints one JSON object. Usage: python benchmarks/ring.py [--seconds-of-audio N]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from shared.ring import AudioRing  # noqa: E402

CTX = mp.get_context("spawn")
BLOCK = 256


def _ring_reader(name, total, done, cursor):
    """Reads whatever has been written (up to half a second at a time), as the encoder reads its windows."""
    ring = AudioRing.attach(name)
    reader = ring.reader(start=0)
    while reader.cursor < total:
        ring.wait_for(reader.cursor + 1, timeout_s=10.0)
        reader.read_available(max_samples=24_000)
        cursor.value = reader.cursor
    done.set()
    ring.close()


def ring_throughput(total: int) -> dict[str, float]:
    ring = AudioRing.create(capacity_samples=1 << 20, sample_rate_hz=48000)
    done = CTX.Event()
    cursor = CTX.Value("q", 0, lock=False)
    p = CTX.Process(target=_ring_reader, args=(ring.name, total, done, cursor))
    p.start()
    block = np.ones(BLOCK, np.float32)
    time.sleep(1.0)  # let the reader process start before timing (benchmark warm-up, not synchronisation)
    waits = 0
    check_every = 64  # look at the reader's cursor every 64 blocks (harness overhead, not the ring's)
    limit = ring.capacity - check_every * BLOCK
    write = ring.write
    t0 = time.perf_counter()
    written = 0
    while written < total:
        if written - cursor.value > limit:  # never lap the reader: this measures throughput, not overruns
            waits += 1
            os.sched_yield()
            continue
        for _ in range(check_every):
            write(block)
        written += check_every * BLOCK
    done.wait(60)
    elapsed = time.perf_counter() - t0
    p.join(10)
    overruns = ring.overruns
    ring.close()
    ring.unlink()
    return {"samples_per_s": total / elapsed, "writer_waits": waits, "overruns": overruns}


def _queue_reader(queue, total, done):
    got = 0
    while got < total:
        got += queue.get().shape[0]
    done.set()


def queue_throughput(total: int) -> float:
    queue = CTX.Queue()
    done = CTX.Event()
    p = CTX.Process(target=_queue_reader, args=(queue, total, done))
    p.start()
    time.sleep(1.0)
    block = np.ones(BLOCK, np.float32)
    t0 = time.perf_counter()
    for _ in range(total // BLOCK):
        queue.put(block)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    p.join(10)
    return total / elapsed


def _wakeup_reader(name, n_blocks, stamps):
    ring = AudioRing.attach(name)
    reader = ring.reader(start=0)
    for i in range(n_blocks):
        reader.read(BLOCK, timeout_s=10.0)
        stamps[i] = time.perf_counter_ns()
    ring.close()


def wakeup_latency(n_blocks: int) -> dict[str, float]:
    """Writer paced at the real block rate (5.3 ms); latency = reader wake-up time − write time."""
    ring = AudioRing.create(capacity_samples=1 << 16, sample_rate_hz=48000)
    stamps = CTX.Array("q", n_blocks)
    p = CTX.Process(target=_wakeup_reader, args=(ring.name, n_blocks, stamps))
    p.start()
    time.sleep(1.0)
    written_at = np.zeros(n_blocks, np.int64)
    block = np.ones(BLOCK, np.float32)
    period = BLOCK / 48000
    next_t = time.perf_counter()
    for i in range(n_blocks):
        next_t += period
        while time.perf_counter() < next_t:
            time.sleep(max(0.0, next_t - time.perf_counter() - 0.0005))
        written_at[i] = time.perf_counter_ns()
        ring.write(block)
    p.join(30)
    latency_us = (np.frombuffer(stamps.get_obj(), dtype=np.int64) - written_at) / 1e3
    ring.close()
    ring.unlink()
    return {"p50_us": round(float(np.percentile(latency_us, 50)), 1), "p99_us": round(float(np.percentile(latency_us, 99)), 1),
            "max_us": round(float(latency_us.max()), 1), "blocks": n_blocks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds-of-audio", type=float, default=600.0)
    args = parser.parse_args()
    total = int(args.seconds_of_audio * 48000) // (64 * BLOCK) * (64 * BLOCK)
    ring = ring_throughput(total)
    ring_sps = ring["samples_per_s"]
    queue_sps = queue_throughput(min(total, 48000 * 60) // BLOCK * BLOCK)
    result = {
        "block_samples": BLOCK,
        "ring_samples_per_s": round(ring_sps),
        "queue_samples_per_s": round(queue_sps),
        "ring_vs_queue_speedup": round(ring_sps / queue_sps, 2),
        "goal_speedup": 20,
        "reader_wakeup": wakeup_latency(2000),
        "ring_writer_waits_for_reader": ring["writer_waits"],
        "reader_wakeup_note": "writer paced at 256 samples / 5.33 ms; latency = reader returns from read() - write() call",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
