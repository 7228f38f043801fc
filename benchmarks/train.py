"""Trainer benchmark at two corpus sizes: prints ONE JSON object (``benchmarks/_common.emit``: figures, goals, ``met``)
and saves it to benchmarks/results/train.json.

* Corpora (generated once, cached in the temp dir): 1x = ``--minutes`` of plucked, varied notes at 48 kHz in
  30 s files, 4x = four times as many files. Default 15 and 60 minutes.
* Each training runs in its own driver process that joins one local 2-CPU Ray (started here, its start-up
  reported separately), so the driver's peak RSS (``ru_maxrss``) is per run, and worker start-up, model loads and
  the driver's serial steps are inside each measured time, as in a real run. Goal: the 4x corpus' driver peak
  RSS <= 1.2x the 1x corpus' (no driver funnel: the driver holds summaries, the fitting sample and the oracle).
* 1 vs 2 workers (goal >= 1.6x, whole run), interleaved 1, 2, 1, 2 (``--rounds``) on a fresh cache each so both
  see the same background load; the fastest round of each is compared. Traditional features on the 4x corpus,
  wav2vec with a tiny random-weight checkpoint on the 4x corpus too (``--w2v-files``) and a base-size one
  (``Wav2Vec2Config()``, 95M) on its first ``--w2v-base-files`` files (start-up amortised: see docs/architecture.md,
  "Parallel efficiency"). ``--split-stages`` adds tiny wav2vec with the stages split as on GPUs (CPU tasks decode
  and segment, the encoder actors only encode) side by side with the default (both stages in each actor).
* Besides wall time, per run: the workers' busy time and CPU time (``FileOutcome.seconds``/``cpu_s``), the
  machine's busy cores from /proc/stat (so the other processes' share, ``background_cores``) and the load
  average; from them the load-independent figures: slot utilisation, CPU per audio-hour 2 over 1 worker, and
  the speed-up they project on two free cores (feature stage and whole run, Amdahl with the measured serial time).
* Audio Oracle build at ``--oracle-states`` (default 10^6) 16-D states (music-like frames from
  ``benchmarks/oracle.py``, per-state metadata as columns): states per second for the build and for writing its
  arrays, and bytes per state in memory and in the model file.
* 1 and 2 workers must give byte-identical models (every round).

Run: ``.venv/bin/python benchmarks/train.py [--minutes 15 --w2v-files 0 --w2v-base-files 16 --rounds 2
--oracle-states 1000000] [--split-stages]`` (about 15 minutes on the shared 2-core machine; reduced check: ``--minutes 2
--w2v-base-files 1 --rounds 1 --oracle-states 100000``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

from testkit.wav2vec import save_tiny_wav2vec  # noqa: E402

SR = 48_000
FILE_SECONDS = 30.0
GOAL_RSS_RATIO = 1.2
GOAL_SPEEDUP = 1.6


def _note_file(seed: int, seconds: float) -> np.ndarray:
    """Varied material: random pitch, register, timbre (harmonic weights), decay and inter-onset times."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    onset = 0.05
    t = np.arange(int(0.4 * SR)) / SR
    centre = int(rng.integers(-12, 6))
    weights = rng.uniform(0.1, 1.0, 4)
    while onset < seconds - 0.5:
        freq = 440.0 * 2.0 ** ((centre + int(rng.integers(-9, 10))) / 12.0)
        env = np.exp(-t * float(rng.uniform(4, 9))) * np.minimum(1.0, t * 300.0)
        tone = sum(w * np.sin(2 * np.pi * freq * h * t) / h for h, w in zip((1, 2, 3, 4), weights))
        start = int(onset * SR)
        out[start : start + t.size] += (0.2 * float(rng.uniform(0.4, 1.0)) * env * tone).astype(np.float32)
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


