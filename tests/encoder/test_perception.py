from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from services.capture.segmenter import OnsetSegmenter
from services.encoder.analysis import analyze_file, analyze_windows
from services.encoder.perception_model import PerceptionModel
from services.encoder.quantizer import OnlineQuantizer
from services.encoder.stage import EncoderStage
from services.encoder.views import HybridPerceptionModule, Wav2VecPerceptionModule
from services.encoder.wav2vec import Wav2VecMusicEncoder
from shared.audio import StreamingFrontEnd, load_audio_internal
from shared.config import MusicHalConfig
from shared.errors import ModelFormatError, ParameterError
from shared.model_io import load_model, save_model
from shared.ring import AudioRing

SR = 48000
MELODY = [60, 64, 67, 72, 71, 67, 64, 62, 60, 65, 69, 72, 70, 65, 62, 60]


@pytest.fixture(scope="module")
def melody_wav(render_cache):
    """16 piano notes at 44.1 kHz stereo (the front end must resample and down-mix)."""
    return render_cache("melody44k", [(p, 0.2 + 0.35 * i, 0.3, 70 + (i % 4) * 10) for i, p in enumerate(MELODY)], 44100)


@pytest.fixture(scope="module")
def w2v_encoder(tiny_wav2vec_dir):
    return Wav2VecMusicEncoder(str(tiny_wav2vec_dir))


