"""The symbolic view (services/encoder/symbolic.py): features of notes, the note grouping, MIDI files, and its record
in the perception and the model file."""

from __future__ import annotations

import struct

import mido
import numpy as np
import pytest

from services.encoder.perception_model import PerceptionModel
from services.encoder.symbolic import (
    SYMBOLIC_DIMENSION,
    SYMBOLIC_NAMES,
    NoteGrouper,
    analyze_midi_file,
    descriptors_from_group,
    event_notes,
    midi_file_groups,
    read_midi_notes,
    symbolic_features,
    symbolic_view,
)
from services.encoder.views import HybridPerceptionModule
from services.model_file import describe_model, load_musichal_model, save_musichal_model
from services.oracle.memory.store import OracleMemory
from shared.config import MusicHalConfig
from shared.errors import ModelFormatError, ParameterError
from shared.messages import EventDescriptors, Percept
from shared.model_io import load_model, save_model

SYMBOLIC = MusicHalConfig().with_overrides({"features.kind": "symbolic"})


def _index(name: str) -> int:
    return SYMBOLIC_NAMES.index(name)


def test_a_chord_gives_its_pitch_class_set_bass_top_and_interval_classes():
    v = symbolic_features([(48, 100), (64, 60), (67, 80), (70, 80)])  # C3 E4 G4 Bb4: a dominant seventh
    assert v.shape == (SYMBOLIC_DIMENSION,) and v.dtype == np.float32
    assert np.flatnonzero(v[:12]).tolist() == [0, 4, 7, 10]
    assert round(v[_index("bass_pitch")] * 127) == 48 and round(v[_index("top_pitch")] * 127) == 70
    # C-E ic4, C-G ic5, C-Bb ic2, E-G ic3, E-Bb ic6, G-Bb ic3: six pairs
    assert [round(float(x) * 6) for x in v[_index("ic1") : _index("ic6") + 1]] == [0, 1, 2, 1, 1, 1]
    assert v[_index("span")] == pytest.approx(22 / 36)
    assert v[_index("density")] == pytest.approx(4 / 8)
    assert v[_index("velocity")] == pytest.approx(80 / 127)
    assert ((v >= 0) & (v <= 1)).all()


def test_a_rest_is_zero_and_bad_notes_are_refused():
    assert not symbolic_features([]).any()
    single = symbolic_features([(69, 90)])
    assert np.flatnonzero(single[:12]).tolist() == [9] and not single[14:20].any() and single[_index("span")] == 0
    with pytest.raises(ParameterError):
        symbolic_features([(128, 90)])
    with pytest.raises(ParameterError):
        symbolic_features([(60, 200)])


def test_audio_descriptors_give_their_notes_slice_notes_first_then_f0_then_chroma():
    base = dict(onset_s=0.0, duration_s=0.5, rms=0.1, velocity=70, f0_confidence=0.9)
    notes = ((40, 0.0, 0.5, 90, 0.0, 0.0), (59, 0.0, 0.5, 80, 0.0, 0.0), (62, 0.1, 0.3, 80, 0.0, 0.0))
    with_notes = EventDescriptors(**base, f0_hz=440.0, chroma_peaks=(9,), notes=notes)
    assert event_notes(with_notes) == [(40, 90), (59, 80), (62, 80)]
    voiced = EventDescriptors(**base, f0_hz=440.0, chroma_peaks=(9, 4))
    assert event_notes(voiced) == [(69, 70)]
    chord = EventDescriptors(**base, f0_hz=0.0, chroma_peaks=(0, 4, 7, 11))
    assert event_notes(chord) == [(60, 70), (64, 70), (67, 70)]
    assert np.flatnonzero(symbolic_view(chord)[:12]).tolist() == [0, 4, 7]


def test_note_ons_within_the_chord_window_make_one_event_and_held_notes_sound_in_the_next():
    grouper = NoteGrouper(chord_window_s=0.030)
    assert grouper.note_on(1.000, 48, 90) == (None, True)
    assert grouper.note_on(1.020, 52, 90) == (None, False)  # 20 ms later: the same chord
    assert grouper.note_on(1.029, 55, 90) == (None, False)
    grouper.note_off(1.200, 52)
    closed, opened = grouper.note_on(1.500, 72, 100)  # a melody note over the held C and G
    assert opened and closed is not None and [n[0] for n in closed.struck] == [48, 52, 55]
    assert [n[3] for n in closed.struck] == [None, 1.2, None]  # durations complete at the note-offs
    assert grouper.close_due(1.520) is None  # its window has not passed yet
    second = grouper.close_due(1.531)
    assert second is not None and [n[0] for n in second.held] == [48, 55]
    grouper.note_off(2.0, 48)
    grouper.note_off(2.1, 55)
    grouper.note_off(2.2, 72)
    d = descriptors_from_group(second, duration_s=0.7)
    assert [n[0] for n in d.notes] == [48, 55, 72]
    assert [round(n[2], 3) for n in d.notes] == [0.5, 0.6, 0.7]  # held notes count from this event's onset
    assert d.f0_hz == pytest.approx(523.2511, rel=1e-4) and d.chroma_peaks[0] == 0  # top note C5 first
    assert d.velocity == 100 and d.f0_confidence == 1.0


