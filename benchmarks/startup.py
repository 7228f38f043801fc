"""Start-up: from the command to listening, against Ray's own floor measured in the same run; the breakdown.

    .venv/bin/python benchmarks/startup.py [--runs 5] [--before /tmp/before-tree] [--no-wav2vec]

"Listening" is the moment the stack's input starts with every actor ready (the first input event can be learned):
``musichal`` prints ``listening after …`` then. Each run starts the real command (``launch.py --input-file clip.wav
--duration 1 --midi-api jack --stats``) as a new process and times it from ``Popen`` to that line; the stats JSON
it writes holds the stack's own phases (preflight, Ray import and init, actor modules, each actor's time to ready,
listen). Ray's floor is a process that imports Ray, calls ``ray.init`` with Ray's own processes (the options the
stack used before :func:`services.ray_support.lean_head`), creates one actor and gets one answer from it; the lean
floor does the same through the stack's ``start_local_ray`` — both run in the same loop, interleaved with the stacks,
so all see the same load.

``--before TREE``: a checkout of an earlier commit with its own venv (``TREE/.venv``) is run the same way, side by
side (its command prints ``running (…)`` once started: its input had started before that line). Configurations:
traditional features (learning live), and the tiny random Wav2Vec2 of the tests (``--wav2vec --wav2vec-model``).

The breakdown beside the runs, each in a fresh process: the import time of each actor's module after ``import ray``
and whether it pulls in torch, transformers, onnxruntime or numba; the encoder's thread setup (it imported torch);
the oracle's numba kernels compiled cold (empty cache) and loaded from the cache; the tiny wav2vec's load (torch +
transformers + checkpoint). Medians of ``--runs``; warm OS caches (one unmeasured run of each first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402
from fixtures import random_piano_clip  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ACTOR_MODULES = ("services.capture.actor", "services.encoder.actor", "services.oracle.actor", "services.midi_out.actor")
HEAVY = ("torch", "transformers", "onnxruntime", "numba", "scipy", "librosa")

FLOOR_SCRIPT = """
import os, sys
import ray
from services.ray_support import loopback_only

@ray.remote(num_cpus=0)
class One:
    def ping(self):
        return os.getpid()

with loopback_only():
    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
             num_cpus=max(2, os.cpu_count() or 2), log_to_driver=False, configure_logging=False)
ray.get(One.remote().ping.remote(), timeout=120)
print("FLOOR READY", flush=True)
ray.shutdown()
"""

LEAN_FLOOR_SCRIPT = """
import os, sys
import ray
from services.ray_support import start_local_ray

@ray.remote(num_cpus=0)
class One:
    def ping(self):
        return os.getpid()

start_local_ray(max(2, os.cpu_count() or 2))
ray.get(One.remote().ping.remote(), timeout=120)
print("FLOOR READY", flush=True)
ray.shutdown()
"""

IMPORT_SCRIPT = """
import json, sys, time
import ray
t0 = time.perf_counter()
__import__(sys.argv[1])
import_s = time.perf_counter() - t0
loaded = {m: m in sys.modules for m in sys.argv[2].split(",")}
t0 = time.perf_counter()
from services.ray_support import set_torch_threads
set_torch_threads(1)
threads_s = time.perf_counter() - t0
print(json.dumps({"import_s": import_s, "loaded": loaded, "encoder_thread_setup_s": threads_s,
                  "thread_setup_imported_torch": "torch" in sys.modules}))
"""

NUMBA_SCRIPT = """
import json, time
from shared.config import MusicHalConfig
from services.oracle.warm import warm_up
t0 = time.perf_counter()
warm_up(MusicHalConfig())
print(json.dumps({"warm_up_s": time.perf_counter() - t0}))
"""

WAV2VEC_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import torch
torch_s = time.perf_counter() - t0
from shared.config import MusicHalConfig
from services.encoder.views import HybridPerceptionModule
config = MusicHalConfig().with_overrides({"features.kind": "wav2vec", "wav2vec.model": sys.argv[1]})
t0 = time.perf_counter()
HybridPerceptionModule.from_config(config)
print(json.dumps({"import_torch_s": torch_s, "load_s": time.perf_counter() - t0}))
"""


