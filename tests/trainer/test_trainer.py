"""musichal-train end to end: determinism over workers and re-runs, resume from cache, bad files, wav2vec, live
parity."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from services.capture.stage import CaptureStage
from services.encoder.stage import EncoderStage
from services.encoder.views import HybridPerceptionModule
from services.model_file import load_musichal_model
from services.oracle.memory.store import OracleMemory
from services.trainer.cli import main, parse_threshold
from services.trainer.discovery import corpus_names, discover_audio_files
from services.trainer.pipeline import stats_path_for, train
from services.trainer.shards import FeatureCache
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.ring import AudioRing

VOCAB = "8"


def _bytes(output: Path) -> tuple[bytes, bytes]:
    return output.read_bytes(), output.with_suffix(".safetensors").read_bytes()


def _stats(output: Path) -> dict:
    return json.loads(stats_path_for(output).read_text())


def _train(corpus: Path, output: Path, *extra: str) -> int:
    return main(["--dir", str(corpus), "--output", str(output), "--vocabulary-size", VOCAB, "--quiet", *extra])


@pytest.fixture(scope="module")
def traditional_runs(ray_module, corpus_dir, tmp_path_factory):
    """The corpus trained with 1 and 2 workers (separate outputs and caches)."""
    root = tmp_path_factory.mktemp("runs")
    outputs = {}
    for workers in (1, 2):
        outputs[workers] = root / f"w{workers}" / "model.json"
        assert _train(corpus_dir, outputs[workers], "--workers", str(workers)) == 0
    return outputs


@pytest.mark.ray
def test_one_and_two_workers_and_a_rerun_give_identical_bytes(traditional_runs, corpus_dir):
    one, two = traditional_runs[1], traditional_runs[2]
    assert _bytes(one) == _bytes(two)
    assert _stats(one)["cache"]["hits"] == 0
    first = _bytes(one)
    assert _train(corpus_dir, one, "--workers", "2") == 0  # re-run: everything from the cache, same bytes
    assert _bytes(one) == first
    files = len(discover_audio_files(dirs=[corpus_dir]))
    assert _stats(one)["cache"] == {
        "directory": str(one.with_name("model.cache")),
        "hits": files,
        "misses": 0,
        "hashed": 0,
    }
    # the serial, Ray-free path computes the same model
    serial = one.parent.parent / "serial" / "model.json"
    config = MusicHalConfig().with_overrides({"quantizer.vocabulary_size": int(VOCAB)})
    train(discover_audio_files(dirs=[corpus_dir]), config=config, output=serial)
    assert _bytes(serial) == first


@pytest.mark.ray
def test_model_records_what_live_needs(traditional_runs, corpus_dir):
    model = load_musichal_model(traditional_runs[1])
    training = model.meta["training"]
    names = corpus_names(discover_audio_files(dirs=[corpus_dir]))
    assert [f["name"] for f in training["files"]] == names and "sub/take2.wav" in names
    assert all(len(f["sha256"]) == 64 and f["events"] > 0 for f in training["files"])
    assert training["events"] == sum(f["events"] for f in training["files"])
    assert training["threshold_source"] == "ir" and training["threshold"] > 0
    assert training["threshold"] == pytest.approx(max(training["ir_curve"], key=lambda r: r[1])[0])
    usage = training["vocabulary_usage"]["traditional"]
    assert usage["used"] > 2 and sum(usage["counts"]) == training["events"]
    assert model.meta["perception"]["segmenter"]["window_ms"] == MusicHalConfig().segmenter.window_ms
    stage = OracleMemory(MusicHalConfig(), model=model.oracle_parts)
    assert stage.trained and stage.audio.n_states - 1 == training["events"] == stage.tokens.n_states - 1
    assert stage.audio.threshold == training["threshold"]
    sources = [stage.audio.state_info(s).source for s in range(1, stage.audio.n_states)]
    assert sources == [f["name"] for f in training["files"] for _ in range(f["events"])]  # corpus order
    assert "timings" not in json.dumps(model.meta)


@pytest.mark.ray
def test_interrupted_run_resumes_from_the_cache(ray_module, corpus_dir, traditional_runs, tmp_path):
    paths = discover_audio_files(dirs=[corpus_dir])
    cache = tmp_path / "cache"
    part = tmp_path / "part" / "model.json"
    # a run that stopped after two files left their features in the cache
    assert (
        main(
            [
                "--file",
                str(paths[0]),
                "--file",
                str(paths[1]),
                "--output",
                str(part),
                "--cache-dir",
                str(cache),
                "--vocabulary-size",
                VOCAB,
                "--quiet",
            ]
        )
        == 0
    )
    assert len(list(cache.glob("*.safetensors"))) == 2
    full = tmp_path / "full" / "model.json"
    assert _train(corpus_dir, full, "--cache-dir", str(cache)) == 0
    files = {f["name"]: f for f in _stats(full)["files"]}
    names = corpus_names(paths)
    assert [files[n]["from_cache"] for n in names] == [True, True] + [False] * (len(names) - 2)
    assert _stats(full)["cache"]["hits"] == 2
    assert _bytes(full) == _bytes(traditional_runs[1])  # resuming changes nothing in the model


def test_feature_cache_round_trip_and_truncated_entries(corpus_dir, tmp_path):
    from services.trainer.analysis import analyze_path, feature_settings, make_perception

    config = MusicHalConfig()
    perception = make_perception(config)
    settings = feature_settings(config, perception)
    path = discover_audio_files(dirs=[corpus_dir])[0]
    direct = analyze_path(path, index=0, name="a", config=config, perception=perception, settings=settings, cache=None)
    cache = FeatureCache(tmp_path)
    fresh = analyze_path(path, index=0, name="a", config=config, perception=perception, settings=settings, cache=cache)
    again = analyze_path(path, index=0, name="a", config=config, perception=perception, settings=settings, cache=cache)
    assert fresh.ok and not fresh.from_cache and again.from_cache
    assert not fresh.views and not again.views  # a worker returns a summary; the features are in the shard
    assert fresh.n_events == again.n_events == direct.n_events > 0
    loaded = cache.load(fresh.key)
    assert loaded.descriptors == direct.descriptors
    assert np.array_equal(loaded.views["traditional"], direct.views["traditional"])
    # other segmentation settings give another key (no stale features)
    other = MusicHalConfig().with_overrides({"segmenter.window_ms": 250.0})
    assert feature_settings(other, perception) != settings
    shard = cache.path(fresh.key)
    shard.write_bytes(shard.read_bytes()[:-10])  # a truncated copy reads as absent, and is analysed again
    assert cache.load(fresh.key) is None and fresh.key not in cache
    redo = analyze_path(path, index=0, name="a", config=config, perception=perception, settings=settings, cache=cache)
    assert not redo.from_cache and fresh.key in cache


@pytest.mark.ray
def test_corrupt_and_empty_files_are_skipped_and_reported(ray_module, corpus_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(corpus_dir, bad)
    (bad / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    sf.write(bad / "empty.wav", np.zeros(0, dtype=np.float32), 48000)
    sf.write(bad / "silence.flac", np.zeros(48000, dtype=np.float32), 48000)
    output = tmp_path / "out" / "model.json"
    assert main(["--dir", str(bad), "--output", str(output), "--vocabulary-size", VOCAB]) == 0
    skipped = {s["name"]: s["reason"] for s in load_musichal_model(output).meta["training"]["skipped"]}
    assert set(skipped) == {"corrupt.wav", "empty.wav", "silence.flac"}
    assert skipped["silence.flac"] == "no onsets found" and "no audio frames" in skipped["empty.wav"]
    err = capsys.readouterr().err
    assert "corrupt.wav" in err and "skipped" in err  # the summary table lists them
    # nothing usable: exit non-zero, one clear line, no model file
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    shutil.copy(bad / "corrupt.wav", only_bad / "corrupt.wav")
    nothing = tmp_path / "nothing" / "model.json"
    assert main(["--dir", str(only_bad), "--output", str(nothing), "--quiet"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "nothing usable" in lines[0] and "corrupt.wav" in lines[0]
    assert not nothing.exists() and not nothing.with_suffix(".safetensors").exists()


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["--dir", str(tmp_path / "missing"), "--quiet"]) == 1
    assert main(["--file", str(tmp_path / "x.wav"), "--threshold", "-1", "--quiet"]) == 1
    assert main(["--dir", str(tmp_path), "--quiet"]) == 1  # an empty folder: no audio files
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("musichal-train: error:") for line in err)
    assert parse_threshold("auto") == "auto" and parse_threshold("0.5") == 0.5
    with pytest.raises(ParameterError):
        parse_threshold("often")


def _live_tokens(path: Path, config: MusicHalConfig, encoder: EncoderStage) -> list[int]:
    """The live path: 256-frame device blocks → CaptureStage (front end, ring, segmenter) → EncoderStage. The live
    segmenter's early views (influence only, analysed by the oracle) are skipped, as the encoder actor skips them."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    ring = AudioRing.create_for(seconds=30.0, sample_rate_hz=config.audio.sample_rate_hz)
    try:
        capture = CaptureStage(config, ring, input_rate_hz=rate, channels=data.shape[1], source=path.name)
        tokens = []
        for begin in range(0, len(data), 256):
            capture.push(data[begin : begin + 256], last=begin + 256 >= len(data))
            for event in capture.segment(timeout_s=0.0):
                if not event.early:
                    tokens.append(encoder.process((event, ring.read(event.window_start, event.window_end))).token)
        while not capture.exhausted:
            for event in capture.segment(timeout_s=0.0):
                if not event.early:
                    tokens.append(encoder.process((event, ring.read(event.window_start, event.window_end))).token)
        return tokens
    finally:
        ring.close()
        ring.unlink()


