"""Live MIDI input as events (services/encoder/midi_input.py): early and full percepts, and the same events and
vectors as training reads from a MIDI file (one grouping, offline and live)."""

from __future__ import annotations

import numpy as np
import pytest

from services.encoder.midi_input import MIDI_EVENT_IDS, LiveNoteInput, parse_note_message, symbolic_stage
from services.encoder.symbolic import analyze_midi_file, read_midi_notes
from services.encoder.views import HybridPerceptionModule
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from testkit.audio import CHORALES, chorale_notes, write_midi_notes

SYMBOLIC = MusicHalConfig().with_overrides({"features.kind": "symbolic", "quantizer.vocabulary_size": 8})


def _input(model=None, **options) -> LiveNoteInput:
    return LiveNoteInput(symbolic_stage(SYMBOLIC, model), sample_rate_hz=48000, **options)


def test_a_note_on_is_an_early_percept_at_once_and_the_chord_a_full_one_after_its_window():
    live = _input(origin_s=10.0)
    [(event, early, is_early)] = live.on_message(11.0, [0x90, 60, 100])
    assert is_early and event.event_id == MIDI_EVENT_IDS and event.t_detected == 11.0
    assert event.onset_sample == 48000 and event.source == "midi"  # one second after the origin
    assert early.view == "symbolic" and early.descriptors.f0_hz == pytest.approx(261.63, abs=0.01)
    assert live.on_message(11.010, [0x90, 64, 90]) == []  # within the window: the same chord, nothing new yet
    assert live.due(11.029) == [] and live.seconds_to_due(11.029) == pytest.approx(0.001, abs=2e-4)
    [(full_event, full, is_early)] = live.due(11.031)
    assert not is_early and full_event is event and full.event_id == event.event_id
    assert sorted(n[0] for n in full.descriptors.notes) == [60, 64]
    assert np.flatnonzero(full.features[:12]).tolist() == [0, 4] and full.features.size == 23
    assert full.descriptors.velocity == 100 and live.seconds_to_due(11.04) is None
    # a note-on after the window opens the next event; the held C and E sound in it
    live.on_message(11.2, [0x80, 64, 0])
    [(second, _, _)] = live.on_message(11.5, [0x90, 67, 80])
    assert second.event_id == MIDI_EVENT_IDS + 1
    [(_, held, _)] = live.due(11.6)
    assert sorted(n[0] for n in held.descriptors.notes) == [60, 67]
    assert live.counters == {"messages": 4, "notes": 3, "events": 2, "early": 2, "ignored": 0}


def test_other_messages_and_the_drum_channel_make_no_event():
    live = _input()
    assert live.on_message(0.0, [0xB0, 20, 64]) == []  # a controller
    assert live.on_message(0.0, [0x99, 36, 100]) == []  # channel 10
    assert live.on_message(0.1, [0x90, 40, 0]) == []  # velocity 0: a note-off
    assert live.counters["ignored"] == 1 and live.counters["notes"] == 0
    assert parse_note_message([0xF8]) is None


def test_live_input_makes_the_events_and_vectors_training_reads_from_the_file(tmp_path):
    path = write_midi_notes(chorale_notes(CHORALES[0], bpm=100, velocity=70), tmp_path / "chorale.mid")
    perception = HybridPerceptionModule.from_config(SYMBOLIC)
    _, analyses, _ = analyze_midi_file(path, SYMBOLIC, perception)
    model = perception.new_model(config=SYMBOLIC).fit([vectors for _, vectors in analyses])
    trained_tokens = model.tokens([vectors for _, vectors in analyses])["symbolic"].tolist()
    live = _input(model)
    full = []
    messages, _ = read_midi_notes(path)
    for time_s, kind, pitch, velocity, channel in messages:  # played live at the file's times
        status = (0x90 if kind == "on" else 0x80) | channel
        full += [percept for _, percept, early in live.on_message(time_s, [status, pitch, velocity]) if not early]
    full += [percept for _, percept, _ in live.due(1e9)]
    assert len(full) == len(analyses)
    assert all(np.array_equal(p.features, v["symbolic"]) for p, (_, v) in zip(full, analyses))
    assert [p.token for p in full] == trained_tokens
    # what the voices read: the notes struck and held at each onset (durations are known only later live)
    assert [sorted(n[0] for n in p.descriptors.notes) for p in full] == [
        sorted(n[0] for n in d.notes) for d, _ in analyses
    ]


def test_an_audio_model_cannot_tokenise_midi():
    perception = HybridPerceptionModule.from_config(MusicHalConfig(), vocabulary_size=4)
    model = perception.new_model().fit([{"traditional": np.random.default_rng(0).random(22)} for _ in range(8)])
    with pytest.raises(ParameterError) as error:
        symbolic_stage(MusicHalConfig(), model)
    assert "symbolic view" in str(error.value) and "\n" not in str(error.value)
