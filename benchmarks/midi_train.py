"""Training from MIDI at corpus size: prints ONE JSON object (``benchmarks/_common.emit``) and saves it to
benchmarks/results/midi_train.json.

* Corpus: the first ``--files`` Bach pieces of music21's corpus (chorales mostly), exported once with music21
  (type 1 MIDI files: a tempo track and one track per part) into ``--corpus-dir`` (default: the temp dir) and reused.
* ``musichal-train``'s own path (``train`` with the Ray fan-out, as the CLI runs it) on one local Ray with 2 CPUs,
  1 and 2 workers interleaved (``--rounds``), each run on a fresh cache: files/s and notes/s (note-ons read, drums
  left out) of the fastest run of each; goal: the two models byte-identical (every round).

Run: ``.venv/bin/python benchmarks/midi_train.py [--files 300 --rounds 1]`` (export ~3 minutes the first time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def export_corpus(folder: Path, files: int) -> list[Path]:
    """The first ``files`` Bach pieces as MIDI files in ``folder`` (exported once; a piece music21 cannot parse or
    write is left out)."""
    from music21 import corpus

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sorted(corpus.getComposer("bach"), key=str):
        if len(out) >= files:
            break
        target = folder / (Path(source).stem + ".mid")
        if not target.exists():
            try:
                corpus.parse(str(source)).write("midi", fp=str(target))
            except Exception:  # noqa: BLE001 - a piece the exporter cannot handle is simply not in the corpus
                continue
        out.append(target)
    return out


def count_notes(paths: list[Path]) -> int:
    from services.encoder.symbolic import DRUM_CHANNEL, read_midi_notes

    total = 0
    for path in paths:
        try:
            messages, _ = read_midi_notes(path)
        except Exception:  # noqa: BLE001 - a corrupt file counts no notes (the trainer skips it)
            continue
        total += sum(1 for _, kind, _, _, channel in messages if kind == "on" and channel != DRUM_CHANNEL)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--corpus-dir", default=os.path.join(tempfile.gettempdir(), "musichal-bach-midi"))
    args = parser.parse_args(strip_no_save(argv))

    t0 = time.perf_counter()
    paths = export_corpus(Path(args.corpus_dir), args.files)
    export_s = time.perf_counter() - t0
    notes = count_notes(paths)

    import ray

    from services.trainer.distributed import ensure_ray, ray_analyze_many, ray_map
    from services.trainer.pipeline import train
    from shared.config import MusicHalConfig

    config = MusicHalConfig().with_overrides({"features.kind": "symbolic"})
    ensure_ray(num_cpus=2)
    work = Path(tempfile.mkdtemp(prefix="musichal-midi-train-"))
    runs: dict[int, list[float]] = {1: [], 2: []}
    identical = True
    events = skipped = 0
    try:
        for round_index in range(args.rounds):
            models = {}
            for workers in (1, 2):
                output = work / f"r{round_index}w{workers}" / "model.json"
                start = time.perf_counter()
                result = train(
                    paths,
                    config=config,
                    output=output,
                    analyze_many=partial(ray_analyze_many, workers=workers, gpu=False),
                    map_groups=partial(ray_map, config=config, workers=workers),
                )
                runs[workers].append(time.perf_counter() - start)
                events, skipped = result.training["events"], len(result.training["skipped"])
                models[workers] = output.read_bytes() + output.with_suffix(".safetensors").read_bytes()
            identical = identical and models[1] == models[2]
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    best = {workers: min(times) for workers, times in runs.items()}
    figures = {
        "files": len(paths),
        "files_skipped": skipped,
        "notes": notes,
        "events": events,
        "export_s": round(export_s, 2),
        "wall_s_1_worker": round(best[1], 2),
        "wall_s_2_workers": round(best[2], 2),
        "files_per_s_1_worker": round(len(paths) / best[1], 2),
        "files_per_s_2_workers": round(len(paths) / best[2], 2),
        "notes_per_s_1_worker": round(notes / best[1], 1),
        "notes_per_s_2_workers": round(notes / best[2], 1),
        "byte_identical_1_vs_2_workers": identical,
    }
    goals = [
        goal("1 and 2 workers write byte-identical models", identical, "==", True),
        goal("files/s, 2 workers", figures["files_per_s_2_workers"], "report", unit="files/s"),
        goal("notes/s, 2 workers", figures["notes_per_s_2_workers"], "report", unit="notes/s"),
    ]
    return emit("midi_train", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
