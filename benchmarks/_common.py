"""The one output convention every benchmark follows (``make bench`` and ``benchmarks/report.py`` rely on it).

A benchmark measures, then calls :func:`emit` once with its figures and its goals::

    from _common import emit, goal          # benchmarks/ is on sys.path when a script runs

    figures = {"ring_samples_per_s": 3.5e8, ...}
    goals = [goal("ring vs Queue, same batching", figures["speedup_batched"], ">=", 20, unit="x")]
    sys.exit(emit("ring", figures, goals))

:func:`emit` prints ONE JSON object on stdout and writes the same object to ``benchmarks/results/<name>.json`` (the
single source ``benchmarks/report.py`` turns into docs/benchmarks.md)::

    {"benchmark": "ring", "command": "python benchmarks/ring.py ...", "measured_at": "...Z",
     "machine": {"cpu_count": 2, "load_average_1min_start": 1.2, "load_average_1min_end": 1.4},
     "figures": {...}, "goals": [{"label": ..., "value": ..., "op": ">=", "target": 20, "unit": "x", "met": true}],
     "met": true, "unmet": []}

``met`` is true when every goal with a target is met. A goal with ``op="report"`` has no target: the figure is shown
in the report (``met`` is ``null`` for it) and never fails. A value of ``None`` (not measured) counts as not met.
Unmet goals do not change the exit status (a benchmark that ran is a result, not a failure); a crash does, and
``make bench`` stops on it. Pass ``--no-save`` to a script (or set ``MUSICHAL_BENCH_NO_SAVE=1``) to print only.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import operator
import os
import shlex
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_LOAD_AT_START = round(os.getloadavg()[0], 2)


def goal(label: str, value: Any, op: str, target: Any = None, *, unit: str = "", note: str = "") -> dict:
    """One goal: ``value op target`` (e.g. ``goal("ring p99", 0.2, "<=", 1.0, unit="ms")``); ``op="report"`` shows a
    figure without a target."""
    if op != "report" and op not in _OPS:
        raise ValueError(f"goal {label!r}: op must be one of {sorted(_OPS)} or 'report', not {op!r}")
    value = _plain(value)
    if op == "report":
        met = None
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        met = False
    else:
        met = bool(_OPS[op](value, target))
    out = {"label": label, "value": value, "op": op, "target": target, "unit": unit, "met": met}
    if note:
        out["note"] = note
    return out


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples → JSON-native values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def command_line() -> str:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in [str(script), *sys.argv[1:]] if a != "--no-save")


def wants_save(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--no-save" not in argv and os.environ.get("MUSICHAL_BENCH_NO_SAVE", "") in ("", "0")


def strip_no_save(argv: list[str] | None = None) -> list[str]:
    """The script's arguments without ``--no-save`` (for argparse)."""
    return [a for a in (sys.argv[1:] if argv is None else argv) if a != "--no-save"]


def emit(name: str, figures: dict, goals: list[dict], *, notes: str = "", save: bool | None = None,
         indent: int | None = 2) -> int:
    """Print the benchmark's JSON (figures + goals + ``met``) and save it to ``benchmarks/results/<name>.json``.

    Returns 0 (the exit status for ``sys.exit``): unmet goals are reported in the JSON, not as a failure."""
    checked = [g for g in goals if g["met"] is not None]
    report = {
        "benchmark": name,
        "command": command_line(),
        "measured_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu_count": os.cpu_count(), "load_average_1min_start": _LOAD_AT_START,
                    "load_average_1min_end": round(os.getloadavg()[0], 2)},
        "figures": _plain(figures),
        "goals": goals,
        "met": all(g["met"] for g in checked),
        "unmet": [g["label"] for g in checked if not g["met"]],
    }
    if notes:
        report["notes"] = notes
    text = json.dumps(report, indent=indent, default=str)
    print(text, flush=True)
    if wants_save() if save is None else save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{name}.json").write_text(text + "\n")
    return 0