def test_the_drum_channel_velocity_zero_and_unisons():
    grouper = NoteGrouper()
    assert grouper.note_on(0.0, 36, 100, channel=9) == (None, False)  # channel 10: left out
    assert grouper.note_on(0.0, 60, 80, channel=0) == (None, True)
    assert grouper.note_on(0.004, 60, 90, channel=0) == (None, False)  # a unison within the chord: one note
    grouper.note_on(0.2, 60, 0, channel=0)  # velocity 0 = note-off
    group = grouper.finish(1.0)
    assert group is not None and [(n[0], n[1], n[3]) for n in group.struck] == [(60, 90, 0.2)]
    restruck = NoteGrouper()
    restruck.note_on(0.0, 60, 80)
    closed, opened = restruck.note_on(0.2, 60, 70)  # the same key again after the chord: a new note, the old one ends
    assert opened and [(n[0], n[3]) for n in closed.struck] == [(60, 0.2)]
    drums = NoteGrouper(include_drums=True)
    assert drums.note_on(0.0, 36, 100, channel=9) == (None, True)
    with pytest.raises(ParameterError):
        NoteGrouper(chord_window_s=-0.01)


def _two_track_file(path) -> None:
    """Type 1: a tempo track (120 bpm, then 60 bpm from beat 2) and a note track; 480 ticks per beat."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=500_000, time=0),
            mido.MetaMessage("set_tempo", tempo=1_000_000, time=960),
        ]
    )
    notes = mido.MidiTrack()
    for beat, pitch in enumerate([60, 62, 64, 65]):
        notes.append(mido.Message("note_on", note=pitch, velocity=80, time=0 if beat == 0 else 240))
        notes.append(mido.Message("note_off", note=pitch, velocity=0, time=240))
    notes.append(mido.Message("note_on", note=36, velocity=100, channel=9, time=0))
    notes.append(mido.Message("note_off", note=36, velocity=0, channel=9, time=240))
    midi.tracks += [tempo, notes]
    midi.save(path)


def test_a_type_1_file_follows_its_tempo_map(tmp_path):
    path = tmp_path / "tempo.mid"
    _two_track_file(path)
    groups, length_s = midi_file_groups(path)
    # beats 0 and 1 at 0.5 s per beat, beats 2 and 3 at 1 s per beat
    assert [round(g.onset_s, 6) for g in groups] == [0.0, 0.5, 1.0, 2.0]
    assert [g.struck[0][0] for g in groups] == [60, 62, 64, 65]  # the drum note is not an event
    assert [round(g.struck[0][3] - g.struck[0][2], 6) for g in groups] == [0.25, 0.25, 0.5, 0.5]
    with_drums, _ = midi_file_groups(path, include_drums=True)
    assert len(with_drums) == 5 and with_drums[-1].struck[0][0] == 36
    assert length_s == pytest.approx(3.0)


def test_running_status_is_read(tmp_path):
    """A hand-written type 0 file whose note messages use running status (no repeated status byte)."""
    track = bytes(
        [0x00, 0x90, 60, 64]  # note-on C4
        + [0x00, 64, 64]  # running status: note-on E4 at the same time (a chord)
        + [0x83, 0x60, 60, 0]  # 480 ticks later: C4 velocity 0 (a note-off) in running status
        + [0x00, 64, 0]
        + [0x00, 67, 70]  # G4 starts
        + [0x83, 0x60, 67, 0]
        + [0x00, 0xFF, 0x2F, 0x00]
    )
    data = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + track
    path = tmp_path / "running.mid"
    path.write_bytes(data)
    messages, _ = read_midi_notes(path)
    assert [(round(t, 3), kind, pitch) for t, kind, pitch, _, _ in messages] == [
        (0.0, "on", 60),
        (0.0, "on", 64),
        (0.5, "off", 60),
        (0.5, "off", 64),
        (0.5, "on", 67),
        (1.0, "off", 67),
    ]
    groups, _ = midi_file_groups(path)
    assert [[n[0] for n in g.struck] for g in groups] == [[60, 64], [67]]


def test_a_corrupt_midi_file_is_one_line(tmp_path):
    path = tmp_path / "broken.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x00\x90")
    with pytest.raises(ParameterError) as error:
        read_midi_notes(path)
    assert "broken.mid" in str(error.value) and "\n" not in str(error.value)


def test_a_midi_file_analyses_into_events_of_the_symbolic_view(tmp_path):
    path = tmp_path / "tempo.mid"
    _two_track_file(path)
    perception = HybridPerceptionModule.from_config(SYMBOLIC)
    assert perception.views == ("symbolic",) and perception.describe()["symbolic"]["dimension"] == SYMBOLIC_DIMENSION
    events, analyses, length_s = analyze_midi_file(path, SYMBOLIC, perception)
    assert len(events) == len(analyses) == 4 and length_s == pytest.approx(3.0)
    assert [round(d.duration_s, 6) for d, _ in analyses] == [0.5, 0.5, 1.0, 0.5]  # to the next onset; last: its note
    assert [e.onset_sample for e in events] == [0, 24000, 48000, 96000]
    assert [int(np.argmax(v["symbolic"][:12])) for _, v in analyses] == [0, 2, 4, 5]
    with pytest.raises(ParameterError):  # an audio perception cannot learn from notes
        analyze_midi_file(path, MusicHalConfig(), HybridPerceptionModule.from_config(MusicHalConfig()))


def test_audio_windows_give_the_symbolic_view_from_their_pitch():
    sr = 48000
    t = np.arange(sr // 2) / sr
    window = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    perception = HybridPerceptionModule.from_config(SYMBOLIC)
    ((descriptors, vectors),) = perception.analyze([window], None, sample_rate_hz=sr)
    assert set(vectors) == {"symbolic"} and round(vectors["symbolic"][_index("top_pitch")] * 127) == 69
    with pytest.raises(ParameterError):
        HybridPerceptionModule.from_config(SYMBOLIC, enable_wav2vec=True)


def _symbolic_model(tmp_path, events: int = 24):
    """A tiny symbolic model: a fitted perception and a memory learned from chords, saved."""
    rng = np.random.default_rng(0)
    perception = HybridPerceptionModule.from_config(SYMBOLIC, vocabulary_size=4)
    model = perception.new_model(config=SYMBOLIC)
    chords = [sorted({int(p) for p in rng.integers(48, 72, size=3)}) for _ in range(events)]
    vectors = [{"symbolic": symbolic_features([(p, 80) for p in chord])} for chord in chords]
    model.fit(vectors)
    tokens = model.tokens(vectors)["symbolic"]
    memory = OracleMemory(SYMBOLIC, background=False, deterministic=True)
    for index, (chord, vector) in enumerate(zip(chords, vectors)):
        d = EventDescriptors(
            onset_s=0.5 * index,
            duration_s=0.5,
            rms=0.1,
            velocity=80,
            f0_hz=261.6,
            f0_confidence=1.0,
            chroma_peaks=tuple(p % 12 for p in chord),
        )
        memory.learn(
            Percept(
                event_id=index, token=int(tokens[index]), features=vector["symbolic"], descriptors=d, view="symbolic"
            )
        )
    path = tmp_path / "symbolic.json"
    save_musichal_model(path, oracle_parts=memory.to_model_parts(), perception=model)
    return path


def test_a_symbolic_model_records_its_view_and_loads_back(tmp_path):
    path = _symbolic_model(tmp_path)
    model = load_musichal_model(path)
    assert model.meta["musichal_model"] == 4
    assert model.spec.views == ("symbolic",) and model.spec.memory_dimension == SYMBOLIC_DIMENSION
    assert model.perception.feature_info["symbolic"]["names"] == list(SYMBOLIC_NAMES)
    text = describe_model(model)
    assert "listens with: symbolic" in text and "symbolic view: the notes of each event" in text
    again = PerceptionModel.from_model_parts(*model.spec.perception_model().to_model_parts())
    assert again.views == ("symbolic",)


def test_older_schemas_still_load_and_a_symbolic_view_needs_schema_4(tmp_path):
    path = _symbolic_model(tmp_path)
    meta, arrays = load_model(path)
    old = tmp_path / "old.json"
    # an audio model written as schema 3 (before the symbolic view) loads as before
    audio_perception = HybridPerceptionModule.from_config(MusicHalConfig(), vocabulary_size=4)
    audio_model = audio_perception.new_model()
    rng = np.random.default_rng(1)
    audio_model.fit([{"traditional": rng.random(22).astype(np.float32)} for _ in range(8)])
    memory = OracleMemory(MusicHalConfig(), background=False, deterministic=True)
    for index in range(4):
        d = EventDescriptors(onset_s=0.5 * index, duration_s=0.5, rms=0.1, velocity=80, f0_hz=220.0, f0_confidence=1.0)
        memory.learn(Percept(event_id=index, token=0, features=rng.random(22).astype(np.float32), descriptors=d))
    audio = tmp_path / "audio.json"
    save_musichal_model(audio, oracle_parts=memory.to_model_parts(), perception=audio_model)
    audio_meta, audio_arrays = load_model(audio)
    save_model(old, {**audio_meta, "musichal_model": 3}, audio_arrays)
    loaded = load_musichal_model(old)
    assert loaded.spec.views == ("traditional",) and "schema 3" in describe_model(loaded)
    # a file claiming a schema this MusicHal does not know is one line
    save_model(old, {**meta, "musichal_model": 5}, arrays)
    with pytest.raises(ModelFormatError) as error:
        load_musichal_model(old)
    assert "\n" not in str(error.value)
