"""The benchmarks' one output convention (benchmarks/_common.py) and the page generated from it (report.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common  # noqa: E402
import report  # noqa: E402
import soak  # noqa: E402


def test_goal_met_flags() -> None:
    assert _common.goal("speed", np.float64(25.0), ">=", 20, unit="x")["met"] is True
    assert _common.goal("p99", 16.0, "<=", 15.0, unit="ms")["met"] is False
    assert _common.goal("not measured", None, "<=", 15.0)["met"] is False
    assert _common.goal("nan", float("nan"), "<=", 15.0)["met"] is False
    assert _common.goal("shown", 3.0, "report")["met"] is None
    with pytest.raises(ValueError):
        _common.goal("bad", 1.0, "=>", 2)


def test_emit_prints_and_saves(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    goals = [_common.goal("a", 1, "<=", 2), _common.goal("b", 3, "<=", 2), _common.goal("c", 9, "report")]
    assert _common.emit("demo", {"x": np.arange(2)}, goals, save=True) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert printed == saved
    assert saved["figures"] == {"x": [0, 1]} and saved["met"] is False and saved["unmet"] == ["b"]
    assert {"command", "measured_at", "machine"} <= saved.keys()


def test_report_renders_every_goal_and_checks_staleness(tmp_path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for name, value in (("ring", 25.0), ("soak", 7.9)):
        op, target = (">=", 20.0) if name == "ring" else ("<", 5.0)
        data = {
            "benchmark": name,
            "command": f"python benchmarks/{name}.py",
            "measured_at": "2026-11-30T00:00:00Z",
            "machine": {"load_average_1min_start": 1.0, "load_average_1min_end": 1.5},
            "figures": {},
            "goals": [_common.goal(f"{name} figure", value, op, target, unit="x")],
        }
        data["met"] = data["goals"][0]["met"]
        (results / f"{name}.json").write_text(json.dumps(data))
    out = tmp_path / "benchmarks.md"
    assert report.main(["--results", str(results), "--output", str(out)]) == 0
    text = out.read_text()
    assert "| ring figure | 25x | ≥ 20x | met |" in text
    assert "| soak figure | 7.9x | < 5x | **not met** |" in text
    assert text.index("## ring") < text.index("## soak")
    assert report.main(["--results", str(results), "--output", str(out), "--check"]) == 0
    out.write_text(text + "edited by hand\n")
    assert report.main(["--results", str(results), "--output", str(out), "--check"]) == 1


def _result(name: str, value: float, *, load: tuple[float, float], target: float = 20.0) -> dict:
    goals = [_common.goal(f"{name} figure", value, ">=", target, unit="x"), _common.goal("shown", 3.0, "report")]
    return {
        "benchmark": name,
        "command": f"python benchmarks/{name}.py",
        "measured_at": "2026-12-07T00:00:00Z",
        "machine": {"load_average_1min_start": load[0], "load_average_1min_end": load[1]},
        "figures": {},
        "goals": goals,
        "met": goals[0]["met"],
    }


def test_a_result_taken_above_load_1_5_is_marked_noisy_not_reported_as_the_figure() -> None:
    assert not _common.is_noisy(_result("a", 1.0, load=(0.2, 1.5)))
    assert _common.is_noisy(_result("a", 1.0, load=(0.2, 1.6)))  # the end counts
    assert _common.is_noisy(_result("a", 1.0, load=(36.1, 0.4)))  # and the start
    assert _common.is_noisy({"benchmark": "a"})  # an unknown load is no quiet figure either
    text = report.render(
        [_result("ring", 6.4, load=(0.3, 0.4), target=5.0), _result("features", 1.9, load=(36.1, 42.6), target=3.0)]
    )
    assert "| ring figure | 6.4x | ≥ 5x | met |" in text
    section = text[text.index("## features") :]
    assert "**Noisy:** taken at a 1-minute load of 42.6" in section
    assert "| features figure | (1.9x, noisy) | ≥ 3x | noisy |" in section
    assert "| shown | (3, noisy) | report | — |" in section
    assert "not met" not in section and "| met |" not in section
    summary = text[: text.index("## ring")]
    assert "| 36.1 → 42.6 **noisy** | noisy: not counted |" in summary
    assert "| 0.3 → 0.4 | 1 / 1 |" in summary


def test_a_result_judged_by_the_cpu_other_processes_used_not_by_its_own_load() -> None:
    busy_own_stack = _result("musical", 1.0, load=(0.3, 2.4))
    busy_own_stack["machine"]["foreign_cpu_cores"] = 0.05
    assert not _common.is_noisy(busy_own_stack)  # its own whole stack raised the load: not noise
    shared = _result("musical", 1.0, load=(0.3, 0.4))
    shared["machine"]["foreign_cpu_cores"] = 0.6
    assert _common.is_noisy(shared)
    section = report.render([shared])
    assert "**Noisy:** other processes used 0.6 cores during the run" in section
    assert "| 0.3 → 0.4 (0.6) **noisy** |" in section


def _spin_cpu_seconds(seconds: float) -> str:
    return f"import time\nwhile time.process_time() < {seconds}: pass\nprint(time.process_time())\n"


def test_foreign_cpu_counts_a_process_outside_the_tree_and_not_a_child() -> None:
    clk = _common._CLK_TCK
    # A child of ours (waited for): its CPU lands in this tree's ticks (cutime), so it is not foreign.
    tree0 = _common._tree_ticks(os.getpid())
    child = subprocess.run([sys.executable, "-c", _spin_cpu_seconds(0.3)], capture_output=True, text=True, check=True)
    tree1 = _common._tree_ticks(os.getpid())
    assert tree1 - tree0 >= int(float(child.stdout) * clk) - 1
    # A process outside the tree (double-forked and re-parented to init: this process is no subreaper meanwhile):
    # its CPU is foreign.
    _common.subreaper(False)
    before = _common._process_ticks()
    script = (
        "import os, subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {_spin_cpu_seconds(0.3)!r}], stdout=subprocess.PIPE, "
        "start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    grandchild = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition, bounded: the orphan spins 0.3 s of CPU, then exits
    assert not Path(f"/proc/{grandchild}").exists()
    assert _common.foreign_cpu_ticks(before, _common._process_ticks(), os.getpid()) >= int(0.3 * clk) - 1
    # As a subreaper (as every benchmark runs), the same orphan is re-parented here: its CPU counts as the tree's once
    # reaped, as a Ray worker's does when its raylet was stopped before it.
    assert _common.subreaper(True)
    try:
        own0 = _common._tree_ticks(os.getpid())
        grandchild = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout)
        deadline = time.monotonic() + 60
        while psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling a condition, bounded
        _common._reap_orphans()
        assert _common._tree_ticks(os.getpid()) - own0 >= int(0.3 * clk) - 1
    finally:
        _common.subreaper(False)  # the test process must not collect other tests' orphans


def _emit_at_load(monkeypatch, tmp_path, value: float, load: float) -> None:
    monkeypatch.setattr(_common, "foreign_cpu_cores", lambda start=None: None)  # judged by the load figures
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(_common, "_LOAD_AT_START", load)
    monkeypatch.setattr(_common.os, "getloadavg", lambda: (load, load, load))
    _common.emit("features", {"speedup": value}, [_common.goal("speed-up", value, ">=", 3.0, unit="x")], save=True)


def test_make_bench_never_replaces_a_quiet_result_with_a_noisy_one(tmp_path, monkeypatch, capsys) -> None:
    saved = tmp_path / "features.json"
    _emit_at_load(monkeypatch, tmp_path, 1.9, 40.0)  # noisy, nothing saved before: saved (better than nothing)
    assert json.loads(saved.read_text())["machine"]["noisy"] is True
    _emit_at_load(monkeypatch, tmp_path, 3.8, 0.4)  # quiet replaces noisy
    first = json.loads(saved.read_text())
    assert first["figures"] == {"speedup": 3.8} and first["machine"]["noisy"] is False
    capsys.readouterr()
    _emit_at_load(monkeypatch, tmp_path, 1.2, 6.0)  # noisy does not replace quiet: it goes to noisy/
    assert json.loads(saved.read_text()) == first
    assert json.loads((tmp_path / "noisy" / "features.json").read_text())["figures"] == {"speedup": 1.2}
    assert "kept the quiet result" in capsys.readouterr().err
    report_text = report.render(report.load(tmp_path))  # the noisy/ folder is not part of the page
    assert "3.8x" in report_text and "1.2x" not in report_text
    _emit_at_load(monkeypatch, tmp_path, 4.1, 1.0)  # quiet replaces quiet
    assert json.loads(saved.read_text())["figures"] == {"speedup": 4.1}


def test_report_rejects_foreign_json(tmp_path) -> None:
    (tmp_path / "x.json").write_text('{"not": "a result"}')
    with pytest.raises(SystemExit, match="not a benchmark result"):
        report.load(tmp_path)


def test_docs_page_is_generated_from_the_committed_results() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr


def test_soak_memory_report_separates_the_oracle_data() -> None:
    # oracle: +1 MB/min RSS of which +0.5 MB/min is its own arrays; encoder flat; the first minute is excluded
    samples = [
        {
            "t_s": 30.0 * i,
            "rss_mb": {"oracle": 200.0 + i / 2.0 + (20.0 if i == 0 else 0.0), "encoder": 100.0},
            "oracle_data_mb": 1.0 + i / 4.0,
        }
        for i in range(11)
    ]
    memory = soak.memory_report(samples)
    assert memory["baseline_t_s"] == 60.0
    oracle = memory["actors"]["oracle"]
    assert oracle["rss_mb_baseline"] == 201.0 and oracle["rss_mb_end"] == 205.0
    assert oracle["oracle_data_growth_mb"] == 2.0 and oracle["non_data_growth_mb"] == 2.0
    assert oracle["rss_slope_mb_per_hour"] == pytest.approx(60.0)
    assert oracle["oracle_data_slope_mb_per_hour"] == pytest.approx(30.0)
    assert memory["actors"]["encoder"]["rss_slope_mb_per_hour"] == 0.0
    assert soak.slope_mb_per_hour([0.0, 1.0], [1.0, 2.0]) is None
