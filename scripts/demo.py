"""The demo: the whole MusicHal stack on the bundled piece, MIDI recorded and rendered so you can listen.

1. renders ``shared/data/demo_piece.mid`` to ``.cache/demo/demo_in.wav`` with fluidsynth (once),
2. starts a JACK dummy server when no audio/MIDI system is running (stopped again at the end),
3. runs ``musichal --input-file demo_in.wav --record demo_out.mid --midi-profile gm-safe --stats``,
4. renders ``demo_out.mid`` to ``demo_out.wav`` with fluidsynth and prints the stats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SOUNDFONTS = [
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/opt/homebrew/share/soundfonts/default.sf2"),
]


def soundfont() -> Path:
    for path in SOUNDFONTS:
        if path.is_file():
            return path
    sys.exit("demo: no General MIDI soundfont found (install fluid-soundfont-gm)")


def render(midi: Path, wav: Path) -> None:
    if shutil.which("fluidsynth") is None:
        sys.exit("demo: fluidsynth is not installed (apt-get install fluidsynth)")
    result = subprocess.run(
        ["fluidsynth", "-ni", "-g", "0.8", "-F", str(wav), "-r", "48000", str(soundfont()), str(midi)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not wav.is_file():
        sys.exit(f"demo: fluidsynth failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="imitate", choices=["imitate", "contrast", "lead"])
    parser.add_argument("--output", default="demo_out.mid", help="where the performance is recorded")
    args = parser.parse_args(argv)

    cache = REPO / ".cache" / "demo"
    cache.mkdir(parents=True, exist_ok=True)
    clip = cache / "demo_in.wav"
    if not clip.is_file():
        print("demo: rendering the bundled piece with fluidsynth ...", flush=True)
        render(REPO / "shared" / "data" / "demo_piece.mid", clip)

    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    jackd = None
    midi_api = "auto"
    if sys.platform.startswith("linux") and shutil.which("jackd"):
        from shared.jack_server import jack_running, start_dummy_jack

        if not jack_running():
            print("demo: starting a JACK dummy server (no audio hardware needed)", flush=True)
            jackd = start_dummy_jack()
        midi_api = "jack"
    output = Path(args.output).resolve()
    try:
        import launch

        code = launch.main(
            [
                "--input-file",
                str(clip),
                "--record",
                str(output),
                "--midi-profile",
                "gm-safe",
                "--midi-api",
                midi_api,
                "--mode",
                args.mode,
                "--stats",
                "--stats-file",
                str(output.with_suffix(".stats.json")),
            ]
        )
    finally:
        from shared.jack_server import stop_jack

        stop_jack(jackd)
    if code != 0:
        return code
    wav = output.with_suffix(".wav")
    render(output, wav)
    print(f"demo: listen to {wav} (MusicHal's answer); the input was {clip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
