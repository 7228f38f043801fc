"""``musichal``: start the whole MusicHal stack (capture → encoder → oracle → midi_out on Ray) with one command."""
from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musichal", description="MusicHal: a real-time AI co-improviser. Listens to audio, learns an Audio Oracle, answers in MIDI/MPE.")
    parser.add_argument("--config", default=None, help="TOML config file")
    parser.add_argument("--list-midi", action="store_true", help="list MIDI output ports and exit")
    parser.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    parser.add_argument("--panic", action="store_true", help="send all-notes-off to the MIDI port and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("musichal: the live stack is not wired yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
