"""OracleMemory: live learning, IR threshold, what a player plays from it, checkpoint round trip, bad models."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from services.oracle.memory.audio_oracle import AudioOracle
from services.oracle.memory.store import OracleMemory
from services.oracle.player.live import LiveOracle
from shared.config import MusicHalConfig
from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors, Percept
from shared.model_io import load_model


def percepts(n, seed=0, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim)) * 3
    motif = rng.integers(0, 6, 10)
    for i in range(n):
        token = int(motif[i % 10])
        yield Percept(
            event_id=i,
            token=token,
            features=(centres[token] + rng.normal(scale=0.1, size=dim)).astype(np.float32),
            descriptors=EventDescriptors(
                onset_s=0.25 * i,
                duration_s=0.25,
                rms=0.1,
                velocity=60 + token,
                f0_hz=220.0 * 2 ** (token / 12),
                f0_confidence=0.9,
                chroma_peaks=((9 + token) % 12,),
            ),
        )


def config(**overrides):
    return MusicHalConfig().with_overrides({"oracle.rebuild_every_events": 50, **overrides})


def test_learns_answers_and_reestimates_threshold():
    stage = OracleMemory(config(), background=False)
    live = LiveOracle(config(), stage)
    notes = []
    for i, p in enumerate(percepts(200)):
        notes += live.on_percept(p, 0.25 * i)
        live.learn_queued()
    assert stage.join()
    stats = stage.stats()
    assert stats["learned"] == 200 and stats["states"] == 200 and stage.audio.n_states == 201
    assert stats["rebuilds"] >= 1 and stage.audio.threshold > 0
    assert notes and all(n.source_state >= 1 for n in notes)
    learned_ids = {p.event_id for p in percepts(200)}
    assert {n.source_event_id for n in notes} <= learned_ids
    # the player keeps playing the memory without input
    later = [n for t in np.arange(60.0, 70.0, 0.05) for n in live.tick(float(t))]
    assert later and all(n.t_on >= 60.0 for n in later)


def test_learning_off_and_fixed_threshold():
    stage = OracleMemory(config(**{"oracle.threshold": 0.5}))
    items = list(percepts(30))
    for p in items[:10]:
        stage.learn(p)
    stage.learning = False
    for p in items[10:]:
        stage.learn(p)
    assert stage.audio.n_states == 11 and stage.audio.threshold == 0.5 and stage.stats()["rebuilds"] == 0


def test_checkpoint_round_trip(tmp_path):
    stage = OracleMemory(config(), background=False)
    for p in percepts(120, seed=3):
        stage.learn(p)
    path = tmp_path / "live.json"
    stage.checkpoint(path)
    back = OracleMemory(config(), model=path)
    a, b = stage.audio, back.audio
    assert a.threshold == b.threshold and a.sfx.tolist() == b.sfx.tolist() and a.lrs.tolist() == b.lrs.tolist()
    assert [a.transition_targets(s) for s in range(a.n_states)] == [b.transition_targets(s) for s in range(b.n_states)]
    assert list(stage.tokens.sfx) == list(back.tokens.sfx)
    assert [stage.tokens.transitions(s) for s in range(121)] == [back.tokens.transitions(s) for s in range(121)]
    meta, arrays = load_model(path)
    assert meta["oracle"]["playing"] == "audio" and all(k.startswith("oracle.") for k in arrays)
    # identical models play identically from the same seed
    played = [
        [n.pitch for t in np.arange(0.0, 8.0, 0.05) for n in LiveOracle(config(), m).tick(float(t))]
        for m in (stage, back)
    ]
    assert played[0] and played[0] == played[1]
    back.set_playing("tokens")
    assert back.walk is back.tokens


def test_live_checkpoint_is_a_model_file_that_loads_and_describes(tmp_path):
    """``--save-learned`` writes what ``--model`` reads: same states, the live config recorded, no perception."""
    from services.model_file import describe_model, load_musichal_model

    stage = OracleMemory(config(), background=False)
    for p in percepts(60, seed=4):
        stage.learn(p)
    path = tmp_path / "live.json"
    stage.checkpoint(path)
    model = load_musichal_model(path)
    assert model.perception is None and model.spec is None  # tokens were learned live: none fitted
    assert model.meta["config"]["features"]["kind"] == stage.config.features.kind
    assert model.meta["training"] == {"live_learned": True, "events": 60}
    back = OracleMemory(config(), model=model.oracle_parts)
    assert back.audio.n_states == stage.audio.n_states == 61
    assert back.audio.sfx.tolist() == stage.audio.sfx.tolist() and list(back.tokens.sfx) == list(stage.tokens.sfx)
    assert "oracle: 60 states" in describe_model(model)


def test_bad_models(tmp_path):
    path = tmp_path / "nonsense.json"
    path.write_bytes(b"{not json")
    with pytest.raises(ModelFormatError):
        OracleMemory(config(), model=path)
    with pytest.raises(ModelFormatError):
        OracleMemory(config(), model=({"oracle": {"schema": "other"}}, {}))
    stage = OracleMemory(config())
    for p in percepts(20):
        stage.learn(p)
    meta, arrays = stage.to_model_parts()
    arrays = dict(arrays)
    arrays["oracle.tokens.sfx"] = arrays["oracle.tokens.sfx"][:5]
    with pytest.raises(ModelFormatError):
        OracleMemory(config(), model=(meta, arrays))
    meta = orjson.loads(orjson.dumps(meta))
    meta["oracle"]["playing"] = "both"
    with pytest.raises(ModelFormatError):
        OracleMemory(config(), model=(meta, stage.to_model_parts()[1]))
    with pytest.raises(ParameterError):
        stage.learn("not a percept")


def links(ao):
    n = ao.n_states
    return (
        ao.threshold,
        ao.sfx.tolist(),
        ao.lrs.tolist(),
        ao.labels.tolist(),
        [ao.transition_targets(s) for s in range(n)],
        [ao.rsfx(s) for s in range(n)],
    )


def test_background_rebuild_joined_each_event_equals_synchronous():
    sync = OracleMemory(config(), background=False)
    bg = OracleMemory(config(), background=True)
    for _i, p in enumerate(percepts(260, seed=5)):
        sync.learn(p)
        bg.learn(p)
        assert bg.join(timeout_s=60.0) and sync.join()
        assert links(bg.audio) == links(sync.audio)
    assert sync.join() and bg.join(timeout_s=60.0)
    assert sync.stats()["rebuilds"] >= 1 and sync.stats() == bg.stats()
    assert links(bg.audio) == links(sync.audio)


def test_background_rebuild_adopts_events_learned_meanwhile():
    """However the worker thread and the learning interleave, the adopted oracle is exactly the oracle of all
    events at the adopted threshold, and states keep their events."""
    stage = OracleMemory(config(**{"oracle.rebuild_every_events": 20}), background=True)
    items = list(percepts(400, seed=8))
    for p in items:
        stage.learn(p)
    assert stage.join(timeout_s=60.0)
    stats = stage.stats()
    assert stats["rebuild_errors"] == 0 and stats["rebuilds"] >= 1
    assert stats["reestimates"] + stats["rebuilds_skipped"] == 400 // 20
    ao = stage.audio
    fresh = AudioOracle(ao.threshold, ao.dim)
    fresh.extend(np.stack([np.asarray(p.features, dtype=np.float64) for p in items]))
    assert links(ao) == links(fresh)
    assert ao.state_info(123).event_id == items[122].event_id
    assert stage.threshold_source == "ir-live"


def test_adopt_links_rejects_mismatch():
    ao = AudioOracle(0.0, 3)
    ao.extend(np.zeros((5, 3)))
    with pytest.raises(ParameterError):
        ao.adopt_links(AudioOracle.links_for(np.zeros((6, 3)), 0.5))
    with pytest.raises(ParameterError):
        ao.adopt_links(AudioOracle.links_for(np.zeros((2, 4)), 0.5))