def _trained_tokens(model_path: Path, name: str) -> list[int]:
    model = load_musichal_model(model_path)
    stage = OracleMemory(MusicHalConfig(), model=model.oracle_parts)
    return [
        stage.audio.state_info(s).token
        for s in range(1, stage.audio.n_states)
        if stage.audio.state_info(s).source == name
    ]


@pytest.mark.ray
def test_live_stack_reproduces_the_trained_tokens(traditional_runs, corpus_dir):
    model = load_musichal_model(traditional_runs[1])
    config = MusicHalConfig()
    encoder = EncoderStage(HybridPerceptionModule.from_config(config, vocabulary_size=int(VOCAB)), model.perception)
    paths = discover_audio_files(dirs=[corpus_dir])
    for path, name in zip(paths, corpus_names(paths)):
        expected = _trained_tokens(traditional_runs[1], name)
        assert len(expected) > 3
        assert _live_tokens(path, config, encoder) == expected


@pytest.mark.ray
def test_wav2vec_hybrid_training_is_deterministic_and_matches_live(
    ray_module, corpus_dir, tiny_wav2vec_dir, tmp_path, monkeypatch
):
    import services.trainer.distributed as distributed

    ray_analyze_many = distributed.ray_analyze_many

    outputs = []
    # 1 and 2 workers with both stages in each encoder actor (the CPU default), then 2 workers with the stages
    # split (CPU tasks decode and segment, the actors only encode: the GPU layout), which must not change a byte
    for workers, split in ((1, None), (2, None), (2, True)):
        monkeypatch.setattr(distributed, "ray_analyze_many", partial(ray_analyze_many, split_stages=split))
        outputs.append(tmp_path / f"w{workers}{'split' if split else ''}" / "model.json")
        assert (
            _train(
                corpus_dir,
                outputs[-1],
                "--workers",
                str(workers),
                "--wav2vec",
                "--hybrid-perception",
                "--wav2vec-model",
                str(tiny_wav2vec_dir),
            )
            == 0
        )
    assert _bytes(outputs[0]) == _bytes(outputs[1]) == _bytes(outputs[2])
    model = load_musichal_model(outputs[0])
    assert model.perception.views == ("traditional", "wav2vec") and model.perception.primary_view == "wav2vec"
    w2v = model.meta["training"]["feature_settings"]["wav2vec"]
    assert w2v["model"] == str(tiny_wav2vec_dir) and len(w2v["checkpoint_sha256"]) == 64
    assert model.meta["perception"]["pca"]["wav2vec"] is not None  # PCA stored as arrays
    config = MusicHalConfig().with_overrides(
        {"features.kind": "wav2vec", "features.hybrid": True, "wav2vec.model": str(tiny_wav2vec_dir)}
    )
    encoder = EncoderStage(HybridPerceptionModule.from_config(config, vocabulary_size=int(VOCAB)), model.perception)
    path = discover_audio_files(dirs=[corpus_dir])[0]
    name = corpus_names(discover_audio_files(dirs=[corpus_dir]))[0]
    assert _live_tokens(path, config, encoder) == _trained_tokens(outputs[0], name)
