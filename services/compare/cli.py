"""``musichal-compare``: traditional vs. Wav2Vec perception on the same audio (see ``--help``)."""
from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musichal-compare", description="Compare traditional 22-D and Wav2Vec perception on the same events: speed, vocabulary use, musical information.")
    parser.add_argument("--file", required=False, help="audio file to analyse")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--wav2vec-model", default=None)
    parser.add_argument("--segments", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--reference", default=None, help="MIDI file with the true notes")
    parser.add_argument("--output", default=None, help="results JSON")
    parser.add_argument("--plot", default=None, help="results PNG")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("musichal-compare: not built yet (see issue 'Comparison tool')", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
