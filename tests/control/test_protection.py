"""Feedback protection in a closed loop, the too-slow guard, corpora merge and checkpoint round trips (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from services.capture.segmenter import OnsetSegmenter
from services.encoder.guard import GuardedEncoder, OverloadGuard
from services.encoder.stage import EncoderStage
from services.encoder.views import HybridPerceptionModule
from services.oracle.memory.corpus import TOKEN_OFFSET, merge_oracle_parts
from services.oracle.player.echo import EchoGate
from services.oracle.player.live import LiveOracle
from services.oracle.player.session import make_stage
from shared.config import MusicHalConfig
from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors, Percept
from shared.model_io import load_model
from testkit.audio import render_midi_notes

SR = 48_000


def synth_into(buffer: np.ndarray, pitch: int, t_on: float, t_off: float, *, gain: float = 0.3) -> None:
    """A plucked tone (5 harmonics, 2 ms attack, decay, 60 ms release) added to ``buffer`` (the 'room')."""
    start, stop = int(t_on * SR), min(int((t_off + 0.06) * SR), buffer.size)
    if start >= stop:
        return
    t = np.arange(stop - start) / SR
    env = np.minimum(1.0, t / 0.002) * np.exp(-t / 0.15) * np.clip((t_off + 0.06 - t_on - t) / 0.06, 0.0, 1.0)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    buffer[start:stop] += gain * env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))


def closed_loop(signal: np.ndarray, *, protect: bool, seconds: float = 9.0):
    """Input + MusicHal's own notes mixed back into it, block by block, through segmenter → encoder → the live
    decision object (its gate in the blanket ``time`` mode: every onset while its own notes sound is dropped)."""
    config = MusicHalConfig().with_overrides(
        {
            "generation.seed": 5,
            "generation.density": 1.5,
            "oracle.threshold": 0.1,
            "control.gate_mode": "time",
            "control.input_gate": protect,
        }
    )
    room = np.zeros(int(seconds * SR), dtype=np.float64)
    room[: signal.size] += signal[: room.size]
    segmenter = OnsetSegmenter(config.segmenter, sample_rate_hz=SR, clock=None)
    encoder = EncoderStage(HybridPerceptionModule.from_config(config))
    live = LiveOracle(config, make_stage(config))
    gate = live.gate
    learned_onsets, echo_onsets = [], []
    block = config.audio.block_samples

    def play(notes):  # the notes sound in the room (the decision object has registered them with its gate)
        for note in notes:
            synth_into(room, note.pitch, note.t_on, note.t_off)
            echo_onsets.append(note.t_on)

    for start in range(0, room.size - block, block):
        now = (start + block) / SR
        for event in segmenter.process(room[start : start + block].astype(np.float32)):
            onset = event.onset_sample / SR
            window = room[event.window_start : event.window_end].astype(np.float32)
            percept = encoder.process((event, window))
            notes = live.on_percept(percept, now, gated=gate.blocks(onset), onset_t=onset)
            if live.learn_queued():
                learned_onsets.append(onset)
            play(notes)
        play(live.tick(now))
    return learned_onsets, echo_onsets, gate


def test_oracle_does_not_learn_its_own_notes_heard_back_when_the_gate_is_on(tmp_path):
    import soundfile

    melody = [(p, 0.2 + 0.35 * i, 0.3, 100) for i, p in enumerate([60, 64, 67, 72, 67, 64, 60, 62])]
    path = render_midi_notes(melody, tmp_path / "in.wav", SR)
    signal, _ = soundfile.read(path, dtype="float32", always_2d=True)
    signal = signal.mean(axis=1)
    input_end_s = 0.2 + 0.35 * len(melody) + 0.4

    learned_on, played_on, gate = closed_loop(signal, protect=True)
    learned_off, played_off, _ = closed_loop(signal, protect=False)
    assert played_on and played_off, "MusicHal must play back into the room in both runs"
    # protection on: nothing learned after the input ended (only its own notes could be heard), echoes were gated
    assert gate.counters["blocked"] > 0
    assert max(learned_on) < input_end_s, f"learned its own notes at {[t for t in learned_on if t >= input_end_s]}"
    assert len(learned_on) <= len(melody) + 2
    # protection off: it learns what it hears of itself
    echoes_learned = [t for t in learned_off if t >= input_end_s]
    assert len(echoes_learned) >= 3, f"without the gate the echo should be learned: {learned_off}"


def test_gate_intervals_and_switch():
    gate = EchoGate(mode="time", pre_ms=10, release_ms=100, enabled=False)
    gate.note_sent(1.0, 2.0)
    assert not gate.blocks(1.5)
    gate.enabled = True
    assert gate.blocks(0.995) and gate.blocks(2.09) and not gate.blocks(2.2) and not gate.blocks(0.9)
    with pytest.raises(ParameterError):
        gate.note_sent(2.0, 1.0)


def test_guard_trips_once_after_a_sustained_overload_and_recovers_only_when_sustained_ok():
    guard = OverloadGuard(window_events=4, recover_events=3)
    verdicts = [guard.observe(encode_s=0.3, budget_s=0.5) for _ in range(10)]
    assert verdicts == [None] * 10  # fast enough
    verdicts = [guard.observe(encode_s=0.3, budget_s=0.2) for _ in range(3)] + [
        guard.observe(encode_s=0.3, budget_s=0.5)
    ]
    assert "degrade" not in verdicts  # one OK event in the window: not sustained
    verdicts = [guard.observe(encode_s=0.3, budget_s=0.2) for _ in range(6)]
    assert verdicts.count("degrade") == 1 and guard.degraded
    assert guard.slow_encode_s == pytest.approx(0.3)
    # budgets that would not fit the slow encoder keep it degraded; an isolated good one does not recover it
    seq = [0.2, 0.5, 0.2, 0.5, 0.5, 0.2]
    assert all(guard.observe(encode_s=0.01, budget_s=b) is None for b in seq) and guard.degraded
    verdicts = [guard.observe(encode_s=0.01, budget_s=0.5) for _ in range(3)]
    assert verdicts == [None, None, "recover"] and not guard.degraded


class _Stage:
    def __init__(self, name):
        self.name, self.calls = name, 0

    def process(self, item):
        self.calls += 1
        return self.name


def _event(i, ioi_s):
    from shared.messages import Event

    onset = int(i * ioi_s * SR)
    return Event(event_id=i, onset_sample=onset, window_start=onset, window_end=onset + 100, sample_rate_hz=SR)


def test_guarded_encoder_switches_to_the_traditional_stage_with_one_warning_when_the_encoder_is_slow():
    primary, fallback, warnings = _Stage("wav2vec"), _Stage("traditional"), []
    encoder = GuardedEncoder(
        primary,
        fallback,
        OverloadGuard(window_events=4, recover_events=4),
        deadline_s=0.25,
        delay_s=0.03,
        warn=warnings.append,
    )  # test-only delay: 30 ms per event, onsets 10 ms apart
    views = [encoder.process((_event(i, 0.01), None)) for i in range(12)]
    assert views[:5] == ["wav2vec"] * 5 and set(views[5:]) == {"traditional"}  # the first event has the whole deadline
    assert len(warnings) == 1 and "too slow" in warnings[0] and encoder.using_fallback
    # onsets far apart again: back to the primary view after a sustained run
    views = [encoder.process((_event(100 + 2 * i, 0.5), None)) for i in range(6)]
    assert views[-1] == "wav2vec" and not encoder.using_fallback and len(warnings) == 1


def _percepts(n, *, seed, dim=6, offset=0.0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        token = int(rng.integers(0, 5))
        yield Percept(
            event_id=i,
            token=token,
            features=(rng.normal(size=dim) + offset).astype(np.float32),
            descriptors=EventDescriptors(
                onset_s=0.3 * i,
                duration_s=0.3,
                rms=0.1,
                velocity=70,
                f0_hz=0.0,
                f0_confidence=0.0,
                chroma_peaks=(token,),
            ),
        )


def _learned_stage(seed, n=40, **kw):
    stage = make_stage(MusicHalConfig().with_overrides({"oracle.threshold": 0.5}))
    for p in _percepts(n, seed=seed, **kw):
        stage.learn(p)
    return stage


def test_checkpoint_round_trip_is_identical(tmp_path):
    stage = _learned_stage(1)
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    stage.checkpoint(tmp_path / "one" / "m.json")
    meta, arrays = load_model(tmp_path / "one" / "m.json")
    again = make_stage(stage.config, (meta, arrays))
    again.checkpoint(tmp_path / "two" / "m.json")
    first, second = (
        sorted(p.name for p in (tmp_path / "one").iterdir()),
        sorted(p.name for p in (tmp_path / "two").iterdir()),
    )
    assert first == second and len(first) == 2  # json + arrays, no temporaries left by the atomic writes
    for name in first:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_two_corpora_merge_into_one_memory_and_round_trip(tmp_path):
    a, b = _learned_stage(1, 30), _learned_stage(2, 20, offset=3.0)
    config = a.config
    parts = merge_oracle_parts(
        config, [a.to_model_parts(), b.to_model_parts()], names=["a.json", "b.json"], same_perception=[True, False]
    )
    merged = make_stage(config, parts)
    assert merged.tokens.n_states == 51 and merged.audio.n_states == 51
    assert [merged.tokens.label(i) for i in range(1, 31)] == [a.tokens.label(i) for i in range(1, 31)]
    assert [merged.tokens.label(30 + i) for i in range(1, 21)] == [
        b.tokens.label(i) + TOKEN_OFFSET for i in range(1, 21)
    ]
    assert np.array_equal(merged.audio.frames[30:], b.audio.frames)
    assert merged.audio.state_info(35).source == "b.json" and merged.audio.state_info(5).source == "a.json"
    # plays from both corpora
    lead = LiveOracle(config.with_overrides({"generation.mode": "lead"}), merged)
    states = {n.source_state for t in np.arange(0.0, 120.0, 0.05) for n in lead.tick(float(t))}
    assert any(s <= 30 for s in states) and any(s > 30 for s in states)
    # round trip
    merged.checkpoint(tmp_path / "m.json")
    restored = make_stage(config, str(tmp_path / "m.json"))
    meta1, arrays1 = merged.to_model_parts()
    meta2, arrays2 = restored.to_model_parts()
    assert sorted(arrays1) == sorted(arrays2) and all(np.array_equal(arrays1[k], arrays2[k]) for k in arrays1)
    with pytest.raises(ModelFormatError):
        merge_oracle_parts(config, [a.to_model_parts(), _learned_stage(3, 10, dim=4).to_model_parts()])
