"""services/compare/musical.py: each listening measure on hand-made note lists, where its answer is known."""

from __future__ import annotations

import pytest

from services.compare.musical import (
    copy_share,
    harmonic_agreement,
    key_only_agreement,
    late_parrot_agreement,
    margin_floor,
    pc_histogram,
    repeat_share,
    sounding_classes,
    top_line,
)
from shared.errors import ParameterError

#: C major for a second, then D minor for a second, then G major (pitch, start, duration)
PROGRESSION = [
    (48, 0.0, 1.0),
    (64, 0.0, 1.0),
    (67, 0.0, 1.0),
    (72, 0.0, 1.0),
    (50, 1.0, 1.0),
    (65, 1.0, 1.0),
    (69, 1.0, 1.0),
    (74, 1.0, 1.0),
    (43, 2.0, 1.0),
    (62, 2.0, 1.0),
    (67, 2.0, 1.0),
    (71, 2.0, 1.0),
]


def test_agreement_counts_the_pitch_classes_sounding_now_in_any_octave():
    in_time = [(36, 0.5), (79, 0.5), (57, 1.5), (86, 1.5), (59, 2.5), (55, 2.7)]  # chord tones, other octaves
    assert harmonic_agreement(in_time, PROGRESSION) == 1.0
    wrong = [(61, 0.5), (66, 0.5), (63, 1.5), (68, 2.5)]  # C#, F#, D#, G#: never in the piece
    assert harmonic_agreement(wrong, PROGRESSION) == 0.0
    # the right classes at the wrong moment: B in the C chord, C in the G chord (each > 250 ms from its chord)
    assert harmonic_agreement([(71, 0.4), (60, 2.6)], PROGRESSION) == 0.0
    assert harmonic_agreement([], PROGRESSION) is None


def test_agreement_window_is_plus_minus_the_tolerance():
    score = [(60, 1.0, 0.5)]  # C from 1.0 to 1.5
    assert harmonic_agreement([(60, 0.8)], score) == 1.0  # starts 200 ms later: within 250 ms
    assert harmonic_agreement([(60, 0.7)], score) == 0.0  # 300 ms before it starts
    assert harmonic_agreement([(60, 1.7)], score) == 1.0  # ended 200 ms before
    assert harmonic_agreement([(60, 1.8)], score) == 0.0
    assert harmonic_agreement([(60, 0.7)], score, tolerance_s=0.35) == 1.0
    rows = sounding_classes(score, [0.7, 1.2], tolerance_s=0.25)
    assert rows.shape == (2, 12) and not rows[0].any() and rows[1].tolist() == [True] + [False] * 11


def test_key_only_player_knows_the_key_not_the_moment():
    # C (1 s) then D (1 s): half the histogram each; in the middle of either only one class sounds
    score = [(60, 0.0, 1.0), (62, 1.0, 1.0)]
    assert key_only_agreement([0.5, 1.5], score) == pytest.approx(0.5)
    assert key_only_agreement([1.0], score) == pytest.approx(1.0)  # both sound within 250 ms of the change
    # a follower playing what sounds beats it; one avoiding it falls below it
    key_only = key_only_agreement([0.5, 1.5, 2.5], PROGRESSION)
    follower = harmonic_agreement([(64, 0.5), (65, 1.5), (71, 2.5)], PROGRESSION)
    contrary = harmonic_agreement([(62, 0.5), (60, 1.5), (64, 2.5)], PROGRESSION)  # diatonic, never in the chord
    assert contrary == 0.0 < key_only < 0.6 < follower == 1.0
    assert key_only_agreement([], score) is None


def test_late_parrot_agrees_unless_it_is_later_than_the_notes_last():
    assert late_parrot_agreement(PROGRESSION) == 1.0
    staccato = [(60 + i, 0.5 * i, 0.1) for i in range(6)]  # a chromatic run of 100 ms notes
    assert late_parrot_agreement(staccato) == 1.0
    assert late_parrot_agreement(staccato, delay_s=0.5) == 0.0  # the next note has taken over by then


def test_top_line_and_repeat_share():
    assert top_line(PROGRESSION) == [72, 74, 71]
    assert top_line([(60, 0.0, 2.0), (67, 0.0, 2.0), (64, 1.0, 0.5)]) == [67, 64]
    assert repeat_share([60, 60, 60, 60]) == 1.0
    assert repeat_share([60, 62, 60, 62]) == 0.0
    assert repeat_share([60, 72, 72]) == 0.5  # an octave is not a repeat
    assert repeat_share([60]) == 0.0


def test_copy_share_finds_copies_at_any_octave_and_nothing_else():
    line = [67, 69, 71, 72, 74, 72, 71, 69, 67]
    assert copy_share([55, 57, 59, 60, 62], line) == 1.0  # the line an octave down
    assert copy_share([68, 70, 72, 73, 75], line) == 0.0  # a semitone up: not verbatim
    assert copy_share([67, 71, 69, 72, 67, 74], line) == 0.0  # its notes in another order
    assert copy_share([67, 69, 71, 72, 60, 64], line) == pytest.approx(1 / 3)  # one of three 4-grams copied
    assert copy_share([67, 69, 71], line) is None
    with pytest.raises(ParameterError):
        copy_share([60] * 8, line, n=0)


def test_histogram_and_margin_floor():
    hist = pc_histogram(PROGRESSION)
    assert hist[7] == 3.0 and hist[2] == 3.0 and hist[1] == 0.0 and hist.sum() == 12.0
    assert margin_floor(PROGRESSION, PROGRESSION) == pytest.approx(0.0)
    c_major = [(60 + i, float(k), 1.0) for k, i in enumerate((0, 2, 4, 5, 7, 9, 11))]
    f_sharp_major = [(p + 6, s, d) for p, s, d in c_major]  # shares B and F/E# only
    g_major = [(p + 7, s, d) for p, s, d in c_major]  # shares six classes
    assert margin_floor(c_major, f_sharp_major) > 0.5 > margin_floor(c_major, g_major) > 0.0


def test_bad_scores_are_refused():
    with pytest.raises(ParameterError):
        harmonic_agreement([(60, 0.0)], [(60, 0.0, -1.0)])
    with pytest.raises(ParameterError):
        pc_histogram([(60, float("nan"), 1.0)])
    with pytest.raises(ParameterError):
        sounding_classes(PROGRESSION, [0.0], tolerance_s=-0.1)
