"""The trainer's scale pieces without Ray: the scheduler (fake clock), the hash index, the fitting sample, the
oracle cap and the column path of the oracle."""

from __future__ import annotations

import os

import numpy as np
import pytest

from services.model_file import load_musichal_model
from services.trainer import analysis
from services.trainer.discovery import discover_audio_files
from services.trainer.fitting import sample_rows
from services.trainer.oracle_build import oracle_files
from services.trainer.pipeline import stats_path_for, train
from services.trainer.schedule import Retry, run_units
from shared.config import MusicHalConfig
from shared.errors import ParameterError

CONFIG = MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 8})


class FakeWorkers:
    """Units finish when the test says so; the clock moves only when a wait would block."""

    def __init__(self, hang: dict[str, int], lose: dict[str, int]) -> None:
        self.now = 0.0
        self.hang = dict(hang)  # unit -> attempts that never finish
        self.lose = dict(lose)  # unit -> attempts whose worker is lost
        self.handles: dict[int, tuple[str, str]] = {}  # handle -> (unit, fate)
        self.next = 0
        self.restarted: list[str] = []

    def clock(self) -> float:
        return self.now

    def submit(self, unit: str) -> int:
        fate = "ok"
        if self.hang.get(unit, 0) > 0:
            self.hang[unit] -= 1
            fate = "hang"
        elif self.lose.get(unit, 0) > 0:
            self.lose[unit] -= 1
            fate = "lost"
        self.next += 1
        self.handles[self.next] = (unit, fate)
        return self.next

    def ready(self, handles: list[int], wait_s: float) -> list[int]:
        done = [h for h in handles if self.handles[h][1] != "hang"]
        if not done:
            self.now += wait_s  # nothing finishes: the whole wait elapses
        return done[:1]

    def result(self, handle: int) -> str:
        unit, fate = self.handles[handle]
        if fate == "lost":
            raise Retry("node died")
        return unit.upper()

    def restart(self, handle: int, unit: str) -> int:
        self.restarted.append(unit)
        return self.submit(unit)


def _run(workers: FakeWorkers, units: list[str], max_attempts: int = 3) -> tuple[dict, dict]:
    results: dict[int, str] = {}
    counters = run_units(
        units,
        slots=2,
        submit=workers.submit,
        ready=workers.ready,
        result=workers.result,
        restart=workers.restart,
        on_result=results.__setitem__,
        clock=workers.clock,
        timeout_s=60.0,
        max_attempts=max_attempts,
    )
    return results, counters


def test_a_hung_unit_times_out_and_runs_again_and_a_lost_one_is_resubmitted():
    workers = FakeWorkers(hang={"b": 1}, lose={"c": 1})
    results, counters = _run(workers, ["a", "b", "c", "d"])
    assert results == {0: "A", 1: "B", 2: "C", 3: "D"}
    assert counters == {"timeouts": 1, "lost": 1, "attempts": 6}
    assert sorted(workers.restarted) == ["b", "c"]
    assert workers.now == pytest.approx(60.0)  # the hung unit was given up on at its deadline, not before


def test_a_unit_that_keeps_hanging_fails_the_run_naming_it():
    workers = FakeWorkers(hang={"b": 5}, lose={})
    with pytest.raises(ParameterError, match=r"^b: ran past trainer.task_timeout_s \(60 s\) 2 time\(s\)"):
        _run(workers, ["a", "b"], max_attempts=2)


