"""What ``musichal`` prints from the live stack's figures: the running line and the ``--stats`` table (no Ray)."""

from __future__ import annotations

from services.stack import LiveStack
from shared.config import MusicHalConfig


class _Osc:
    host, port = "127.0.0.1", 9000


class _MidiIn:
    port_name = "nanoKONTROL"


def test_running_lines_name_the_control_inputs_then_where_and_how_the_stack_listens():
    stack = LiveStack(
        MusicHalConfig(),
        control_inputs=[_Osc(), _MidiIn()],
        encoder_info={
            "node_id": "0123456789abcdef",
            "node_ip": "10.0.0.2",
            "local": False,
            "input_rate_hz": 16000,
            "device": "cpu",
            "views": ["traditional", "wav2vec"],
            "wav2vec": "facebook/wav2vec2-base layer 6",
        },
    )
    lines = stack.running_lines()
    assert lines[:2] == [
        "OSC on 127.0.0.1:9000 (musichal --controls prints the map)",
        "MIDI control on nanoKONTROL (musichal --controls prints the map)",
    ]
    assert lines[2] == (
        "running (encoder on node 01234567 10.0.0.2, remote, windows by value at 16000 Hz, device cpu; "
        "listening with traditional + wav2vec, facebook/wav2vec2-base layer 6, learning live); "
        "Ctrl-C to stop"
    )
    stack.perception_spec, stack.control_inputs = object(), []
    stack.encoder_info = {"local": True, "views": ["traditional"]}
    assert stack.running_lines() == [
        "running (encoder on node ? , local rings, device ?; listening with traditional "
        "as the model was trained); Ctrl-C to stop"
    ]


def test_latency_table_lists_each_measured_hop_of_each_stage_in_order():
    figures = {"count": 12, "p50": 1.0, "p95": 2.5, "p99": 3.25}
    final = {
        "midi_out": {"latency_ms": {"pipeline": figures, "unused": {"count": 0}}},
        "encoder": {"latency_ms": {"encode": {**figures, "count": 3}}},
        "capture": {"latency_ms": {"x": figures}},
    }
    assert LiveStack.latency_table(final).splitlines() == [
        "per-stage latency (ms):",
        "  encoder   encode               n=     3  p50    1.000  p95    2.500  p99    3.250",
        "  midi_out  pipeline             n=    12  p50    1.000  p95    2.500  p99    3.250",
    ]


def test_clocked_steps_and_reactions_are_shown_apart_in_the_status_line_and_the_stats_table():
    counters = {
        "scheduler_clocked_notes": 200,
        "scheduler_clocked_late_on_arrival": 1,
        "scheduler_clocked_late": 2,
        "scheduler_reaction_notes": 50,
        "scheduler_reaction_late_on_arrival": 50,
        "scheduler_reaction_late": 48,
        "notes_received": 250,
    }
    final = {
        "midi_out": {
            "counters": counters,
            "latency_ms": {"onset_to_note": {"count": 50, "p50": 31.5, "p95": 44.25, "p99": 50.0}},
        }
    }
    line = LiveStack.status_line(final, 2.0)
    assert "late steps 1/200" in line and "reaction p95 44.25 ms" in line
    table = LiveStack.latency_table(final).splitlines()
    assert table[-2:] == [
        "  midi_out  clocked notes (steps on the own clock): 200, late on arrival 1, sent late 2",
        "  midi_out  reaction notes (reactions, due at once): 50, late on arrival 50, sent late 48",
    ]
