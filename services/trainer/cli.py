"""``musichal-train``: learn a model offline from audio files (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from shared.config import MusicHalConfig
from shared.errors import MusicHalError, ParameterError

__all__ = ["build_parser", "main", "config_from_args", "parse_threshold"]

DESCRIPTION = """\
Train a MusicHal model offline from audio files, in parallel on Ray.

Every file goes through the same front end, onset segmenter and feature code as the live system
(traditional 22-D chroma features, or Wav2Vec 2.0 embeddings with --wav2vec). Files are analysed as Ray
tasks (wav2vec: a pool of actors that keep the model loaded, each decoding, segmenting and encoding its
files; with --gpu one per GPU encodes the windows CPU tasks cut); each worker writes the file's features as a
safetensors shard into the cache folder (<output stem>.cache/ unless --cache-dir; on a cluster it must be
a folder every node shares) and returns a small summary, so the driver's memory does not grow with the
corpus. Shards are keyed by file content + feature settings and file hashes by (path, size, mtime), so an
interrupted run resumes without re-analysing or rehashing unchanged files. PCA and the quantizers are
fitted on a deterministic sample of events ([trainer] fit_sample_events), tokens are computed in parallel
tasks and the Audio Oracle is built in corpus order (sorted paths) by numba kernels. Writes <output>
(model.json), its .safetensors arrays, and <stem>.stats.json (timings, which node did which file). The
same corpus and seed give byte-identical model files with any number of workers or nodes, after a resume,
and after a lost worker node (its work is rescheduled; units past --task-timeout are cancelled and run
again, up to [trainer] max_attempts).
A file some worker cannot open is an error naming the file and the node (the model must not depend on
where files landed) unless --skip-unreadable; corrupt, empty or silent files are skipped and listed. If
nothing is usable the exit status is 1 and no model is written.
MIDI files (.mid/.midi, type 0 and 1) are corpora too, alone or mixed with audio: they train the symbolic view
(features of each event's notes: pitch-class set, bass and top pitch, interval classes, span, density,
velocity), the audio files beside them heard through their notes (slice notes when [features] slice_notes is
on, else f0, else chroma classes). A corpus of MIDI files, MIDI files named with --file, or --symbolic choose
it; a --dir that holds audio files trains their audio view as before and leaves the MIDI files in it out (it
says so) unless --symbolic. Note-ons within --chord-window-ms of each other make one
event; channel 10 (drums) is left out unless --midi-drums."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal-train", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", action="append", default=[], help="an audio or MIDI file (repeatable)")
    parser.add_argument(
        "--dir",
        action="append",
        default=[],
        help="a folder searched recursively for wav/flac/ogg/mp3/aiff and mid/midi files",
    )
    parser.add_argument(
        "--output", default="model.json", help="model path (model.json + model.safetensors + model.stats.json)"
    )
    parser.add_argument("--hybrid-perception", action="store_true", help="keep both traditional and wav2vec views")
    parser.add_argument("--wav2vec", action="store_true", help="use Wav2Vec 2.0 features")
    parser.add_argument(
        "--symbolic",
        action="store_true",
        help="learn the symbolic view (features of the notes): with it, MIDI files under --dir are learned beside "
        "audio files (the default for a corpus of MIDI files, or MIDI files given with --file)",
    )
    parser.add_argument(
        "--chord-window-ms",
        type=float,
        default=None,
        help="MIDI note-ons within this many ms of the first make one chord (default [features] chord_window_ms, 30)",
    )
    parser.add_argument("--midi-drums", action="store_true", help="learn MIDI channel 10 (drums) too")
    parser.add_argument("--wav2vec-model", default=None, help="checkpoint name or local directory")
    parser.add_argument("--gpu", action="store_true", help="use a GPU for wav2vec if there is one")
    parser.add_argument("--vocabulary-size", type=int, default=64, help="tokens per quantizer (default 64)")
    parser.add_argument(
        "--threshold", default="auto", help="Audio Oracle distance threshold, or 'auto' (Information Rate)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray workers, one core each: units of work in flight, "
        "thread pools pinned to one thread (default: the cluster's CPUs)",
    )
    parser.add_argument("--ray-address", default=None, help="join an existing Ray cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="TOML config file")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="feature shards + hash index (default: <output stem>.cache/; shared by every node on a cluster)",
    )
    parser.add_argument(
        "--skip-unreadable", action="store_true", help="skip (and list) files a worker cannot open instead of failing"
    )
    parser.add_argument(
        "--task-timeout",
        type=float,
        default=None,
        help="seconds before a unit of work is cancelled and rescheduled (default: [trainer] task_timeout_s)",
    )
    return parser


