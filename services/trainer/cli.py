"""``musichal-train``: learn a model offline from audio files (see ``--help``)."""
from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musichal-train", description="Train a MusicHal model (Audio Oracle + quantizers) offline from audio files, in parallel on Ray.")
    parser.add_argument("--file", action="append", default=[], help="an audio file (repeatable)")
    parser.add_argument("--dir", action="append", default=[], help="a folder searched recursively for wav/flac/ogg/mp3/aiff")
    parser.add_argument("--output", default="model.json", help="model path (model.json + model.safetensors + model.stats.json)")
    parser.add_argument("--hybrid-perception", action="store_true", help="keep both traditional and wav2vec views")
    parser.add_argument("--wav2vec", action="store_true", help="use Wav2Vec 2.0 features")
    parser.add_argument("--wav2vec-model", default=None, help="checkpoint name or local directory")
    parser.add_argument("--gpu", action="store_true", help="use a GPU for wav2vec if there is one")
    parser.add_argument("--vocabulary-size", type=int, default=64, help="tokens per quantizer (default 64)")
    parser.add_argument("--threshold", default="auto", help="Audio Oracle distance threshold, or 'auto' (Information Rate)")
    parser.add_argument("--workers", type=int, default=None, help="Ray workers (default: CPUs)")
    parser.add_argument("--ray-address", default=None, help="join an existing Ray cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="TOML config file")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print("musichal-train: the trainer is not built yet (see issue 'The trainer')", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
