"""Bad-input reliability report: run the whole case matrix and print JSON (cases tried / passed, per category).

    .venv/bin/python benchmarks/reliability.py [--verbose] [--no-save]

Goal: every case passes (exit status 1 otherwise).

The matrix is ``testkit/reliability_cases.py`` (WAV damage, channels 1–8, 8–192 kHz, sample formats, non-audio files
with audio names, damaged models, missing MIDI port / audio device / wav2vec model). Device cases need a JACK server
for the MIDI port checks; without one they report the error they get (still a one-line error, so they still pass).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("JACK_NO_START_SERVER", "1")

from _common import emit, goal, strip_no_save  # noqa: E402

from testkit.reliability_cases import all_cases, make_model, run_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every case with its outcome")
    args = parser.parse_args(strip_no_save(argv))
    started = time.perf_counter()
    per_category: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "passed": 0})
    failures, listing = [], []
    with tempfile.TemporaryDirectory(prefix="musichal_reliability_") as tmp:
        folder = Path(tmp)
        model = make_model(folder / "model")
        for index, case in enumerate(all_cases()):
            result = run_case(case, folder / f"case_{index}", model, folder / "model" / "train.wav")
            per_category[case.category]["tried"] += 1
            per_category[case.category]["passed"] += int(result.passed)
            if not result.passed:
                failures.append(
                    {"case": case.id, "expected": case.expect, "outcome": result.outcome, "detail": result.detail}
                )
            if args.verbose:
                listing.append(
                    {"case": case.id, "expected": case.expect, "passed": result.passed, "outcome": result.outcome[:200]}
                )
    report = {
        "cases_tried": sum(v["tried"] for v in per_category.values()),
        "cases_passed": sum(v["passed"] for v in per_category.values()),
        "per_category": dict(per_category),
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.verbose:
        report["cases"] = listing
    goals = [goal("bad-input cases passing", report["cases_passed"], "==", report["cases_tried"], unit="cases")]
    emit("reliability", report, goals)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