def parse_threshold(text: str) -> str | float:
    """``'auto'`` or a finite number >= 0."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"--threshold must be 'auto' or a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ParameterError(f"--threshold must be >= 0, got {text!r}")
    return value


def config_from_args(args: argparse.Namespace) -> MusicHalConfig:
    config = MusicHalConfig.from_toml(args.config) if args.config else MusicHalConfig()
    overrides: dict[str, Any] = {"quantizer.vocabulary_size": args.vocabulary_size, "quantizer.seed": args.seed}
    if args.wav2vec and args.symbolic:
        raise ParameterError("--wav2vec and --symbolic are different views: give one")
    if args.wav2vec:
        overrides["features.kind"] = "wav2vec"
    if args.symbolic:
        overrides["features.kind"] = "symbolic"
    if args.chord_window_ms is not None:
        overrides["features.chord_window_ms"] = float(args.chord_window_ms)
    if args.midi_drums:
        overrides["features.midi_drums"] = True
    if args.hybrid_perception:
        overrides["features.hybrid"] = True
    if args.wav2vec_model:
        overrides["wav2vec.model"] = args.wav2vec_model
    if args.gpu:
        overrides["wav2vec.use_gpu"] = True
    if args.skip_unreadable:
        overrides["trainer.skip_unreadable"] = True
    if args.task_timeout is not None:
        if not args.task_timeout > 0:
            raise ParameterError(f"--task-timeout must be > 0, got {args.task_timeout}")
        overrides["trainer.task_timeout_s"] = float(args.task_timeout)
    return config.with_overrides(overrides)


class _Progress:
    """A rich progress bar: files, events, audio-hours/s and ETA (nothing when quiet)."""

    def __init__(self, total_files: int, *, quiet: bool) -> None:
        self.quiet = quiet
        self.events = 0
        self.audio_s = 0.0
        self.started = time.perf_counter()
        if quiet:
            self.progress = None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("analysing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TextColumn("{task.fields[events]} events"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task("files", total=total_files, events=0, rate="")
        self.progress.start()

    def __call__(self, outcome: Any) -> None:
        self.events += outcome.n_events if outcome.ok else 0
        self.audio_s += outcome.duration_s if outcome.ok else 0.0
        if self.progress is not None:
            elapsed = max(1e-9, time.perf_counter() - self.started)
            rate = f"{self.audio_s / 3600.0 / elapsed:.4f} audio-h/s"
            self.progress.update(self.task, advance=1, events=self.events, rate=rate)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_summary(result: Any) -> None:
    """The final table: files, hours, events, vocabulary, threshold/IR, stage times, nodes, skipped files."""
    from rich.console import Console
    from rich.table import Table

    training, stats = result.training, result.stats
    table = Table(title=f"musichal-train → {result.output}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row(
        "files",
        f"{len(training['files'])} used, {len(training['skipped'])} skipped ({stats['cache']['hits']} from cache)",
    )
    table.add_row("audio", f"{training['audio_seconds'] / 3600.0:.4f} h")
    table.add_row("events", str(training["events"]))
    for view, usage in training["vocabulary_usage"].items():
        table.add_row(
            f"vocabulary ({view})",
            f"{usage['used']} used, entropy {usage['entropy_bits']:.2f} bits, perplexity {usage['perplexity']:.1f}",
        )
    table.add_row(
        "threshold",
        f"{training['threshold']:.4g} ({training['threshold_source']}), IR {training['information_rate']:.2f}",
    )
    table.add_row("time per stage", ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in stats["timings"].items()))
    table.add_row("speed", f"{stats['audio_hours_per_hour']:.1f} audio-hours per hour")
    table.add_row(
        "nodes", ", ".join(f"{node[:12] or '?'}: {n} file(s)" for node, n in sorted(stats["files_per_node"].items()))
    )
    for skipped in training["skipped"]:
        table.add_row("skipped", f"{skipped['name']}: {skipped['reason']}")
    for skipped in stats.get("unreadable_skipped", []):
        table.add_row("unreadable", f"{skipped['name']} on node {skipped['node'][:12] or 'local'}")
    Console(stderr=True).print(table)


def _fail_if_nothing_readable(paths: list[Path]) -> None:
    """Raise ParameterError (one line) when no file has a readable audio header or MIDI content; unreadable ones are
    skipped later."""
    from services.encoder.symbolic import read_midi_notes
    from services.trainer.discovery import is_midi
    from shared.audio import probe_audio_file

    reasons = []
    for path in paths:
        try:
            if is_midi(path):
                read_midi_notes(path)
            else:
                probe_audio_file(path)
            return
        except MusicHalError as error:
            if len(reasons) < 3:
                reasons.append(str(error).replace(str(path), path.name))
    raise ParameterError(f"nothing usable to train on ({len(paths)} file(s) skipped: {'; '.join(reasons)})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started_ray = False
    try:
        from services.trainer.discovery import corpus_config, discover_corpus
        from services.trainer.pipeline import train

        threshold = parse_threshold(args.threshold)
        if args.workers is not None and args.workers < 1:
            raise ParameterError(f"--workers must be >= 1, got {args.workers}")
        config = config_from_args(args)
        missing = [name for name in args.file if not Path(name).expanduser().exists()]
        if missing:
            raise ParameterError(f"{missing[0]}: no such file")
        paths, left_out = discover_corpus(args.file, args.dir, symbolic=config.features.kind == "symbolic")
        if left_out and not args.quiet:
            print(
                f"musichal-train: {len(left_out)} MIDI file(s) under --dir left out: the corpus has audio files and "
                "trains their audio view (--symbolic learns the MIDI files too)",
                file=sys.stderr,
            )
        if not paths:
            raise ParameterError(
                "no audio or MIDI files found (give --file or --dir with wav/flac/ogg/mp3/aiff/mid files)"
            )
        config = corpus_config(config, paths)
        _fail_if_nothing_readable(paths)  # header checks only, before Ray starts
        from services.trainer.distributed import ensure_ray, ray_analyze_many, ray_map

        started_ray = ensure_ray(address=args.ray_address, num_cpus=args.workers)
        progress = _Progress(len(paths), quiet=args.quiet)
        try:
            result = train(
                paths,
                config=config,
                output=args.output,
                threshold=threshold,
                cache_dir=args.cache_dir,
                analyze_many=partial(ray_analyze_many, workers=args.workers, gpu=args.gpu),
                progress=progress,
                map_groups=partial(ray_map, config=config, workers=args.workers),
                extra_stats={"workers": args.workers, "ray_address": args.ray_address},
            )
        finally:
            progress.stop()
        if not args.quiet:
            print_summary(result)
        return 0
    except MusicHalError as error:
        print(f"musichal-train: error: {error}", file=sys.stderr)
        return 1
    finally:
        if started_ray:
            import ray

            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
