"""Trainer benchmark: prints ONE JSON object.

* a generated corpus (default 24 files × 30 s = 12 min of plucked notes at 48 kHz, cached in a temp dir);
* wall time of :func:`services.trainer.pipeline.train` through the Ray fan-out with 1 and 2 workers (fresh feature
  cache each; Ray already started, its start-up time reported separately) and the speed-up;
* audio-hours per hour for the traditional features, and for a random-weight wav2vec2-base-size checkpoint
  (``Wav2Vec2Config()`` saved to a temp dir) on a short subset, extrapolated;
* the driver's peak RSS.

Run: ``.venv/bin/python benchmarks/train.py [--files 24 --seconds 30 --w2v-files 2 --w2v-seconds 20]``.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from shared.config import MusicHalConfig  # noqa: E402

SR = 48_000


def _note_file(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    onset = 0.05
    t = np.arange(int(0.4 * SR)) / SR
    while onset < seconds - 0.5:
        freq = 440.0 * 2.0 ** (int(rng.integers(-18, 15)) / 12.0)
        env = np.exp(-t * float(rng.uniform(4, 9))) * np.minimum(1.0, t * 300.0)
        tone = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3))
        start = int(onset * SR)
        out[start:start + t.size] += (0.25 * env * tone).astype(np.float32)
        onset += float(rng.uniform(0.2, 0.6))
    return out


def corpus(files: int, seconds: float) -> list[Path]:
    import soundfile as sf

    root = Path(tempfile.gettempdir()) / f"musichal_bench_train_{files}x{int(seconds)}"
    root.mkdir(exist_ok=True)
    paths = []
    for i in range(files):
        path = root / f"take{i:03d}.wav"
        if not path.is_file():
            sf.write(path.with_suffix(".tmp.wav"), _note_file(i, seconds), SR)
            os.replace(path.with_suffix(".tmp.wav"), path)
        paths.append(path)
    return paths


def _run(paths, config, workers, out_dir) -> dict:
    from services.trainer.distributed import ray_analyze_many
    from services.trainer.pipeline import train

    start = time.perf_counter()
    result = train(paths, config=config, output=out_dir / "model.json", cache_dir=out_dir / "cache",
                   analyze_many=partial(ray_analyze_many, workers=workers))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "audio_s": result.training["audio_seconds"], "events": result.training["events"],
            "timings": result.stats["timings"], "bytes": (out_dir / "model.json").read_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--w2v-files", type=int, default=2)
    parser.add_argument("--w2v-seconds", type=float, default=20.0)
    args = parser.parse_args()
    import ray

    paths = corpus(args.files, args.seconds)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    ray_start_s = time.perf_counter() - t0
    config = MusicHalConfig()
    report: dict = {"files": len(paths), "audio_minutes": args.files * args.seconds / 60.0, "cpu_count": os.cpu_count(),
                    "ray_start_s": ray_start_s, "load_average_before": os.getloadavg()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            _run(paths[:2], config, 2, tmp / "warm")  # start workers, compile numba kernels
            runs = {w: _run(paths, config, w, tmp / f"w{w}") for w in (1, 2)}
            report["traditional"] = {
                "events": runs[1]["events"],
                "wall_s_1_worker": runs[1]["wall_s"], "wall_s_2_workers": runs[2]["wall_s"],
                "speedup": runs[1]["wall_s"] / runs[2]["wall_s"],
                "analysis_speedup": runs[1]["timings"]["analysis_s"] / runs[2]["timings"]["analysis_s"],
                "stage_timings_2_workers": runs[2]["timings"],
                "identical_model_bytes": runs[1]["bytes"] == runs[2]["bytes"],
                "audio_hours_per_hour_2_workers": runs[2]["audio_s"] / runs[2]["wall_s"],
            }
            from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
            import torch

            torch.manual_seed(0)
            ckpt = tmp / "w2v_base_random"
            Wav2Vec2Model(Wav2Vec2Config()).eval().save_pretrained(ckpt, safe_serialization=True)
            Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                     return_attention_mask=False).save_pretrained(ckpt)
            w2v_paths = corpus(args.w2v_files, args.w2v_seconds)
            w2v_config = config.with_overrides({"features.kind": "wav2vec", "wav2vec.model": str(ckpt)})
            w2v = _run(w2v_paths, w2v_config, 2, tmp / "w2v")
            per_hour = w2v["audio_s"] / w2v["wall_s"]
            report["wav2vec_base"] = {
                "subset_audio_s": w2v["audio_s"], "events": w2v["events"], "wall_s_2_workers": w2v["wall_s"],
                "stage_timings": w2v["timings"], "audio_hours_per_hour_2_workers": per_hour,
                "extrapolated_wall_s_for_corpus": report["audio_minutes"] * 60.0 / per_hour,
                "note": "random-weight Wav2Vec2Config() (95M params), CPU, actors keep the model loaded; "
                        "includes model load per actor",
            }
    finally:
        ray.shutdown()
    report["peak_driver_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    report["load_average_after"] = os.getloadavg()
    print(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).decode())


if __name__ == "__main__":
    main()
