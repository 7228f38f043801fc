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

A run during which processes outside the benchmark's own process tree used more than :data:`NOISY_FOREIGN_CPU` cores
(``machine.foreign_cpu_cores``: the CPU /proc charges to every other process, :func:`foreign_cpu_ticks`) is *noisy*
(``machine.noisy``): the CPU was shared, so its figures say little about the code. (The 1-minute load average is
recorded too, but a benchmark that runs a whole stack raises it by itself; results older than the foreign-CPU figure
are judged by it: above :data:`NOISY_LOAD` at start or end is noisy.) A noisy run never replaces a
quiet one: it is saved to ``benchmarks/results/noisy/<name>.json`` instead (delete the quiet file to accept it).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import operator
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_LOAD_AT_START = round(os.getloadavg()[0], 2)
#: A result that recorded no foreign CPU (older results) is noisy at a higher 1-minute load average (start or end).
NOISY_LOAD = 1.5
#: A run during which processes outside the benchmark's own process tree used more CPU than this (in cores, mean over
#: the run) is noisy. The benchmark's own work (a whole stack on 2 cores) raises the load average by itself, so the load
#: average alone cannot tell a busy benchmark from a shared machine; this can.
NOISY_FOREIGN_CPU = 0.25
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree_ticks(root: int) -> int | None:
    """CPU ticks used by ``root`` and every live descendant, each with its reaped children (utime, stime, cutime,
    cstime): every process of the tree counted once, whether it still runs or has been waited for by a tree member."""
    snapshot = _process_ticks()
    if snapshot is None or root not in {pid for pid, _started in snapshot}:
        return None
    tree = _tree_pids(snapshot, root)
    return sum(ticks for (pid, _started), (_ppid, ticks) in snapshot.items() if pid in tree)


def _tree_pids(snapshot: dict[tuple[int, int], tuple[int, int]], root: int) -> set[int]:
    """``root`` and every descendant of it in a :func:`_process_ticks` snapshot."""
    children: dict[int, list[int]] = {}
    for (pid, _started), (ppid, _ticks) in snapshot.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