# ---------------------------------------------------------------------------------------------- one driver
def _driver(spec: dict) -> dict:
    """One training run as its own driver process (joins the benchmark's Ray)."""
    from functools import partial

    import ray

    from services.trainer.distributed import ray_analyze_many, ray_map
    from services.trainer.pipeline import train
    from shared.config import MusicHalConfig

    ray.init(address=spec["address"], log_to_driver=False, configure_logging=False)
    config = MusicHalConfig().with_overrides(spec["overrides"])
    out = Path(spec["out"])
    machine_start, load_start = _machine_jiffies(), os.getloadavg()[0]
    start, driver_cpu = time.perf_counter(), time.process_time()
    result = train(
        [Path(p) for p in spec["paths"]],
        config=config,
        output=out / "model.json",
        cache_dir=out / "cache",
        analyze_many=partial(ray_analyze_many, workers=spec["workers"], split_stages=spec.get("split_stages")),
        map_groups=partial(ray_map, config=config, workers=spec["workers"]),
    )
    wall = time.perf_counter() - start
    driver_cpu = time.process_time() - driver_cpu
    machine_end = _machine_jiffies()
    ray.shutdown()
    import hashlib

    digest = hashlib.sha256((out / "model.json").read_bytes() + (out / "model.safetensors").read_bytes()).hexdigest()
    return {
        "wall_s": wall,
        "audio_s": result.training["audio_seconds"],
        "events": result.training["events"],
        "timings": result.stats["timings"],
        "model_sha256": digest,
        "audio_hours_per_hour": result.training["audio_seconds"] / wall,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "worker_busy_s": sum(o.seconds for o in result.outcomes),
        "worker_cpu_s": sum(o.cpu_s for o in result.outcomes),
        "driver_cpu_s": driver_cpu,
        "load_average_1min": load_start,
        "workers": spec["workers"],
        "machine_busy_cores": _busy_cores(machine_start, machine_end, wall),
    }


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (all processes, ours and the others')."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return (0, 0)
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle, sum(values))


def _busy_cores(start: tuple[int, int], end: tuple[int, int], wall: float) -> float | None:
    if end[1] <= start[1] or wall <= 0:
        return None
    return (end[0] - start[0]) / (end[1] - start[1]) * (os.cpu_count() or 1)


def _run(
    address: str,
    paths: list[Path],
    workers: int,
    out: Path,
    overrides: dict | None = None,
    split_stages: bool | None = None,
) -> dict:
    spec = {
        "address": address,
        "paths": [str(p) for p in paths],
        "workers": workers,
        "out": str(out),
        "overrides": overrides or {},
        "split_stages": split_stages,
    }
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--driver", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- oracle
def oracle_build(states: int, dim: int = 16, seed: int = 0) -> dict:
    """Music-like frames (``benchmarks/oracle.py``'s motif generator: 16 motifs of 8 over 64 centres, noise), the
    threshold by Information Rate on the first 2,000, appended file by file (100 states each) with metadata columns."""
    from benchmarks.oracle import features
    from services.oracle.memory.audio_oracle import AudioOracle
    from services.oracle.memory.information_rate import select_threshold

    rng = np.random.default_rng(seed)
    frames, labels = features(states, dim=dim, seed=seed)
    threshold, _ = select_threshold(frames[:2000])
    columns = {
        "onset_s": np.arange(states) * 0.3,
        "duration_s": np.full(states, 0.3),
        "rms": np.full(states, 0.1),
        "velocity": rng.integers(30, 120, states),
        "f0_hz": rng.uniform(80, 800, states),
        "chroma": np.tile(np.arange(3, dtype=np.int8), (states, 1)),
    }
    warm = AudioOracle(threshold, dim)
    warm.extend(
        frames[:64], tokens=labels[:64], columns={k: v[:64] for k, v in columns.items()}, event_ids=np.arange(64)
    )
    warm.to_model_parts()  # numba kernels compiled before timing
    oracle = AudioOracle(threshold, dim, capacity=states + 1)
    start = time.perf_counter()
    per_file = 100  # appended file by file, as the trainer does
    for begin in range(0, states, per_file):
        end = min(states, begin + per_file)
        oracle.extend(
            frames[begin:end],
            tokens=labels[begin:end],
            event_ids=np.arange(begin, end),
            columns={k: v[begin:end] for k, v in columns.items()},
            source=f"file{begin // per_file}",
        )
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    meta, arrays = oracle.to_model_parts()
    parts_s = time.perf_counter() - start
    memory = (
        oracle._frames.nbytes + oracle._st.nbytes + oracle._edges.nbytes + oracle._better.nbytes + oracle.states.nbytes
    )
    stored = sum(a.nbytes for a in arrays.values())
    return {
        "states": states,
        "dim": dim,
        "threshold": threshold,
        "labels": oracle.n_labels,
        "build_s": build_s,
        "states_per_s": states / build_s,
        "to_model_parts_s": parts_s,
        "transitions": oracle.n_transitions,
        "bytes_per_state_in_memory": memory / states,
        "bytes_per_state_in_model_file": stored / states,
        "note": "in-memory bytes include the growth headroom of the preallocated arrays",
    }


