"""Each oracle state stores its slice's notes and expression (CSR columns, model schema 3; older files still load)."""

from __future__ import annotations

import numpy as np
import pytest

from services.oracle.memory.audio_oracle import AudioOracle
from services.oracle.memory.states import EXPRESSION_POINTS, MAX_SLICE_NOTES, StateStore, slice_columns, slice_fields
from services.trainer.shards import descriptor_columns, descriptors_from_columns
from shared.errors import ModelFormatError
from shared.messages import EventDescriptors
from shared.model_io import load_model, save_model


def _descriptors(i: int) -> EventDescriptors:
    notes = tuple(
        (48 + (i + k * 4) % 30, 0.01 * k, 0.3 + 0.01 * k, 60 + k, float(k) - 1.5, 0.5 * k) for k in range(i % 5)
    )
    return EventDescriptors(
        onset_s=0.5 * i,
        duration_s=0.5,
        rms=0.1,
        velocity=70,
        f0_hz=220.0,
        f0_confidence=0.8,
        chroma_peaks=(i % 12,),
        notes=notes,
        pressure=tuple(range(100, 100 - EXPRESSION_POINTS, -1)),
        f0_cents=tuple(float(i) for _ in range(EXPRESSION_POINTS)),
        timbre=40 + i % 50,
    )


def _oracle(n: int = 40) -> AudioOracle:
    rng = np.random.default_rng(3)
    ao = AudioOracle(0.5, 4)
    for i in range(n):
        ao.add(rng.normal(size=4), token=i % 7, descriptors=_descriptors(i), event_id=i)
    return ao


def test_states_round_trip_their_notes_and_expression(tmp_path):
    ao = _oracle()
    meta, arrays = ao.to_model_parts()
    assert arrays["oracle.state.note_offsets"].shape == (ao.n_states + 1,)
    assert arrays["oracle.state.note_pitch"].ndim == 1  # flat (CSR), not padded
    save_model(tmp_path / "ao.json", {"ao": meta}, arrays)
    meta2, arrays2 = load_model(tmp_path / "ao.json")
    back = AudioOracle.from_model_parts(meta2["ao"], arrays2)
    for state in range(1, ao.n_states):
        d = _descriptors(state - 1)
        info = back.state_info(state)
        assert info.notes == d.notes and len(info.notes) == (state - 1) % 5
        assert (info.pressure, info.f0_cents, info.timbre) == (d.pressure, d.f0_cents, d.timbre)
    assert back.state_info(0).notes == ()


def test_files_without_slice_notes_still_load():
    ao = _oracle(20)
    meta, arrays = ao.to_model_parts()
    old = {
        k: v
        for k, v in arrays.items()
        if not any(
            k.endswith(s)
            for s in (
                "note_offsets",
                "note_pitch",
                "note_velocity",
                "note_onset_s",
                "note_duration_s",
                "note_bend_cents",
                "note_glide_cents",
                "pressure",
                "f0_cents",
                "timbre",
            )
        )
    }
    back = AudioOracle.from_model_parts(meta, old)
    assert back.state_info(5).notes == () and back.state_info(5).timbre == 64
    assert back.state_info(5).chroma_peaks == ao.state_info(5).chroma_peaks
    back.add(np.zeros(4), token=1, descriptors=_descriptors(3))  # and grows with notes afterwards
    assert back.state_info(back.n_states - 1).notes == _descriptors(3).notes


def test_bad_slice_arrays_are_refused():
    ao = _oracle(20)
    meta, arrays = ao.to_model_parts()
    for name, value in [
        ("oracle.state.note_offsets", arrays["oracle.state.note_offsets"][::-1].copy()),
        ("oracle.state.note_pitch", arrays["oracle.state.note_pitch"][:-1]),
        ("oracle.state.timbre", arrays["oracle.state.timbre"] + 500),
    ]:
        with pytest.raises(ModelFormatError):
            AudioOracle.from_model_parts(meta, {**arrays, name: value})
    with pytest.raises(ModelFormatError):
        AudioOracle.from_model_parts(meta, {k: v for k, v in arrays.items() if not k.endswith("note_pitch")})


def test_trainer_columns_carry_the_slices_into_the_oracle():
    descriptors = [_descriptors(i) for i in range(12)]
    columns = descriptor_columns(descriptors)
    assert columns["note_pitch"].shape == (12, MAX_SLICE_NOTES)
    assert descriptors_from_columns(columns) == descriptors
    by_columns, by_descriptors = AudioOracle(0.5, 4), AudioOracle(0.5, 4)
    frames = np.random.default_rng(1).normal(size=(12, 4))
    by_columns.extend(frames, tokens=range(12), columns=columns)
    by_descriptors.extend(frames, tokens=range(12), descriptors=descriptors)
    for state in range(by_columns.n_states):
        assert by_columns.state_info(state).notes == by_descriptors.state_info(state).notes
        assert by_columns.state_info(state).pressure == by_descriptors.state_info(state).pressure
    assert slice_fields({"velocity": np.ones(3)}) == [{}, {}, {}]  # shards without slice columns
    assert StateStore().notes(0) == ()
    assert slice_columns([])["timbre"].shape == (0,)
