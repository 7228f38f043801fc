"""Perception benchmark: prints ONE JSON object.

* traditional 22-D features vs librosa ``chroma_stft`` on the same 500 ms windows (ms/window, speed-up);
* wav2vec on a random-weight base-size ``Wav2Vec2Config()`` (768-D, 12 layers), built in memory:
  ``encode`` vs the raw model forward on the same prepared tensor, ``encode_batch(16)`` per window vs the raw
  batched forward and vs 16 single calls, int8 dynamic quantisation speed-up and cosine vs fp32, model memory.

Goals: traditional ≥ 3× faster than librosa ``chroma_stft``; ``encode`` and ``encode_batch`` within 10 % of the raw
forward; int8 ≥ 1.5× faster than fp32 at cosine ≥ 0.99.

Run: ``.venv/bin/python benchmarks/features.py [--repeats N] [--skip-wav2vec] [--no-save]`` (a minute or two on 2
CPU cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import emit, goal, strip_no_save  # noqa: E402

from services.encoder.features import traditional_features  # noqa: E402
from services.encoder.wav2vec import Wav2VecMusicEncoder  # noqa: E402
from shared.pitch import midi_to_hz  # noqa: E402

SR = 48_000
WINDOW_S = 0.5


def _windows(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(WINDOW_S * SR)) / SR
    out = []
    for _ in range(count):
        pitches = rng.integers(48, 84, size=3)
        x = sum(np.sin(2 * np.pi * midi_to_hz(p) * h * t) / h for p in pitches for h in (1, 2, 3))
        x = x * np.exp(-3 * t) + 0.01 * rng.standard_normal(t.size)
        out.append((0.2 * x / np.abs(x).max()).astype(np.float32))
    return out


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def bench_traditional(windows: list[np.ndarray], repeats: int) -> dict:
    import librosa

    librosa.feature.chroma_stft(y=windows[0], sr=SR)  # warm caches / numba
    traditional_features(windows[0], sample_rate_hz=SR)
    ours = _median_ms(lambda: [traditional_features(w, sample_rate_hz=SR) for w in windows], repeats) / len(windows)
    theirs = _median_ms(lambda: [librosa.feature.chroma_stft(y=w, sr=SR) for w in windows], repeats) / len(windows)
    return {
        "windows": len(windows),
        "window_ms": WINDOW_S * 1e3,
        "traditional_22d_ms_per_window": ours,
        "librosa_chroma_stft_ms_per_window": theirs,
        "speedup_vs_librosa": theirs / ours,
    }


def bench_wav2vec(windows: list[np.ndarray], repeats: int) -> dict:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    network = Wav2Vec2Model(Wav2Vec2Config()).eval()
    encoder = Wav2VecMusicEncoder.from_model(network, name="random-base")
    single = windows[0]
    prepared = torch.from_numpy(encoder.prepare(single, SR)[None, :])

    def raw_single():
        with torch.inference_mode():
            network(prepared).last_hidden_state.mean(dim=1)

    raw_single()
    encode_ms = _median_ms(lambda: encoder.encode(single, SR), repeats)
    raw_ms = _median_ms(raw_single, repeats)

    batch = windows[:16]
    prepared_batch = torch.from_numpy(np.stack([encoder.prepare(w, SR) for w in batch]))

    def raw_batch():
        with torch.inference_mode():
            network(prepared_batch).last_hidden_state.mean(dim=1)

    batch_repeats = max(2, repeats // 3)
    encode_batch_ms = _median_ms(lambda: encoder.encode_batch(batch, SR), batch_repeats) / len(batch)
    raw_batch_ms = _median_ms(raw_batch, batch_repeats) / len(batch)
    singles_ms = _median_ms(lambda: [encoder.encode(w, SR) for w in batch], batch_repeats) / len(batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = Wav2VecMusicEncoder.from_model(network, name="random-base", int8=True)
    int8_ms = _median_ms(lambda: int8.encode(single, SR), repeats)
    cosines = []
    for w in windows[:8]:
        a, b = encoder.encode(w, SR).vector, int8.encode(w, SR).vector
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return {
        "config": "Wav2Vec2Config() random weights",
        "dimension": encoder.dimension,
        "layers": encoder.num_layers,
        "device": encoder.device,
        "torch_threads": torch.get_num_threads(),
        "encode_ms": encode_ms,
        "raw_forward_ms": raw_ms,
        "encode_vs_raw_ratio": encode_ms / raw_ms,
        "encode_batch16_ms_per_window": encode_batch_ms,
        "raw_batch16_forward_ms_per_window": raw_batch_ms,
        "encode_batch_vs_raw_batch_ratio": encode_batch_ms / raw_batch_ms,
        "single_calls_ms_per_window": singles_ms,
        "batch_speedup_vs_single_calls": singles_ms / encode_batch_ms,
        "int8_encode_ms": int8_ms,
        "int8_speedup_vs_fp32": encode_ms / int8_ms,
        "int8_cosine_min": min(cosines),
        "int8_cosine_mean": float(np.mean(cosines)),
        "memory_fp32_mb": encoder.memory_bytes / 1e6,
        "memory_int8_mb": int8.memory_bytes / 1e6,
        "load_and_warmup_s": encoder.load_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-wav2vec", action="store_true")
    args = parser.parse_args(strip_no_save())
    windows = _windows(32)
    figures = {"traditional": bench_traditional(windows, max(3, args.repeats // 2))}
    trad = figures["traditional"]
    goals = [goal("traditional 22-D vs librosa chroma_stft", trad["speedup_vs_librosa"], ">=", 3.0, unit="x")]
    if not args.skip_wav2vec:
        figures["wav2vec"] = w = bench_wav2vec(windows, args.repeats)
        goals += [
            goal("wav2vec-base encode / raw forward", w["encode_vs_raw_ratio"], "<=", 1.1),
            goal("encode_batch(16) / raw batched forward", w["encode_batch_vs_raw_batch_ratio"], "<=", 1.1),
            goal("encode_batch(16) vs 16 single calls", w["batch_speedup_vs_single_calls"], "report", unit="x"),
            goal("int8 vs fp32 speed-up (CPU)", w["int8_speedup_vs_fp32"], ">=", 1.5, unit="x"),
            goal("int8 vs fp32 cosine, worst window", w["int8_cosine_min"], ">=", 0.99),
        ]
    return emit("features", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