# ---------------------------------------------------------------------------------------------- main
def _save_w2v(directory: Path, tiny: bool) -> Path:
    """A random wav2vec checkpoint: the tests' tiny one, or base size (``Wav2Vec2Config()``)."""
    if tiny:
        return save_tiny_wav2vec(directory)
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).eval().save_pretrained(directory, safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(directory)
    return directory


def projection(one: dict, two: dict) -> tuple[float, float]:
    """What two free cores give, from the load-independent parts: the feature stage 2 x cpu1/cpu2 (work the second
    worker adds) x min(1, util2/util1) (slot time it leaves idle; never counted as a gain, since on a saturated
    machine busy time also holds waits for a CPU), the whole run by Amdahl with the measured serial time."""
    stage_projected = (
        2.0
        * (one["cpu_per_audio_hour_s"] / two["cpu_per_audio_hour_s"])
        * min(1.0, two["slot_utilisation"] / one["slot_utilisation"])
    )
    serial_1, analysis_1 = min(one["serial_s"]), min(one["analysis_s"])
    return stage_projected, (serial_1 + analysis_1) / (min(two["serial_s"]) + analysis_1 / stage_projected)


def _scaling(
    address: str,
    paths: list[Path],
    tmp: Path,
    tag: str,
    overrides: dict | None = None,
    rounds: int = 2,
    split_stages: bool | None = None,
) -> dict:
    """1 and 2 workers interleaved (1, 2, 1, 2, ...; fresh cache each) so both see the same background load.

    Wall-clock figures use each worker count's fastest round (the least disturbed by the other load). The CPU-time
    figures depend little on that load: ``slot_utilisation`` = worker busy time / (workers x feature-stage wall)
    (1.0: no worker waits for the driver or for work), ``cpu_per_audio_hour`` (the work; equal for 1 and 2
    workers when nothing is duplicated), ``cores_used`` = worker CPU / stage wall (what the machine gave), and
    ``projected_speedup`` = what 2 free cores give from these: the stage 2 x util2/util1 x cpu1/cpu2, the whole
    run by Amdahl with the measured serial (driver) time."""
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(rounds):
        for w in (1, 2):
            runs[w].append(_run(address, paths, w, tmp / f"{tag}_w{w}_r{r}", overrides, split_stages))
    best = {w: min(runs[w], key=lambda run: run["wall_s"]) for w in (1, 2)}

    def stage(w: int) -> dict:
        analysis = [run["timings"]["analysis_s"] for run in runs[w]]
        util = [run["worker_busy_s"] / (w * run["timings"]["analysis_s"]) for run in runs[w]]
        cpu = [run["worker_cpu_s"] for run in runs[w]]
        return {
            "analysis_s": analysis,
            "slot_utilisation": float(np.mean(util)),
            "worker_cpu_s": cpu,
            "worker_busy_s": [run["worker_busy_s"] for run in runs[w]],
            "cpu_per_audio_hour_s": float(np.mean(cpu)) / (best[w]["audio_s"] / 3600.0),
            "cores_used": float(np.mean([c / a for c, a in zip(cpu, analysis)])),
            "serial_s": [run["wall_s"] - run["timings"]["analysis_s"] for run in runs[w]],
            "machine_busy_cores": [run["machine_busy_cores"] for run in runs[w]],
            "background_cores": [
                None
                if run["machine_busy_cores"] is None
                else max(0.0, run["machine_busy_cores"] - (run["worker_cpu_s"] + run["driver_cpu_s"]) / run["wall_s"])
                for run in runs[w]
            ],
            "load_average_1min": [run["load_average_1min"] for run in runs[w]],
        }

    one, two = stage(1), stage(2)
    stage_projected, whole_projected = projection(one, two)
    return {
        "audio_s": best[1]["audio_s"],
        "events": best[1]["events"],
        "files": len(paths),
        "rounds": rounds,
        "order": "1, 2 workers interleaved, " + str(rounds) + " rounds",
        "wall_s_1_worker": [run["wall_s"] for run in runs[1]],
        "wall_s_2_workers": [run["wall_s"] for run in runs[2]],
        "audio_hours_per_hour_1_worker": best[1]["audio_hours_per_hour"],
        "audio_hours_per_hour_2_workers": best[2]["audio_hours_per_hour"],
        "speedup": best[1]["wall_s"] / best[2]["wall_s"],
        "speedup_per_round": [a["wall_s"] / b["wall_s"] for a, b in zip(runs[1], runs[2])],
        "feature_stage_speedup": min(one["analysis_s"]) / min(two["analysis_s"]),
        "feature_stage_1_worker": one,
        "feature_stage_2_workers": two,
        "projected_speedup_feature_stage": stage_projected,
        "projected_speedup_whole_run": whole_projected,
        "timings_1_worker": best[1]["timings"],
        "timings_2_workers": best[2]["timings"],
        "identical_model_bytes": len({run["model_sha256"] for w in (1, 2) for run in runs[w]}) == 1,
        "model_sha256": best[1]["model_sha256"],
        "driver_peak_rss_mb_2_workers": best[2]["driver_peak_rss_mb"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=15.0, help="the 1x corpus (the 4x one is four times it)")
    parser.add_argument(
        "--w2v-files", type=int, default=0, help="files of the 4x corpus for the tiny wav2vec model (0: all of it)"
    )
    parser.add_argument(
        "--w2v-base-files",
        type=int,
        default=16,
        help="files of the 1x corpus for the base-size wav2vec model (30 s each)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved 1-worker/2-worker rounds per path")
    parser.add_argument(
        "--split-stages",
        action="store_true",
        help="also run tiny wav2vec with the stages split as on GPUs (CPU tasks decode and segment, "
        "the actors only encode), side by side with the default (both stages in each actor)",
    )
    parser.add_argument("--oracle-states", type=int, default=1_000_000)
    parser.add_argument("--driver", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(strip_no_save())
    if args.driver:
        print(json.dumps(_driver(json.loads(args.driver))))
        return 0
    import ray

    files_1x = max(1, round(args.minutes * 60.0 / FILE_SECONDS))
    paths_4x = corpus(4 * files_1x, FILE_SECONDS)
    paths_1x = paths_4x[:files_1x]
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    address = ray.get_runtime_context().gcs_address
    report: dict = {
        "corpus_1x_minutes": files_1x * FILE_SECONDS / 60.0,
        "corpus_4x_minutes": 4 * files_1x * FILE_SECONDS / 60.0,
        "cpu_count": os.cpu_count(),
        "ray_start_s": time.perf_counter() - t0,
        "load_average_before": os.getloadavg(),
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            _run(address, paths_1x[:2], 2, tmp / "warm")  # numba kernels compiled and cached on disk
            small = _run(address, paths_1x, 2, tmp / "trad1x")
            report["traditional"] = _scaling(address, paths_4x, tmp, "trad", rounds=args.rounds)  # the 4x corpus
            report["driver_rss"] = {
                "mb_1x": small["driver_peak_rss_mb"],
                "mb_4x": report["traditional"]["driver_peak_rss_mb_2_workers"],
                "events_1x": small["events"],
                "events_4x": report["traditional"]["events"],
                "audio_hours_per_hour_1x_2_workers": small["audio_hours_per_hour"],
            }
            report["driver_rss"]["ratio_4x_over_1x"] = report["driver_rss"]["mb_4x"] / report["driver_rss"]["mb_1x"]
            runs = [
                ("wav2vec_tiny", True, args.w2v_files or len(paths_4x), None),
                ("wav2vec_base", False, args.w2v_base_files, None),
            ]
            if args.split_stages:  # the GPU layout on CPUs, the same work side by side (reported only)
                runs.insert(1, ("wav2vec_tiny_split_stages", True, args.w2v_files or len(paths_4x), True))
            checkpoints: dict[bool, Path] = {}
            for name, tiny, count, split in runs:
                if tiny not in checkpoints:
                    checkpoints[tiny] = _save_w2v(tmp / f"{'tiny' if tiny else 'base'}_ckpt", tiny)
                ckpt = checkpoints[tiny]
                report[name] = _scaling(
                    address,
                    paths_4x[: max(1, count)],
                    tmp,
                    name,
                    {"features.kind": "wav2vec", "wav2vec.model": str(ckpt)},
                    rounds=args.rounds,
                    split_stages=split,
                )
    finally:
        ray.shutdown()
    report["oracle"] = oracle_build(args.oracle_states)
    report["load_average_after"] = os.getloadavg()
    goals = [
        goal(
            "driver peak RSS, 4x corpus over 1x corpus (2 workers)",
            report["driver_rss"]["ratio_4x_over_1x"],
            "<=",
            GOAL_RSS_RATIO,
            unit="x",
            note=f"{report['corpus_4x_minutes']:g} vs {report['corpus_1x_minutes']:g} min of audio",
        )
    ]
    for name, label in (
        ("traditional", "traditional features"),
        ("wav2vec_tiny", "wav2vec, tiny random weights"),
        ("wav2vec_base", "wav2vec, base-size (95M) random weights"),
    ):
        r = report[name]
        goals += [
            goal(
                f"{label}: audio-hours per hour, 1 worker",
                r["audio_hours_per_hour_1_worker"],
                "report",
                unit="h/h",
                note=f"{r['audio_s'] / 60.0:g} min of audio",
            ),
            goal(
                f"{label}: audio-hours per hour, 2 workers", r["audio_hours_per_hour_2_workers"], "report", unit="h/h"
            ),
            goal(
                f"{label}: 2 workers over 1 worker, whole run",
                r["speedup"],
                ">=",
                GOAL_SPEEDUP,
                unit="x",
                note=f"fastest of {r['rounds']} interleaved rounds each; {r['files']} files",
            ),
            goal(f"{label}: 2 workers over 1 worker, feature stage", r["feature_stage_speedup"], "report", unit="x"),
            goal(
                f"{label}: cores the 2 workers got (worker CPU / stage wall)",
                r["feature_stage_2_workers"]["cores_used"],
                "report",
                unit="cores",
                note="2.0 on two free cores; the other load takes the rest",
            ),
            goal(
                f"{label}: worker slot utilisation, 2 workers",
                r["feature_stage_2_workers"]["slot_utilisation"],
                "report",
                unit="",
                note="busy time / (workers x stage wall); on a saturated machine busy time includes waits for a CPU",
            ),
            goal(
                f"{label}: CPU per audio-hour, 2 over 1 worker",
                r["feature_stage_2_workers"]["cpu_per_audio_hour_s"]
                / r["feature_stage_1_worker"]["cpu_per_audio_hour_s"],
                "report",
                unit="x",
                note="1.0: the second worker duplicates no work",
            ),
            goal(
                f"{label}: projected 2-worker speed-up on two free cores, whole run",
                r["projected_speedup_whole_run"],
                "report",
                unit="x",
                note=f"feature stage {r['projected_speedup_feature_stage']:.2f}x; from CPU time, utilisation and "
                "the serial time; indicative only when the machine was saturated",
            ),
            goal(f"{label}: 1 and 2 workers give byte-identical models", r["identical_model_bytes"], "==", True),
        ]
    if "wav2vec_tiny_split_stages" in report:
        r, label = report["wav2vec_tiny_split_stages"], "wav2vec tiny, stages split as on GPUs"
        goals += [
            goal(
                f"{label}: 2 workers over 1 worker, whole run",
                r["speedup"],
                "report",
                unit="x",
                note=f"the default (both stages in each encoder actor) in the same run: "
                f"{report['wav2vec_tiny']['speedup']:.2f}x; fastest of {r['rounds']} rounds each",
            ),
            goal(
                f"{label}: worker slot utilisation, 2 workers",
                r["feature_stage_2_workers"]["slot_utilisation"],
                "report",
                unit="",
                note=f"default: {report['wav2vec_tiny']['feature_stage_2_workers']['slot_utilisation']:.3f}",
            ),
            goal(
                f"{label}: same model bytes as the default",
                r["identical_model_bytes"] and len({report["wav2vec_tiny"]["model_sha256"], r["model_sha256"]}) == 1,
                "==",
                True,
            ),
        ]
    o = report["oracle"]
    goals += [
        goal(f"oracle build at {o['states']:,} states", o["states_per_s"], "report", unit="states/s"),
        goal(
            "oracle bytes per state in memory",
            o["bytes_per_state_in_memory"],
            "report",
            unit="B",
            note="includes the preallocated arrays' growth headroom",
        ),
        goal("oracle bytes per state in the model file", o["bytes_per_state_in_model_file"], "report", unit="B"),
    ]
    reduced = (
        args.minutes < 15.0
        or (0 < args.w2v_files < 4 * files_1x)
        or args.w2v_base_files < 16
        or args.oracle_states < 1_000_000
        or args.rounds < 2
    )
    notes = (
        f"Corpora: 1x = {report['corpus_1x_minutes']:g} min, 4x = {report['corpus_4x_minutes']:g} min of generated "
        "48 kHz notes in 30 s files. Speed-ups: traditional on the 4x corpus, wav2vec tiny on "
        f"{report['wav2vec_tiny']['files']} and base on the first {report['wav2vec_base']['files']} files of it. "
        "Each training is its own driver process (worker start-up, model loads and the serial driver steps "
        "inside the measured time) joining one local 2-CPU Ray; 1 and 2 workers interleaved "
        f"({args.rounds} rounds, fresh cache each), the fastest round of each counted. The wall-clock goal needs "
        "two free cores: on a shared 2-core machine the second worker competes with the other load "
        "(background_cores, load_average_1min per run); cores_used, slot_utilisation and CPU per audio-hour "
        "are the load-independent view, projected_speedup what they give on two free cores."
    )
    if reduced:
        notes += (
            " REDUCED run (the issue's default is --minutes 15, i.e. 15/60 min corpora, --rounds 2, "
            "--oracle-states 1000000)."
        )
    return emit("train", report, goals, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
