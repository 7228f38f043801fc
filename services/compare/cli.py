"""``musichal-compare``: traditional vs. Wav2Vec perception on the same audio (see ``--help`` and docs/compare.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "render_report"]

HOW_TO_PROVIDE = (
    "musichal-compare: to compare offline, save a checkpoint once on a machine with network access "
    '(python -c "from transformers import Wav2Vec2Model, Wav2Vec2FeatureExtractor as F; '
    "m='facebook/wav2vec2-base'; Wav2Vec2Model.from_pretrained(m).save_pretrained('w2v'); "
    "F.from_pretrained(m).save_pretrained('w2v')\") and pass --wav2vec-model /path/to/w2v"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal-compare",
        description="Compare traditional 22-D and Wav2Vec perception on the same events: speed, vocabulary use, "
        "musical information.",
    )
    parser.add_argument("--file", required=False, help="audio file to analyse")
    parser.add_argument("--gpu", action="store_true", help="run wav2vec on a GPU if there is one")
    parser.add_argument(
        "--wav2vec-model", default=None, help="checkpoint name or local directory (default facebook/wav2vec2-base)"
    )
    parser.add_argument("--segments", type=int, default=None, help="analyse at most this many events")
    parser.add_argument("--duration", type=float, default=None, help="analyse at most the first S seconds")
    parser.add_argument("--reference", default=None, help="MIDI file with the true notes")
    parser.add_argument("--output", default=None, help="results JSON")
    parser.add_argument("--plot", default=None, help="results PNG")
    parser.add_argument(
        "--vocabulary-size", type=int, default=16, help="tokens per view for the usage figures (default 16)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the quantizers and probe folds")
    parser.add_argument("--config", default=None, help="TOML config file (segmenter, wav2vec layer, cluster deadline)")
    parser.add_argument("--quiet", action="store_true", help="print only the recommendations")
    return parser


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def render_report(results: Mapping[str, Any], *, quiet: bool = False, file: Any = None) -> None:
    """Print the measured figures and the recommendations as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=140)
    pipes, probes = results["pipelines"], results["probes"]
    if not quiet:
        table = Table(
            title=f"{results['input']['file']}: {results['input']['events']} events, "
            f"{results['input']['audio_seconds']:.1f} s ({results['input']['segmentation']})"
        )
        table.add_column("figure")
        table.add_column("traditional", justify="right")
        table.add_column("wav2vec", justify="right")
        rows = [
            ("device", lambda p: p["device"]),
            ("dimension", lambda p: str(p["dimension"])),
            ("load + warm-up (s)", lambda p: _fmt(p["load_seconds"])),
            (
                "per window mean / p50 / p95 (ms)",
                lambda p: f"{p['timing']['mean_ms']:.2f} / {p['timing']['p50_ms']:.2f} / {p['timing']['p95_ms']:.2f}",
            ),
            ("real-time factor (single)", lambda p: _fmt(p["timing"]["real_time_factor"], ".4f")),
            (
                "batched per window (ms) / speed-up",
                lambda p: (
                    "—"
                    if not p["batch"]
                    else f"{p['batch']['per_window_ms']:.2f} / {_fmt(p['batch']['speedup_vs_single'], '.1f')}×"
                ),
            ),
            ("model memory (MB)", lambda p: _fmt(p["memory"].get("model_bytes", 0) / 1e6, ".1f")),
            ("peak RSS (MB)", lambda p: _fmt(p["memory"]["peak_rss_bytes"] / 1e6, ".0f")),
            (
                "variance mean / dead dims",
                lambda p: f"{p['features']['variance_mean']:.3g} / {p['features']['dead_dimensions']}",
            ),
            ("sparsity", lambda p: _fmt(p["features"]["sparsity"], ".2f")),
            (
                "tokens used / entropy (bits)",
                lambda p: (
                    f"{p['vocabulary']['used']}/{p['vocabulary']['vocabulary_size']} / "
                    f"{p['vocabulary']['entropy_bits']:.2f}" + (" COLLAPSE" if p["vocabulary"]["collapse"] else "")
                ),
            ),
        ]
        for name, get in rows:
            table.add_row(name, get(pipes["traditional"]), get(pipes["wav2vec"]))
        table.add_row(
            f"pitch-class probe accuracy ({probes['pitch_class']['label_source']})",
            _fmt(probes["pitch_class"]["traditional"]["accuracy"], ".2f"),
            _fmt(probes["pitch_class"]["wav2vec"]["accuracy"], ".2f"),
        )
        table.add_row(
            f"consonance probe R² ({probes['consonance']['target_source']})",
            _fmt(probes["consonance"]["traditional"]["r2"], ".2f"),
            _fmt(probes["consonance"]["wav2vec"]["r2"], ".2f"),
        )
        console.print(table)
    rec = Table(title="Recommendations (derived from the figures above)")
    rec.add_column("criterion")
    rec.add_column("choice", style="bold")
    rec.add_column("why")
    for row in results["recommendations"]:
        rec.add_row(row["criterion"], row["choice"], row["reason"])
    console.print(rec)
    for warning in results["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.file:
        print("musichal-compare: --file is required (an audio file to analyse)", file=sys.stderr)
        return 2
    from shared.config import MusicHalConfig
    from shared.errors import DeviceError, MusicHalError

    try:
        import orjson

        from services.compare.comparison import run_comparison
        from services.compare.schema import validate

        config = MusicHalConfig.from_toml(args.config) if args.config else MusicHalConfig()
        results = run_comparison(
            args.file,
            config=config,
            wav2vec_model=args.wav2vec_model,
            use_gpu=args.gpu,
            segments=args.segments,
            duration_s=args.duration,
            reference=args.reference,
            vocabulary_size=args.vocabulary_size,
            seed=args.seed,
        )
        validate(results)
        render_report(results, quiet=args.quiet)
        if args.output:
            Path(args.output).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
            print(f"results: {args.output}")
        if args.plot:
            from services.compare.plots import plot_results

            plot_results(results, args.plot)
            print(f"plot: {args.plot}")
    except DeviceError as error:
        print(f"musichal-compare: {error}", file=sys.stderr)
        print(HOW_TO_PROVIDE, file=sys.stderr)
        return 1
    except MusicHalError as error:
        print(f"musichal-compare: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