def _python(tree: Path) -> str:
    venv = tree / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _json_line(command: list[str], *, cwd: Path, env: dict | None = None, timeout_s: float = 300) -> dict:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **(env or {})}
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{command[:3]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def time_until_line(command: list[str], marker: str, *, cwd: Path, timeout_s: float = 180) -> tuple[float | None, str]:
    """Seconds from starting ``command`` to the first stdout line containing ``marker`` (None if it never came);
    the process is then left to finish (``--duration``) and its output returned."""
    t0 = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: float | None = None
    output = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if seen is None and marker in line:
                seen = time.monotonic() - t0
        process.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return seen, "".join(output)


def run_floor(cwd: Path, *, lean: bool = False) -> float | None:
    script = LEAN_FLOOR_SCRIPT if lean else FLOOR_SCRIPT
    seconds, output = time_until_line([sys.executable, "-c", script], "FLOOR READY", cwd=cwd)
    if seconds is None:
        print(f"startup: the Ray floor run failed:\n{output[-800:]}", file=sys.stderr)
    return seconds


def run_stack(tree: Path, clip: Path, work: Path, *, new: bool, wav2vec: Path | None) -> dict[str, Any]:
    stats_file = work / f"stats_{time.monotonic_ns()}.json"
    command = [
        _python(tree),
        str(tree / "launch.py"),
        "--input-file",
        str(clip),
        "--duration",
        "1",
        "--midi-api",
        "jack",
        "--stats",
        "--stats-file",
        str(stats_file),
    ]
    if wav2vec is not None:
        command += ["--wav2vec", "--wav2vec-model", str(wav2vec)]
    seconds, output = time_until_line(command, "listening after" if new else "running (", cwd=work)
    out: dict[str, Any] = {"command_to_listening_s": None if seconds is None else round(seconds, 2)}
    if seconds is None:
        out["error"] = output.strip()[-500:]
    if stats_file.exists():
        startup = json.loads(stats_file.read_text()).get("startup")
        if startup:
            out["phases_s"] = startup["phases_s"]
            out["reported_command_to_listening_s"] = startup.get("command_to_listening_s")
        stats_file.unlink()
    return out


def breakdown(tree: Path, work: Path, wav2vec: Path | None) -> dict[str, Any]:
    python = _python(tree)
    out: dict[str, Any] = {"actor_modules": {}}
    for module in ACTOR_MODULES:
        figures = _json_line([python, "-c", IMPORT_SCRIPT, module, ",".join(HEAVY)], cwd=tree)
        out["actor_modules"][module] = {
            "import_s": round(figures["import_s"], 3),
            "imports": [m for m, on in figures["loaded"].items() if on],
        }
        out["encoder_thread_setup_s"] = round(figures["encoder_thread_setup_s"], 3)
        out["encoder_thread_setup_imports_torch"] = figures["thread_setup_imported_torch"]
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = _json_line([python, "-c", NUMBA_SCRIPT], cwd=tree, env=env)
        cached = _json_line([python, "-c", NUMBA_SCRIPT], cwd=tree, env=env)
    out["oracle_numba_warm_up_s"] = {
        "cold_compile": round(cold["warm_up_s"], 3),
        "from_cache": round(cached["warm_up_s"], 3),
    }
    if wav2vec is not None:
        figures = _json_line([python, "-c", WAV2VEC_SCRIPT, str(wav2vec)], cwd=tree)
        out["wav2vec_tiny"] = {
            "import_torch_s": round(figures["import_torch_s"], 3),
            "load_s": round(figures["load_s"], 3),
        }
    return out


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def _median_phases(runs: list[dict]) -> dict[str, float]:
    names: list[str] = []
    for run in runs:
        names += [n for n in run.get("phases_s", {}) if n not in names]
    return {n: _median([run.get("phases_s", {}).get(n) for run in runs]) for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", help="a checkout of an earlier commit (with TREE/.venv) measured side by side")
    parser.add_argument("--before-label", default="", help="what --before is (e.g. a commit id), for the JSON")
    parser.add_argument("--no-wav2vec", action="store_true", help="traditional features only")
    args = parser.parse_args(strip_no_save(argv))
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    from shared.jack_server import start_dummy_jack, stop_jack

    trees = {"after": (REPO, True)}
    if args.before:
        trees["before"] = (Path(args.before).resolve(), False)
    work = Path(tempfile.mkdtemp(prefix="musichal_startup_"))
    jack = start_dummy_jack()
    try:
        clip = random_piano_clip(
            work / "clip.wav",
            seed=3,
            count=40,
            pitches=[55, 57, 60, 62, 64, 67, 69, 72],
            start_s=0.1,
            step_s=0.25,
            duration_s=0.2,
        )
        tiny = None
        if not args.no_wav2vec:
            from testkit.wav2vec import save_tiny_wav2vec

            tiny = save_tiny_wav2vec(work / "tiny_w2v", group_norm=True)
        configs = {"traditional": None} if tiny is None else {"traditional": None, "wav2vec_tiny": tiny}
        runs: dict[str, dict[str, list]] = {t: {c: [] for c in configs} for t in trees}
        floors: list[float | None] = []
        lean_floors: list[float | None] = []
        loads = [os.getloadavg()[0]]
        run_floor(work)  # warm the OS caches: one unmeasured run of each
        for tree, new in trees.values():
            for wav2vec in configs.values():
                run_stack(tree, clip, work, new=new, wav2vec=wav2vec)
        for i in range(args.runs):  # interleaved: floor and every stack see the same load
            floors.append(run_floor(work))
            lean_floors.append(run_floor(work, lean=True))
            for label, (tree, new) in trees.items():
                for config, wav2vec in configs.items():
                    result = run_stack(tree, clip, work, new=new, wav2vec=wav2vec)
                    runs[label][config].append(result)
                    print(
                        f"startup run {i + 1}: {label} {config} {result['command_to_listening_s']} s "
                        f"(floor {floors[-1]:.2f} s, load {os.getloadavg()[0]:.2f})",
                        file=sys.stderr,
                        flush=True,
                    )
            loads.append(os.getloadavg()[0])
        parts = {label: breakdown(tree, work, tiny) for label, (tree, _new) in trees.items()}
    finally:
        stop_jack(jack)
    floor = _median(floors)
    figures: dict[str, Any] = {
        "runs": args.runs,
        "ray_floor_s": {"median": floor, "runs": floors},
        "ray_lean_floor_s": {"median": _median(lean_floors), "runs": lean_floors},
        "before_tree": args.before_label or args.before,
        "loadavg_1min": [round(x, 2) for x in loads],
    }
    for label in trees:
        figures[label] = {}
        for config in configs:
            results = runs[label][config]
            median = _median([r["command_to_listening_s"] for r in results])
            figures[label][config] = {
                "command_to_listening_s": {"median": median, "runs": [r["command_to_listening_s"] for r in results]},
                "ratio_to_ray_floor": round(median / floor, 2) if median and floor else None,
                "phases_s_median": _median_phases(results),
                "errors": [r["error"] for r in results if "error" in r],
            }
        figures[label]["breakdown"] = parts[label]
    return emit("startup", figures, make_goals(figures), notes=NOTES)


NOTES = (
    "Medians of interleaved runs (floor, then each tree and configuration, per round) after one unmeasured "
    "warm-up run of each. 'listening' = every actor ready and the input started. Before: the older command "
    "printed 'running (…)' after its start (its input file had started before that line). Phases are the "
    "stack's own (LiveStack.startup, medians): ready_X is the time from creating the actors to X's ready "
    "answer, all four created at once. Breakdown rows are separate fresh processes."
)


def make_goals(figures: dict[str, Any]) -> list[dict]:
    """The goals and the breakdown shown in the report, from the figures."""
    goals = []
    after = figures["after"]
    goals.append(
        goal(
            "traditional: command to listening / Ray floor (same run)",
            after["traditional"]["ratio_to_ray_floor"],
            "<=",
            1.5,
            unit="x",
        )
    )
    goals.append(
        goal(
            "traditional: command to listening, median",
            after["traditional"]["command_to_listening_s"]["median"],
            "<=",
            6.0,
            unit="s",
        )
    )
    if "wav2vec_tiny" in after:
        goals.append(
            goal(
                "tiny wav2vec: command to listening, median",
                after["wav2vec_tiny"]["command_to_listening_s"]["median"],
                "<=",
                9.0,
                unit="s",
                note=f"{after['wav2vec_tiny']['ratio_to_ray_floor']} x the floor",
            )
        )
    goals.append(
        goal("Ray floor: import + ray.init + one actor, median", figures["ray_floor_s"]["median"], "report", unit="s")
    )
    if figures.get("ray_lean_floor_s", {}).get("median") is not None:
        goals.append(
            goal(
                "Ray lean floor: the same with the stack's own start_local_ray (no autoscaler monitor, log monitor, "
                "API server), median",
                figures["ray_lean_floor_s"]["median"],
                "report",
                unit="s",
            )
        )
    for config in ("traditional", "wav2vec_tiny"):
        phases = after.get(config, {}).get("phases_s_median", {})
        if phases:
            goals.append(
                goal(
                    f"after, {config}: phases (median s)",
                    ", ".join(f"{name} {value}" for name, value in phases.items() if value is not None),
                    "report",
                )
            )
    parts = after["breakdown"]
    goals.append(
        goal(
            "actor module imports after import ray (s)",
            ", ".join(
                f"{name.split('.')[1]} {m['import_s']}" + (f" [{'+'.join(m['imports'])}]" if m["imports"] else "")
                for name, m in parts["actor_modules"].items()
            ),
            "report",
        )
    )
    goals.append(
        goal(
            "oracle numba kernels: cold compile / from cache",
            f"{parts['oracle_numba_warm_up_s']['cold_compile']} / {parts['oracle_numba_warm_up_s']['from_cache']}",
            "report",
            unit="s",
        )
    )
    if "wav2vec_tiny" in parts:
        goals.append(
            goal(
                "tiny wav2vec in a fresh process: import torch / build + load + warm",
                f"{parts['wav2vec_tiny']['import_torch_s']} / {parts['wav2vec_tiny']['load_s']}",
                "report",
                unit="s",
            )
        )
    if "before" in figures:
        before = figures["before"]
        for config in ("traditional", "wav2vec_tiny"):
            if config in before:
                goals.append(
                    goal(
                        f"before ({figures['before_tree']}), {config}: command to running",
                        before[config]["command_to_listening_s"]["median"],
                        "report",
                        unit="s",
                        note=f"{before[config]['ratio_to_ray_floor']} x the floor",
                    )
                )
        goals.append(
            goal(
                "encoder thread setup: before / after (imports torch before)",
                f"{before['breakdown']['encoder_thread_setup_s']} / {parts['encoder_thread_setup_s']}",
                "report",
                unit="s",
            )
        )
    return goals


if __name__ == "__main__":
    sys.exit(main())