def test_sample_rows_and_oracle_files_are_deterministic_and_bounded():
    assert sample_rows(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    rows = sample_rows(10**8, 1000, 7)
    assert rows.size == 1000 and np.all(np.diff(rows) > 0) and rows[-1] < 10**8
    assert np.array_equal(rows, sample_rows(10**8, 1000, 7)) and not np.array_equal(rows, sample_rows(10**8, 1000, 8))
    sizes = [10] * 100
    assert oracle_files(sizes, 1000).all()
    keep = oracle_files(sizes, 250)
    assert int(np.dot(keep, sizes)) <= 250 and keep.sum() == 25
    picked = np.flatnonzero(keep)
    assert picked[0] < 10 and picked[-1] >= 90  # spread over the whole corpus, not its first quarter
    with pytest.raises(ParameterError):
        oracle_files([50, 60], 10)


@pytest.fixture
def counted_hashes(monkeypatch):
    calls: list[str] = []
    real = analysis.file_sha256

    def counting(path, **kwargs):
        calls.append(os.path.basename(str(path)))
        return real(path, **kwargs)

    monkeypatch.setattr(analysis, "file_sha256", counting)
    return calls


def test_a_resume_hashes_no_unchanged_file(corpus_dir, tmp_path, counted_hashes):
    paths = discover_audio_files(dirs=[corpus_dir])
    output = tmp_path / "model.json"
    train(paths, config=CONFIG, output=output)
    assert sorted(counted_hashes) == sorted(p.name for p in paths)  # first run: every file once
    first = output.read_bytes()
    counted_hashes.clear()
    result = train(paths, config=CONFIG, output=output)
    assert counted_hashes == [] and result.stats["cache"]["hashed"] == 0
    assert result.stats["cache"]["hits"] == len(paths) and output.read_bytes() == first
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: hashed again, same content
    try:
        result = train(paths, config=CONFIG, output=output)
    finally:
        os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert counted_hashes == [paths[0].name] and result.stats["cache"]["hits"] == len(paths)
    assert output.read_bytes() == first


def test_fitting_sample_and_oracle_cap_are_recorded_and_the_model_loads(corpus_dir, tmp_path):
    paths = discover_audio_files(dirs=[corpus_dir])
    full = train(paths, config=CONFIG, output=tmp_path / "full" / "model.json")
    events = full.training["events"]
    assert full.training["fit_sample_events"] == events and full.training["oracle_files"] == "all"
    assert full.training["states"] == events
    small = CONFIG.with_overrides({"trainer.fit_sample_events": events // 2, "trainer.oracle_max_states": events - 1})
    capped = train(
        paths, config=small, output=tmp_path / "capped" / "model.json", cache_dir=tmp_path / "full" / "model.cache"
    )
    assert capped.stats["cache"]["hits"] == len(paths)
    assert capped.training["fit_sample_events"] == events // 2
    kept = capped.training["oracle_files"]
    assert isinstance(kept, list) and 0 < len(kept) < len(paths)
    sizes = {f["name"]: f["events"] for f in capped.training["files"]}
    assert capped.training["states"] == sum(sizes[n] for n in kept) <= events - 1
    assert sum(capped.training["vocabulary_usage"]["traditional"]["counts"]) == events  # usage: whole corpus
    model = load_musichal_model(tmp_path / "capped" / "model.json")
    assert model.meta["oracle"]["audio"]["n_states"] == capped.training["states"] + 1
    assert stats_path_for(tmp_path / "capped" / "model.json").is_file()


def test_shards_the_driver_cannot_see_stop_the_run_with_the_reason(corpus_dir, tmp_path):
    """Workers that wrote their shards to a node-local folder (not the shared cache): one clear error, no model."""
    from functools import partial

    from services.trainer.pipeline import _serial_analyze

    def node_local(items, *, config, cache_dir, progress, elsewhere):
        return _serial_analyze(items, config=config, cache_dir=str(elsewhere), progress=progress)

    paths = discover_audio_files(dirs=[corpus_dir])
    output = tmp_path / "out" / "model.json"
    with pytest.raises(ParameterError, match="--cache-dir must be a folder every node shares"):
        train(paths, config=CONFIG, output=output, analyze_many=partial(node_local, elsewhere=tmp_path / "node2"))
    assert not output.exists() and not output.with_suffix(".safetensors").exists()


def test_oracle_columns_path_equals_the_descriptor_path_and_rejects_bad_columns_unchanged():
    from services.oracle.memory.audio_oracle import AudioOracle
    from services.trainer.shards import descriptor_columns
    from shared.messages import EventDescriptors

    rng = np.random.default_rng(0)
    n = 400
    frames = rng.normal(size=(4, 4))[rng.integers(0, 4, n)] + 0.1 * rng.normal(size=(n, 4))
    descriptors = [
        EventDescriptors(
            onset_s=0.3 * i,
            duration_s=0.1 + 0.001 * i,
            rms=0.1,
            velocity=1 + i % 127,
            f0_hz=100.0 + i,
            f0_confidence=0.5,
            chroma_peaks=tuple(range(i % 5)),
        )
        for i in range(n)
    ]
    tokens = rng.integers(0, 8, n)
    by_rows, by_columns = AudioOracle(0.5, 4), AudioOracle(0.5, 4)
    by_rows.extend(frames, tokens=tokens, descriptors=descriptors, event_ids=range(n), source="a.wav")
    by_columns.extend(
        frames, tokens=tokens, columns=descriptor_columns(descriptors), event_ids=np.arange(n), source="a.wav"
    )
    (meta_r, arrays_r), (meta_c, arrays_c) = by_rows.to_model_parts(), by_columns.to_model_parts()
    assert meta_r == meta_c and arrays_r.keys() == arrays_c.keys()
    assert all(np.array_equal(arrays_r[k], arrays_c[k]) for k in arrays_r)
    loaded = AudioOracle.from_model_parts(meta_c, arrays_c)
    assert all(np.array_equal(loaded.to_model_parts()[1][k], arrays_c[k]) for k in arrays_c)
    assert loaded.state_info(7).chroma_peaks == descriptors[6].chroma_peaks
    bad = descriptor_columns(descriptors[:3])
    bad["velocity"][1] = 0
    with pytest.raises(ParameterError, match="velocity"):
        by_columns.extend(frames[:3], tokens=tokens[:3], columns=bad, event_ids=np.arange(3))
    assert by_columns.n_states == n + 1 and len(by_columns.states) == n + 1  # nothing was added


def test_two_stages_with_their_own_slots_and_follow_up_units():
    """CPU units (2 slots) each queue an encode unit (1 slot); a lost encode runs again; all finish, in bounds."""
    workers = FakeWorkers(hang={}, lose={"enc-b": 1})
    in_flight = {"cpu": 0, "enc": 0}
    peak = {"cpu": 0, "enc": 0}
    results: dict[int, str] = {}
    units = ["cpu-a", "cpu-b", "cpu-c"]

    def submit(unit):
        in_flight[unit[:3]] += 1
        peak[unit[:3]] = max(peak[unit[:3]], in_flight[unit[:3]])
        return workers.submit(unit)

    def result(handle):
        unit = workers.handles[handle][0]
        in_flight[unit[:3]] -= 1
        return workers.result(handle)

    def restart(handle, unit):
        in_flight[unit[:3]] += 1
        return workers.restart(handle, unit)

    def on_result(index, value):
        results[index] = value
        return [value.lower().replace("cpu", "enc")] if value.startswith("CPU") else None

    counters = run_units(
        units,
        slots={"cpu": 2, "enc": 1},
        pool=lambda unit: unit[:3],
        submit=submit,
        ready=workers.ready,
        result=result,
        restart=restart,
        on_result=on_result,
        clock=workers.clock,
        timeout_s=60.0,
        max_attempts=3,
    )
    assert sorted(results.values()) == ["CPU-A", "CPU-B", "CPU-C", "ENC-A", "ENC-B", "ENC-C"]
    assert units[3:] == ["enc-a", "enc-b", "enc-c"] and counters["lost"] == 1
    assert peak == {"cpu": 2, "enc": 1}


def test_a_total_bound_shares_the_slots_of_both_stages_and_follow_ups_go_first():
    """CPU encoders share the CPUs of the decode stage: at most ``total`` units of any stage are in flight, and an
    encode unit runs before the next queued CPU unit (the windows handed between the stages stay bounded)."""
    workers = FakeWorkers(hang={}, lose={})
    in_flight: list[str] = []
    peak_total = 0
    order: list[str] = []
    units = ["cpu-a", "cpu-b", "cpu-c", "cpu-d"]

    def submit(unit):
        nonlocal peak_total
        in_flight.append(unit)
        order.append(unit)
        peak_total = max(peak_total, len(in_flight))
        return workers.submit(unit)

    def result(handle):
        in_flight.remove(workers.handles[handle][0])
        return workers.result(handle)

    def on_result(index, value):
        return [value.lower().replace("cpu", "enc")] if value.startswith("CPU") else None

    run_units(
        units,
        slots={"cpu": 2, "enc": 2},
        total=2,
        pool=lambda unit: unit[:3],
        submit=submit,
        ready=workers.ready,
        result=result,
        restart=workers.restart,
        on_result=on_result,
        clock=workers.clock,
        timeout_s=60.0,
        max_attempts=3,
    )
    assert peak_total == 2
    assert order == ["cpu-a", "cpu-b", "enc-a", "enc-b", "cpu-c", "cpu-d", "enc-c", "enc-d"]
