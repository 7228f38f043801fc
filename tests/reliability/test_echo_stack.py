"""Listening while playing, through the real stack (the short version of ``benchmarks/echo_stack.py``).

A musician's line in C2..B2 plays into the capture's JACK input; MusicHal (imitate, the default) plays along, its MIDI
out drives a live fluidsynth JACK client whose audio goes back into the same input (``testkit/echo_loop.py``). The
echo-aware gate (``control.gate_mode = "content"``) must learn the musician's onsets and drop the echoes; the blanket
time gate, replayed on the very same onsets, drops many of the musician's.

Nothing here depends on a timing window being hit: detected onsets are named by generous windows around ground truth
(latencies measured from the data), and the assertions are on counts that follow from behaviour (the stack hears the
musician; MusicHal plays before the musician starts, so pure echoes exist; replaying the logged gate mode gives the
logged verdicts back; the blanket gate on the same onsets keeps fewer of the musician's) and on shares with wide
margins under the benchmark's goals (musician >= 0.9, echo <= 0.1): on this 2-core machine shared with other jobs
(load average 11-24) the JACK graph fell 1.5-10 s behind the wall clock in 20 s takes, notes left late and echoes were
detected up to ~250 ms after their scheduled note-on, past the gate's attack window; measured per take then (80 ms
window): musician 0.78-1.0 learned, echoes 0.07-0.47. The margins catch a broken gate (the old profile test kept
~70 % of the echoes at our attacks; a gate that drops everything learns none of the musician), not a loaded machine.
"""

from __future__ import annotations

import pytest

from shared.config import MusicHalConfig
from testkit.audio import render_midi_notes
from testkit.echo_loop import (
    classify,
    cycle_time,
    gate_verdicts,
    learned_shares,
    musician_line,
    run_loop,
    training_line,
)

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]


def test_classify_names_onsets_by_source_and_measures_latency():
    musician = [1.0, 2.0, 3.0, 4.0]
    echoes = [1.5, 2.5, 3.02, 5.0]
    detected = [t + 0.01 for t in musician] + [1.5, 2.5, 5.12, 7.0, 2.47]
    named = classify(detected, musician, echoes)
    assert named["latency_musician_s"] == pytest.approx(0.01, abs=0.005)
    assert named["labels"] == ["musician", "musician", "both", "musician", "echo", "echo", "echo", "other", "other"]
    # 30 ms before a note-on is not its echo (a synth cannot sound early): the musician's onset the note answered


def test_cycle_time_follows_the_jack_graph_not_the_wall_clock():
    cycles = [(0, 10.0), (256, 10.2), (512, 10.205)]  # a stalled cycle: the graph ran late
    assert cycle_time(cycles, 0) == 10.0
    assert cycle_time(cycles, 300) == pytest.approx(10.2 + 44 / 48000)
    assert cycle_time(cycles, 600) == pytest.approx(10.205 + 88 / 48000)


def test_musician_learned_and_echo_dropped_through_the_live_loop(jack_server, ray_local, tmp_path):
    from services.trainer.pipeline import train

    model = tmp_path / "model.json"
    train(
        [render_midi_notes(training_line(21), tmp_path / "train.wav")],
        config=MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 16}),
        output=model,
        cache_dir=tmp_path / "cache",
    )
    notes = musician_line(7, 14.0, start_s=3.0)  # 3 s of MusicHal alone first: pure echoes, enough to count
    run = run_loop(
        model=model, musician_wav=render_midi_notes(notes, tmp_path / "musician.wav"), mode="content", workdir=tmp_path
    )
    figures = learned_shares(run, notes)
    logged = [p["gated"] for p in run["percepts"] if not p["early"] and p["onset_t"] is not None]
    assert gate_verdicts(run["session"], "content") == logged  # the offline replay is the live gate
    counts = figures["counts"]
    musician = {k: sum(counts.get(c, {}).get(k, 0) for c in ("musician", "both")) for k in ("onsets", "learned")}
    echo = counts.get("echo", {"onsets": 0, "learned": 0})
    print(f"echo loop: {figures}")
    assert len(run["received"]) >= 8, "MusicHal hardly played"
    assert musician["onsets"] >= 8, counts  # the stack heard the musician (11 s, ~16 onsets)
    # it plays from its memory for 3 s before the musician starts: pure echoes, enough that the share below says
    # something (with 2, one echo learned of 2 passed)
    assert echo["onsets"] >= 6, counts
    # the musician's onsets away from MusicHal's attacks are kept; those at its attacks ("both") are not separable
    # from an echo without slice notes (a pitch-class profile has no octave) and are dropped: with steps on the
    # musician's tracked beat they can be many (7 of 15 in one 12 s take, 1 of 53 in the benchmark's two takes), so
    # they are printed, not bounded here
    alone = counts.get("musician", {"onsets": 0, "learned": 0})
    assert alone["onsets"] >= 5 and alone["learned"] >= 0.8 * alone["onsets"], counts
    assert echo["learned"] <= 0.5 * echo["onsets"], counts
    # the blanket gate on the same onsets drops every one during MusicHal's answers (notes + 250 ms release): it keeps
    # fewer of the musician's (its drops include all of the echo-aware gate's, so fewer means at least one more;
    # measured in the benchmark's imitate takes: 0.45 kept against 0.98)
    timed = gate_verdicts(run["session"], "time")
    named = classify(
        [p["onset_t"] for p in run["percepts"] if not p["early"] and p["onset_t"] is not None],
        [cycle_time(run["cycles"], round(n[1] * 48000)) for n in notes],
        [t for t, _ in run["received"]],
    )
    kept_by_time = sum(not blocked for blocked, label in zip(timed, named["labels"]) if label in ("musician", "both"))
    assert kept_by_time < musician["learned"], (kept_by_time, counts)
