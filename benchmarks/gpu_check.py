"""GPU check for the wav2vec encoder: run on a machine with CUDA (``scripts/gpu_check.sh``); prints ONE JSON object.

- ``device``: the encoder's device as MusicHal chooses it with ``--gpu`` (must be ``cuda``), the GPU's name, fp16 on;
- ``per_window_ms``: wall time per 500 ms window (16 kHz input, normalised), ``encode`` one window per call vs
  ``encode_batch`` of 16 windows per call (divided by 16), p50/p99 over ``--repeats`` calls each, CUDA synchronised;
- ``memory_mb``: model weights and the peak CUDA allocation during the runs;
- ``ray``: (unless ``--no-ray``) the encoder actor started through Ray with ``num_gpus`` like ``musichal --gpu``
  places it, reporting its own device (``cuda`` proves Ray gave the actor the GPU).

Goals: device ``cuda``; batched per-window time below the single-window time; the Ray actor on ``cuda``. The JSON
follows ``benchmarks/_common.emit`` (saved to benchmarks/results/gpu_check.json unless ``--no-save``; also to
``--output``). Without CUDA it prints one line ``gpu_check: error: ...`` and exits 2 (nothing is measured on the CPU;
``make bench`` does not run it where ``nvidia-smi`` is missing, and says so).

    scripts/gpu_check.sh [--model facebook/wav2vec2-base] [--repeats 50] [--output gpu_check.json] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def cuda_or_exit() -> str:
    """The CUDA device name, or one error line and exit code 2."""
    try:
        import torch
    except ImportError:
        print("gpu_check: error: torch is not installed", file=sys.stderr)
        raise SystemExit(2) from None
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        print(
            f"gpu_check: error: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
            f"CUDA_VISIBLE_DEVICES={visible!r}); run it on a machine with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return torch.cuda.get_device_name(0)


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000.0
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "n": len(values),
    }


def measure(model: str, repeats: int, batch: int) -> dict:
    import torch

    from services.encoder.wav2vec import Wav2VecMusicEncoder, model_memory_bytes

    encoder = Wav2VecMusicEncoder(model, use_gpu=True, fp16=True)
    if encoder.device != "cuda":
        print(f"gpu_check: error: the encoder chose {encoder.device}, not cuda", file=sys.stderr)
        raise SystemExit(2)
    rng = np.random.default_rng(0)
    windows = [(rng.standard_normal(8000) * 0.1).astype(np.float32) for _ in range(batch)]  # 500 ms at 16 kHz
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):  # warm-up (kernels, allocator)
        encoder.encode(windows[0], 16_000)
        encoder.encode_batch(windows, 16_000)
    single, batched = [], []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        encoder.encode(windows[0], 16_000)
        torch.cuda.synchronize()
        single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        encoder.encode_batch(windows, 16_000)
        torch.cuda.synchronize()
        batched.append((time.perf_counter() - t0) / batch)
    return {
        "model": model,
        "device": encoder.device,
        "fp16": encoder.fp16,
        "dimension": encoder.dimension,
        "per_window_ms": {"encode": _ms(single), f"encode_batch_{batch}": _ms(batched)},
        "memory_mb": {
            "weights": round(model_memory_bytes(encoder.network) / 2**20, 1),
            "peak_allocated": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        },
    }


def through_ray(model: str) -> dict:
    """The encoder actor placed the way ``musichal --gpu --wav2vec`` places it; its own device report."""
    import ray

    from services.encoder.actor import EncoderActor
    from shared.config import MusicHalConfig

    config = MusicHalConfig().with_overrides(
        {"features.kind": "wav2vec", "wav2vec.model": model, "wav2vec.use_gpu": True, "wav2vec.fp16": True}
    )
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        actor = EncoderActor.options(num_gpus=config.cluster.encoder_num_gpus).remote(config)
        info = ray.get(actor.ready.remote(), timeout=600)
        return {
            "ray_gpus": gpus,
            "num_gpus_requested": config.cluster.encoder_num_gpus,
            "actor_device": info["device"],
            "input_rate_hz": info["input_rate_hz"],
            "load_seconds": info["load_seconds"],
        }
    finally:
        ray.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="facebook/wav2vec2-base", help="checkpoint name (in the HF cache) or directory"
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--output", default="gpu_check.json")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray actor placement check")
    args = parser.parse_args(strip_no_save(argv))
    name = cuda_or_exit()
    result = {"gpu": name, **measure(args.model, args.repeats, args.batch)}
    if not args.no_ray:
        result["ray"] = through_ray(args.model)
    single = result["per_window_ms"]["encode"]
    batched = result["per_window_ms"][f"encode_batch_{args.batch}"]
    goals = [
        goal("encoder device with --gpu", result["device"], "==", "cuda", note=f"{name}, fp16 {result['fp16']}"),
        goal("per window, encode (one per call), p50", single["p50"], "report", unit="ms"),
        goal(f"per window, encode_batch of {args.batch}, p50", batched["p50"], "report", unit="ms"),
        goal(
            f"per window, encode_batch of {args.batch} over encode, p50",
            batched["p50"] / single["p50"],
            "<",
            1.0,
            unit="x",
        ),
        goal(
            "peak CUDA allocation",
            result["memory_mb"]["peak_allocated"],
            "report",
            unit="MB",
            note=f"weights {result['memory_mb']['weights']} MB",
        ),
    ]
    if not args.no_ray:
        goals.append(goal("encoder actor's device through Ray (num_gpus)", result["ray"]["actor_device"], "==", "cuda"))
    code = emit(
        "gpu_check",
        result,
        goals,
        notes=f"Model {args.model}, {args.repeats} calls each, CUDA synchronised "
        "around every call; 500 ms windows at 16 kHz.",
    )
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
