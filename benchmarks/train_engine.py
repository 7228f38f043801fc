"""Ray Data vs Ray core tasks for the trainer's analysis step, same work side by side: prints ONE JSON object
(``benchmarks/_common.emit``) and saves it to benchmarks/results/train_engine.json.

Both run :func:`services.trainer.analysis.analyze_batch` on one file per unit (decode, front end, segmentation,
traditional features, shard written to a fresh cache) over the same generated corpus on a local 2-CPU Ray:

* core: one ``@ray.remote(num_cpus=1)`` task per file, at most 2 in flight, small summaries returned;
* data: ``ray.data.from_items(items).map_batches(fn, batch_size=1, num_cpus=1)`` consumed with ``iter_rows``.

Ray Data needs pandas and pyarrow, which MusicHal does not depend on; install them out of the tree
(``pip install --no-deps --target /tmp/raydata pandas pyarrow pytz`` — ``--no-deps`` so numpy stays the venv's —
then ``PYTHONPATH=/tmp/raydata``; ``make bench RAYDATA_PATH=/tmp/raydata``). Without them it prints one error line and
exits 2 (``make bench`` does not run it then, and says so).
Run: ``PYTHONPATH=/tmp/raydata .venv/bin/python benchmarks/train_engine.py [--files 8 --seconds 30] [--no-save]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(strip_no_save())
    try:
        import pandas
        import pyarrow
    except ImportError as error:
        print(
            f"train_engine: error: Ray Data needs pandas and pyarrow ({error}); install them out of the tree, see "
            "the docstring",
            file=sys.stderr,
        )
        return 2
    import ray

    from benchmarks.train import corpus
    from services.trainer.analysis import analyze_batch, make_perception
    from shared.config import MusicHalConfig

    paths = corpus(args.files, args.seconds)
    items = [(i, str(p), p.name) for i, p in enumerate(paths)]
    config = MusicHalConfig()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    report: dict = {
        "files": len(paths),
        "audio_s": args.files * args.seconds,
        "load_average_before": os.getloadavg(),
        "ray": ray.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }

    @ray.remote(num_cpus=1)
    def core_task(item, cache_dir):
        out = analyze_batch([item], config=config, perception=make_perception(config), cache_dir=cache_dir)
        return [o.index for o in out]

    def data_fn(batch, cache_dir):
        out = analyze_batch(
            [(int(i), str(p), str(n)) for i, p, n in zip(batch["index"], batch["path"], batch["name"])],
            config=config,
            perception=make_perception(config),
            cache_dir=cache_dir,
        )
        return {"index": [o.index for o in out]}

    try:
        with tempfile.TemporaryDirectory() as tmp:
            ray.get([core_task.remote(items[0], f"{tmp}/warm") for _ in range(2)])  # workers up, numba compiled
            t0 = time.perf_counter()
            running, queue, done = [], list(items), []
            while queue or running:
                while queue and len(running) < 2:
                    running.append(core_task.remote(queue.pop(0), f"{tmp}/core"))
                ready, running = ray.wait(running, num_returns=1)
                done.extend(ray.get(ready[0]))
            core_s = time.perf_counter() - t0
            import ray.data

            t0 = time.perf_counter()
            ds = ray.data.from_items([{"index": i, "path": p, "name": n} for i, p, n in items])
            rows = [
                r["index"]
                for r in ds.map_batches(
                    data_fn, batch_size=1, num_cpus=1, fn_kwargs={"cache_dir": f"{tmp}/data"}
                ).iter_rows()
            ]
            data_s = time.perf_counter() - t0
            report.update(
                {
                    "core_tasks_s": core_s,
                    "ray_data_s": data_s,
                    "ray_data_over_core": data_s / core_s,
                    "core_files": sorted(done) == list(range(len(items))),
                    "data_files": sorted(rows) == list(range(len(items))),
                }
            )
    finally:
        ray.shutdown()
    report["peak_driver_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    report["load_average_after"] = os.getloadavg()
    goals = [
        goal(
            "core tasks (one task per file, 2 in flight)",
            report["core_tasks_s"],
            "report",
            unit="s",
            note=f"{len(paths)} files x {args.seconds:g} s",
        ),
        goal("Ray Data (map_batches, batch_size=1, num_cpus=1)", report["ray_data_s"], "report", unit="s"),
        goal("Ray Data over core tasks, wall time", report["ray_data_over_core"], "report", unit="x"),
        goal("core tasks analysed every file", report["core_files"], "==", True),
        goal("Ray Data analysed every file", report["data_files"], "==", True),
    ]
    return emit(
        "train_engine",
        report,
        goals,
        notes=(
            "Same files, same analyze_batch (decode, front end, segmentation, traditional features, shard written to a "
            "fresh cache) on one local 2-CPU Ray, core tasks first, then Ray Data; workers warmed and numba compiled "
            "before either is timed. No target: the figures decide which engine the trainer uses "
            "(docs/architecture.md). "
            f"pandas {pandas.__version__} and pyarrow {pyarrow.__version__} come from PYTHONPATH (out of the tree)."
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
