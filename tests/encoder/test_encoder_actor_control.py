"""The encoder actor's control calls do not queue behind encodes (their own concurrency group)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shared.config import MusicHalConfig
from shared.messages import Event
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray]


def test_stats_and_ping_answer_while_an_encode_is_running(ray_local):
    import ray

    from services.encoder.actor import EncoderActor

    config = MusicHalConfig().with_overrides({"control.test_encoder_delay_ms": 5000.0})  # an injected slow encoder
    encoder = EncoderActor.remote(config)  # no rings: the remote-encoder interface
    info = ray.get(encoder.ready.remote(), timeout=120)
    assert info["local"] is False and info["device"] == "cpu" and info["input_rate_hz"] == 48_000
    event = Event(event_id=0, onset_sample=0, window_start=0, window_end=24_000, sample_rate_hz=48_000, t_detected=1.0)
    busy = encoder.encode.remote(event, np.zeros(24_000, np.float32), lag_s=0.0)
    # the encode has started (its counter moved) and is still sleeping in the slow primary
    assert wait_until(
        lambda: ray.get(encoder.stats.remote(), timeout=10)["counters"]["remote_calls"] == 1, timeout_s=30
    )
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        stats = ray.get(encoder.stats.remote(), timeout=10)
        times.append(time.monotonic() - t0)
        assert ray.get(encoder.ping.remote(), timeout=10) == info["node_id"]
    ready, _ = ray.wait([busy], timeout=0)
    assert not ready, "the encode finished before the control calls: the test proved nothing"
    assert stats["counters"]["encoded"] == 0  # answered during the encode, not after it
    assert max(times) < 0.1, times
    percept = ray.get(busy, timeout=60)
    assert percept.stamps["encode_s"] >= 5.0 and "t_encoded" not in percept.stamps  # durations only, remote
    ray.get(encoder.stop.remote(), timeout=10)