def subreaper(on: bool) -> bool:
    """Linux: make this process the *subreaper* of its descendants (``on``) or not. A descendant orphaned while the
    benchmark runs (a Ray worker whose raylet was stopped first) is then re-parented to this process instead of init,
    so its CPU stays in this tree's figures (counted once reaped: :func:`_reap_orphans`). Returns whether it took."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1 if on else 0, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans() -> None:
    """Wait for every child that has ended (orphans re-parented to this subreaper included): their CPU then counts
    in this process's cutime/cstime. Called when a result is emitted, after the benchmark's own waits."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _process_ticks() -> dict[tuple[int, int], tuple[int, int]] | None:
    """Every process now: ``(pid, start time) -> (ppid, utime + stime + cutime + cstime)`` in clock ticks (the start
    time tells a reused pid apart)."""
    out: dict[tuple[int, int], tuple[int, int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        rest = text[text.rindex(")") + 2 :].split()
        out[(int(entry), int(rest[19]))] = (int(rest[1]), sum(int(v) for v in rest[11:15]))
    return out


def foreign_cpu_ticks(start: dict, end: dict, root: int) -> int:
    """CPU ticks that processes outside ``root``'s tree used between two :func:`_process_ticks` snapshots.

    Each process alive at the end and outside the tree counts its growth (its own time and its reaped children's);
    a process that ended meanwhile is in the cutime of the ancestor that reaped it, with its whole life, so what it
    had used before ``start`` is taken off again. Kernel time no process is charged with (softirq) is not counted."""
    tree = _tree_pids(end, root)
    grown = sum(ticks - start.get(key, (0, 0))[1] for key, (_ppid, ticks) in end.items() if key[0] not in tree)
    gone = sum(ticks for key, (_ppid, ticks) in start.items() if key not in end and key[0] != root)
    return max(0, grown - gone)


if Path(sys.argv[0]).resolve().parent == Path(__file__).resolve().parent:  # a benchmark script run as itself (not
    subreaper(True)  # imported by the tests, whose process must not collect other tests' orphans)
_CPU_AT_START = (time.monotonic(), _process_ticks())


def foreign_cpu_cores(start: tuple[float, dict | None] | None = None) -> float | None:
    """Mean CPU (in cores) that processes outside this process's tree used since ``start`` (default: since this
    module was imported; :func:`foreign_cpu_ticks`). None where /proc cannot tell."""
    t0, ticks0 = _CPU_AT_START if start is None else start
    _reap_orphans()
    t1, ticks1 = time.monotonic(), _process_ticks()
    if ticks0 is None or ticks1 is None or t1 <= t0:
        return None
    return round(foreign_cpu_ticks(ticks0, ticks1, os.getpid()) / _CLK_TCK / (t1 - t0), 3)


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


def run_load(result: dict) -> float | None:
    """The higher of a result's 1-minute load averages at its start and end (None when it recorded neither)."""
    machine = result.get("machine") or {}
    loads = [machine.get(k) for k in ("load_average_1min_start", "load_average_1min_end")]
    loads = [float(v) for v in loads if isinstance(v, (int, float))]
    return max(loads) if loads else None


def is_noisy(result: dict) -> bool:
    """True when other processes used more than :data:`NOISY_FOREIGN_CPU` cores during the run
    (``machine.foreign_cpu_cores``); for an older result that recorded no foreign CPU, when it was taken at a 1-minute
    load above :data:`NOISY_LOAD` (or its load is unknown).

    A benchmark that loads the machine on purpose (``machine.loaded_by_design``: it counts what is delivered beside a
    busy process, no timing goal) is never noisy."""
    machine = result.get("machine") or {}
    if machine.get("loaded_by_design"):
        return False
    foreign = machine.get("foreign_cpu_cores")
    if isinstance(foreign, (int, float)):
        return foreign > NOISY_FOREIGN_CPU
    load = run_load(result)
    return load is None or load > NOISY_LOAD


def save_result(report: dict, text: str | None = None, *, results_dir: Path | None = None) -> Path:
    """Write ``report`` (as ``text`` when given) to ``<results_dir>/<name>.json``, unless it is noisy and a quiet
    result is already there: then to ``<results_dir>/noisy/<name>.json`` (a line on stderr says so). Returns the path
    written."""
    results_dir = RESULTS_DIR if results_dir is None else results_dir
    text = json.dumps(report, indent=2, default=str) if text is None else text
    target = results_dir / f"{report['benchmark']}.json"
    if is_noisy(report) and target.exists():
        try:
            kept = json.loads(target.read_text())
        except (OSError, ValueError):
            kept = None
        if isinstance(kept, dict) and not is_noisy(kept):
            noisy_target = results_dir / "noisy" / target.name
            noisy_target.parent.mkdir(parents=True, exist_ok=True)
            noisy_target.write_text(text + "\n")
            print(
                f"{report['benchmark']}: load {run_load(report)} > {NOISY_LOAD}, a noisy run: kept the quiet result "
                f"of {kept.get('measured_at')} in {target}; this run is in {noisy_target}",
                file=sys.stderr,
            )
            return noisy_target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")
    return target


def emit(
    name: str,
    figures: dict,
    goals: list[dict],
    *,
    notes: str = "",
    save: bool | None = None,
    indent: int | None = 2,
    loaded_by_design: bool = False,
) -> int:
    """Print the benchmark's JSON (figures + goals + ``met``) and save it to ``benchmarks/results/<name>.json``.

    Returns 0 (the exit status for ``sys.exit``): unmet goals are reported in the JSON, not as a failure. A noisy run
    (load above :data:`NOISY_LOAD`) does not replace a quiet saved one (:func:`save_result`)."""
    checked = [g for g in goals if g["met"] is not None]
    machine = {
        "cpu_count": os.cpu_count(),
        "load_average_1min_start": _LOAD_AT_START,
        "load_average_1min_end": round(os.getloadavg()[0], 2),
        "foreign_cpu_cores": foreign_cpu_cores(),
    }
    if loaded_by_design:
        machine["loaded_by_design"] = True
    machine["noisy"] = is_noisy({"machine": machine})
    report = {
        "benchmark": name,
        "command": command_line(),
        "measured_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
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
        save_result(report, text)
    return 0