def _live_path(path, config, stage_factory, block_frames=256):
    """Device-sized blocks → front end → ring → segmenter → windows read from the ring → EncoderStage."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    front = StreamingFrontEnd(input_rate_hz=rate, channels=data.shape[1], output_rate_hz=config.audio.sample_rate_hz)
    ring = AudioRing.create_for(seconds=20.0, sample_rate_hz=config.audio.sample_rate_hz)
    try:
        segmenter = OnsetSegmenter(config.segmenter, sample_rate_hz=config.audio.sample_rate_hz, start_sample=0)
        stage = stage_factory()
        events, percepts = [], []
        for begin in range(0, len(data), block_frames):
            block = front.process(data[begin : begin + block_frames], last=begin + block_frames >= len(data))
            ring.write(block)
            for event in segmenter.process(block):
                window = ring.read(event.window_start, event.window_end)
                events.append(event)
                percepts.append(stage.process((event, window)))
        return events, percepts
    finally:
        ring.close()
        ring.unlink()


@pytest.mark.parametrize("kind", ["traditional", "hybrid"])
def test_trainer_and_live_paths_give_identical_events_and_tokens(melody_wav, w2v_encoder, kind):
    config = MusicHalConfig()
    if kind == "traditional":
        perception = HybridPerceptionModule(vocabulary_size=6)
    else:
        perception = HybridPerceptionModule(vocabulary_size=6, hybrid=True, pca_components=4, wav2vec=w2v_encoder)
    events, analyses = analyze_file(melody_wav, config, perception)
    assert len(events) == len(MELODY)
    model = perception.new_model(config=config).fit([views for _, views in analyses])
    trained = model.percepts(events, analyses)
    live_events, live = _live_path(melody_wav, config, lambda: EncoderStage(perception, model, node_id="local"))
    assert [(e.onset_sample, e.window_start, e.window_end) for e in live_events] == [
        (e.onset_sample, e.window_start, e.window_end) for e in events
    ]
    assert [p.token for p in live] == [p.token for p in trained]
    assert [p.traditional_token for p in live] == [p.traditional_token for p in trained]
    assert len({p.token for p in trained}) > 2  # not collapsed
    if kind == "hybrid":
        assert trained[0].view == "wav2vec" and trained[0].traditional_token is not None
        assert trained[0].features.shape == (4,)  # PCA'd wav2vec vector


def test_model_parts_round_trip_through_model_io(tmp_path, melody_wav, w2v_encoder):
    config = MusicHalConfig()
    perception = HybridPerceptionModule(vocabulary_size=5, hybrid=True, pca_components=3, wav2vec=w2v_encoder)
    events, analyses = analyze_file(melody_wav, config, perception)
    model = perception.new_model(config=config).fit([views for _, views in analyses])
    meta, arrays = model.to_model_parts()
    assert all(name.startswith("perception.") for name in arrays)
    assert meta["feature_kind"] == "wav2vec" and meta["features"]["wav2vec"]["layer"] == -1
    assert meta["segmenter"]["window_ms"] == config.segmenter.window_ms and meta["sample_rate_hz"] == SR
    save_model(tmp_path / "model.json", {"perception": meta}, arrays)
    loaded_meta, loaded_arrays = load_model(tmp_path / "model.json")
    again = PerceptionModel.from_model_parts(loaded_meta["perception"], loaded_arrays)
    dicts = [views for _, views in analyses]
    for view in ("traditional", "wav2vec"):
        assert np.array_equal(again.tokens(dicts)[view], model.tokens(dicts)[view])
    assert again.to_model_parts()[0] == meta
    broken = dict(meta, views=["traditional", "nope"])
    with pytest.raises(ModelFormatError):
        PerceptionModel.from_model_parts(broken, arrays)
    with pytest.raises(ModelFormatError):
        PerceptionModel.from_model_parts(meta, {k: v for k, v in arrays.items() if "pca" not in k})
    with pytest.raises(ModelFormatError):
        PerceptionModel.from_model_parts(dict(meta, perception_format=99), arrays)


def test_hybrid_model_degrades_to_traditional_when_the_encoder_is_lost(melody_wav, tiny_wav2vec_dir):
    config = MusicHalConfig()
    encoder = Wav2VecMusicEncoder(str(tiny_wav2vec_dir))
    perception = HybridPerceptionModule(vocabulary_size=5, hybrid=True, wav2vec=encoder)
    events, analyses = analyze_file(melody_wav, config, perception)
    model = perception.new_model(config=config).fit([views for _, views in analyses])
    expected = [p.traditional_token for p in model.percepts(events, analyses)]
    stage = EncoderStage(perception, model)
    signal = load_audio_internal(melody_wav)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA device lost")

    encoder._forward = broken
    percepts = [stage.process((e, signal[e.window_start : e.window_end])) for e in events]
    assert all(p.view == "traditional" for p in percepts)
    assert [p.token for p in percepts] == expected
    assert stage.counters["encoder_failures"] == 1 and stage.counters["degraded_events"] == len(events)


def test_live_learning_without_model_is_deterministic(melody_wav):
    config = MusicHalConfig()
    perception = HybridPerceptionModule(vocabulary_size=8)
    runs = [_live_path(melody_wav, config, lambda: EncoderStage(perception))[1] for _ in range(2)]
    tokens = [[p.token for p in run] for run in runs]
    assert tokens[0] == tokens[1]
    assert 1 < len(set(tokens[0])) <= 8
    assert tokens[0][0] == 0


def test_online_quantizer_caps_vocabulary():
    q = OnlineQuantizer(3, radius=0.1)
    tokens = [q.assign(v) for v in np.eye(5)]
    assert tokens[:3] == [0, 1, 2] and max(tokens) == 2 and q.usage()["used"] == 3


def test_wav2vec_perception_module_and_pca(w2v_encoder):
    module = Wav2VecPerceptionModule(encoder=w2v_encoder, pca_components=4)
    rng = np.random.default_rng(0)
    windows = [(rng.standard_normal(24000) * 0.1).astype(np.float32) for _ in range(6)]
    features = module.extract_batch(windows, SR)
    assert features.shape == (6, 32)
    assert np.allclose(module.extract_features(windows[0], SR), features[0], atol=1e-5)
    pca = module.fit_dimensionality_reduction(features)
    assert module.reduce(features).shape == (6, 4) and pca.to_arrays()["components"].shape == (4, 32)


def test_analyze_windows_views_and_errors():
    perception = HybridPerceptionModule()
    window = np.sin(np.arange(24000) * 2 * np.pi * 440 / SR).astype(np.float32)
    ((descriptors, views),) = analyze_windows([window], None, sample_rate_hz=SR, perception=perception)
    assert set(views) == {"traditional"} and views["traditional"].shape == (22,)
    assert descriptors.duration_s == pytest.approx(0.5) and 9 in descriptors.chroma_peaks
    with pytest.raises(ParameterError):
        analyze_windows([window, window], [], sample_rate_hz=SR, perception=perception)
    with pytest.raises(ParameterError):
        analyze_windows([np.array([np.nan])], None, sample_rate_hz=SR, perception=perception)
    with pytest.raises(ParameterError):
        PerceptionModel(views=("traditional",), primary_view="wav2vec")
