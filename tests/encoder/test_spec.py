"""PerceptionSpec: the model's perception record, its travel by value, old files, and percepts of the memory's
dimension."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from services.encoder.fallback import traditional_stage
from services.encoder.spec import PerceptionSpec, check_live_request, checkpoint_sha256, resolve_checkpoint
from services.encoder.stage import DimensionMismatchError, EncoderStage, stage_from_spec
from services.model_file import describe_model, load_musichal_model
from shared.config import MusicHalConfig
from shared.errors import DeviceError, ModelFormatError, ParameterError
from shared.model_io import arrays_path_for, load_model, save_model

SCALE_NOTES = 8


@pytest.fixture(scope="module")
def hybrid_model(tmp_path_factory, scale_wav, tiny_wav2vec_dir):
    from services.trainer.pipeline import train

    root = tmp_path_factory.mktemp("spec")
    checkpoint = root / "ckpt"
    shutil.copytree(tiny_wav2vec_dir, checkpoint)
    config = MusicHalConfig().with_overrides(
        {
            "features.kind": "wav2vec",
            "features.hybrid": True,
            "wav2vec.model": str(checkpoint),
            "features.pca_components": 4,
            "quantizer.vocabulary_size": 4,
        }
    )
    output = root / "m.json"
    train([scale_wav], config=config, output=output)
    return output, checkpoint


def test_the_model_file_records_its_perception_completely(hybrid_model):
    path, checkpoint = hybrid_model
    record = load_model(path)[0]["perception_spec"]
    assert record["views"] == ["traditional", "wav2vec"] and record["primary_view"] == "wav2vec" and record["hybrid"]
    assert record["memory_dimension"] == 4  # PCA'd wav2vec: the oracle memory's dimension
    assert record["wav2vec"] == {
        "model": str(checkpoint.resolve()),
        "layer": -1,
        "pooling": "mean",
        "dimension": 32,
        "sample_rate_hz": 16000,
        "do_normalize": True,
        "checkpoint_sha256": checkpoint_sha256(checkpoint),
    }
    model = load_musichal_model(path)
    assert model.spec.memory_dimension == model.meta["oracle"]["audio"]["dim"]
    assert "listens with: traditional + wav2vec (primary wav2vec, hybrid)" in describe_model(model)


def test_spec_travels_by_value_as_json_plus_arrays(hybrid_model, scale_wav):
    from services.encoder.analysis import analyze_file
    from shared.audio import load_audio_internal

    spec = load_musichal_model(hybrid_model[0]).spec
    text = json.dumps(spec.to_dict())  # JSON-able: no pickle needed for the record
    again = PerceptionSpec.from_dict(json.loads(text), {k: np.array(v) for k, v in spec.arrays.items()})
    assert again.matches(spec) and again.to_dict() == spec.to_dict()
    stage = stage_from_spec(again, node_id="n2")
    events, _ = analyze_file(scale_wav, MusicHalConfig(), stage.perception)
    signal = load_audio_internal(scale_wav)
    percepts = [stage.process((e, signal[e.window_start : e.window_end])) for e in events]
    assert len(percepts) == SCALE_NOTES
    assert all(p.features.shape == (4,) and p.view == "wav2vec" and p.node_id == "n2" for p in percepts)


def test_a_percept_of_another_dimension_is_never_made(hybrid_model, scale_wav):
    from services.encoder.analysis import analyze_file
    from services.encoder.views import HybridPerceptionModule
    from shared.audio import load_audio_internal

    spec = load_musichal_model(hybrid_model[0]).spec
    with pytest.raises(DimensionMismatchError):  # the traditional view (22-D) cannot feed the 4-D memory
        traditional_stage(spec=spec)
    with pytest.raises(DimensionMismatchError):
        EncoderStage(HybridPerceptionModule(vocabulary_size=4), spec.perception_model(), memory_dimension=4)
    # the encoder fails mid-performance: the hybrid stage does not slip to 22-D percepts; the error reaches the caller
    stage = stage_from_spec(spec)
    events, _ = analyze_file(scale_wav, MusicHalConfig(), stage.perception)
    signal = load_audio_internal(scale_wav)

    def lost(*args, **kwargs):
        raise RuntimeError("CUDA device lost")

    stage.perception.wav2vec.encoder._forward = lost
    with pytest.raises(RuntimeError, match="device lost"):
        stage.process((events[0], signal[events[0].window_start : events[0].window_end]))


def test_checkpoint_is_found_verified_and_named_in_one_line(hybrid_model, tmp_path, tiny_wav2vec_layer_norm_dir):
    path, checkpoint = hybrid_model
    spec = load_musichal_model(path).spec
    assert resolve_checkpoint(spec) == str(checkpoint.resolve())
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    assert resolve_checkpoint(spec.with_request(checkpoint=str(copy))) == str(copy.resolve())  # moved: same hash
    with pytest.raises(DeviceError, match=r"not found \(looked in directory .*nowhere\).*--wav2vec-model DIR"):
        resolve_checkpoint(spec.with_request(checkpoint=str(tmp_path / "nowhere")))
    other = spec.with_request(checkpoint=str(tiny_wav2vec_layer_norm_dir))
    with pytest.raises(DeviceError, match="not the one .* --other-checkpoint"):
        resolve_checkpoint(other)
    assert resolve_checkpoint(
        spec.with_request(checkpoint=str(tiny_wav2vec_layer_norm_dir), allow_other_checkpoint=True)
    )
    (copy / "config.json").write_text(json.dumps({"hidden_size": 32, "num_hidden_layers": 0}))
    deep = dataclasses.replace(spec, wav2vec=dataclasses.replace(spec.wav2vec, layer=2))
    with pytest.raises(DeviceError, match="has 0 layers; .* uses layer 2"):
        resolve_checkpoint(deep.with_request(checkpoint=str(copy), allow_other_checkpoint=True))


def test_live_flags_that_contradict_the_model_are_refused(hybrid_model):
    spec = load_musichal_model(hybrid_model[0]).spec
    check_live_request(spec, wav2vec=True, hybrid=True)  # the trainer's flags
    check_live_request(spec)  # no flags: as trained
    with pytest.raises(ParameterError, match="layer 3 contradicts"):
        check_live_request(spec, layer=3)
    with pytest.raises(ParameterError, match="--other-checkpoint needs --wav2vec-model"):
        check_live_request(spec, allow_other_checkpoint=True)


def test_schema_1_files_still_load_with_an_inferred_record(hybrid_model, tmp_path):
    path, _ = hybrid_model
    meta, arrays = load_model(path)
    expected = load_musichal_model(path).spec
    old = dict(meta, musichal_model=1)
    old.pop("perception_spec")
    for key in ("pooling",):  # schema-1 trainers did not write it
        old["perception"] = json.loads(json.dumps(old["perception"]))
        old["perception"]["features"]["wav2vec"].pop(key)
    save_model(tmp_path / "old.json", old, arrays)
    migrated = load_musichal_model(tmp_path / "old.json").spec
    assert migrated.matches(expected)
    # a record that disagrees with the fitted perception is refused in one line
    bad = dict(meta, perception_spec=dict(meta["perception_spec"], memory_dimension=7))
    save_model(tmp_path / "bad.json", bad, arrays)
    with pytest.raises(ModelFormatError, match="bad.json: .*does not match"):
        load_musichal_model(tmp_path / "bad.json")
    assert arrays_path_for(tmp_path / "bad.json").is_file()


def test_deafness_names_the_likely_cause():
    from services.stack import LiveStack

    def stats(**counters):
        oracle = {k: v for k, v in counters.items() if k not in ("events", "exceptions")}
        return {
            "capture": {"counters": {"events": counters.get("events", 10)}},
            "encoder": {"counters": {"exceptions": counters.get("exceptions", 0)}, "first_exception": "KeyError: 'x'"},
            "oracle": {"counters": {"events": 10, "stage_learned": 0, **oracle}, "control": {"learning": True}},
        }

    assert "encoder failed on 10 event(s) (first: KeyError: 'x')" in LiveStack.deafness(stats(exceptions=10))
    assert "dimension" in LiveStack.deafness(stats(stage_dim_mismatch=10))
    assert "input gate" in LiveStack.deafness(stats(gated=10))
    assert "deadline" in LiveStack.deafness(stats(encoder_misses=10))
    assert LiveStack.deafness(stats(stage_learned=3)) is None
    assert LiveStack.deafness(stats(events=0)) is None
    quiet = stats()
    quiet["oracle"]["control"]["learning"] = False
    assert LiveStack.deafness(quiet) is None
    line = LiveStack.status_line(stats(exceptions=2, stage_dim_mismatch=1), 3.0)
    assert "learned 0" in line and "ENCODER ERRORS 2" in line and "DIM MISMATCH 1" in line


def test_learning_live_the_stage_knows_its_memory_dimension(tiny_wav2vec_dir):
    from services.encoder.actor import build_encoder_stage

    config = MusicHalConfig().with_overrides({"features.kind": "wav2vec", "wav2vec.model": str(tiny_wav2vec_dir)})
    assert build_encoder_stage(config).memory_dimension == 32
    with pytest.raises(DimensionMismatchError):  # the too-slow guard gets no 22-D stand-in for a wav2vec memory
        traditional_stage(config)
    assert traditional_stage(MusicHalConfig()).memory_dimension == 22
