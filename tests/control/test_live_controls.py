"""Live controls on the whole stack: OSC over a real UDP socket, MIDI CCs through a real JACK port; session replay."""

from __future__ import annotations

import numpy as np
import pytest

from shared.config import MusicHalConfig
from testkit.audio import random_note_clip
from testkit.midi import JackReader, note_on_messages, panic_starts, unique_name
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    return random_note_clip(path, seed=4, pitches=[60, 62, 64, 67, 69], count=36, ioi_s=0.3, note_s=0.26, start_s=0.2)


class Probe:
    def __init__(self, stack):
        import ray

        self.ray, self.stack = ray, stack

    def oracle(self) -> dict:
        return self.ray.get(self.stack.actors["oracle"].stats.remote(), timeout=5)["counters"]

    def midi(self) -> dict:
        return self.ray.get(self.stack.actors["midi_out"].stats.remote(), timeout=5)["counters"]

    def after_percepts(self, n: int, timeout_s: float = 30.0) -> dict:
        start = self.oracle()["percepts"] + self.oracle()["gated"]
        assert wait_until(lambda: self.oracle()["percepts"] >= start + n, timeout_s), "the input stopped coming"
        return self.oracle()


def test_osc_and_midi_cc_change_what_the_running_stack_does(jack_server, ray_local, clip):
    import rtmidi
    from pythonosc.udp_client import SimpleUDPClient

    from services.stack import LiveStack

    reader = JackReader()
    port = reader.open_virtual("in")
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": "gm-safe",
            "generation.seed": 2,
            "control.osc_port": 0,
            "control.midi_in_port": "virtual",
            "control.midi_in_api": "jack",
            "control.input_gate": False,
        }
    )  # the input is a file: nothing to protect here
    stack = LiveStack(config, input_file=str(clip), loop=True)
    controller = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=unique_name("mh-controller"))
    try:
        stack.start()
        osc_server = next(s for s in stack.control_inputs if hasattr(s, "host"))
        midi_in = next(s for s in stack.control_inputs if hasattr(s, "port_name"))
        assert osc_server.host == "127.0.0.1"
        osc = SimpleUDPClient("127.0.0.1", osc_server.port)
        destinations = controller.get_ports()  # MusicHal's control input is a JACK MIDI input: open it as our output
        assert midi_in.port_name in destinations, (midi_in.port_name, destinations)
        controller.open_port(destinations.index(midi_in.port_name))
        hub = stack.control
        probe = Probe(stack)
        assert wait_until(lambda: len(note_on_messages(reader.messages)) >= 3, 60), "the stack never played"

        # mute over OSC: the oracle keeps deciding, nothing sounds after the mute's panic reached the synth
        before_mute = len(reader.wait_for(0, timeout_s=0))
        osc.send_message("/musichal/mute", 1)
        assert hub.wait_for(lambda h: h.state.mute, 5)
        assert wait_until(lambda: panic_starts(reader.wait_for(0, timeout_s=0)[before_mute:]), 20), "mute sent no panic"
        muted_from = before_mute + panic_starts(reader.wait_for(0, timeout_s=0)[before_mute:])[0] + 32
        decided = probe.oracle()["notes"]
        assert wait_until(lambda: probe.oracle()["notes"] >= decided + 6, 40), "no decisions while muted"
        assert wait_until(lambda: probe.midi()["dropped_muted"] > 0, 10)
        assert note_on_messages(reader.wait_for(0, timeout_s=0)[muted_from:]) == [], "a note sounded while muted"
        reader.clear()
        osc.send_message("/musichal/mute", 0)
        assert hub.wait_for(lambda h: not h.state.mute, 5)
        assert wait_until(lambda: len(note_on_messages(reader.messages)) >= 1, 30), "unmute brought no notes"

        # learning off by MIDI CC64 = 0 through the JACK port: the memory stops growing while percepts keep coming
        controller.send_message([0xB0, 64, 0])
        assert hub.wait_for(lambda h: not h.state.learning, 5)
        states = probe.oracle()["stage_states"]
        after = probe.after_percepts(8)
        assert after["stage_states"] == states
        controller.send_message([0xB0, 64, 127])
        assert hub.wait_for(lambda h: h.state.learning, 5)
        assert probe.after_percepts(4)["stage_states"] > states

        # density: CC21 low (MIDI) vs high (OSC) → notes per input event
        def notes_per_percept(n: int) -> float:
            before = probe.oracle()
            after = probe.after_percepts(n)
            return (after["notes"] - before["notes"]) / (after["percepts"] - before["percepts"])

        osc.send_message("/musichal/density", 3.0)
        assert hub.wait_for(lambda h: h.state.density == 3.0, 5)
        probe.after_percepts(4)  # let the phrase decided before the change end
        dense = notes_per_percept(16)
        controller.send_message([0xB0, 21, 3])  # density ≈ 0.09
        assert hub.wait_for(lambda h: abs(h.state.density - 4 * 3 / 127) < 0.001, 5)
        probe.after_percepts(4)
        sparse = notes_per_percept(16)
        assert dense > 3 * sparse, f"density 3 gave {dense:.2f} notes per event, density 0.09 gave {sparse:.2f}"
        osc.send_message("/musichal/density", 3.0)
        assert hub.wait_for(lambda h: h.state.density == 3.0, 5)
        oracle_state = stack.stats()["oracle"]["control"]
        assert oracle_state["density"] == 3.0 and oracle_state["learning"] is True
        assert "d=3.00" in stack.status_line(stack.stats(), 1.0)
    finally:
        stack.stop(graceful=False)
        controller.close_port()
        controller.delete()
        reader.close()


def test_replay_of_a_logged_session_reproduces_the_midi_bytes(jack_server, ray_local, clip, tmp_path):
    from launch import main
    from services.midi_out.recorder import read_smf_messages
    from services.oracle.player.replay import replay_session
    from services.oracle.player.session import read_session
    from services.stack import LiveStack

    reader = JackReader()
    port = reader.open_virtual("in")
    live_mid, log = tmp_path / "live.mid", tmp_path / "session.jsonl"
    # gated percepts are replayed too: the blanket gate ("time") surely gates some of the file's onsets during own
    # notes (the echo-aware default keeps them: they are not echoes of MusicHal's notes)
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": "mpe",
            "midi.record_path": str(live_mid),
            "generation.seed": 11,
            "control.input_gate": True,
            "control.gate_mode": "time",
        }
    )
    stack = LiveStack(config, input_file=str(clip), session_log=str(log))
    try:
        stack.start()
        assert wait_until(lambda: stack.stats()["oracle"]["counters"]["percepts"] >= 12, 60)
        stack.set_control("density", 2.5)  # a control change in the middle is part of the session
        stack.set_control("mode", "contrast")
        assert wait_until(stack.finished, 60)
        final = stack.stop(graceful=True, drain_s=8.0)
    finally:
        stack.stop(graceful=False)
        reader.close()
    records = read_session(log)
    kinds = {r["kind"] for r in records}
    assert {"header", "event", "percept", "notes", "control", "stop"} <= kinds
    result = replay_session(log)
    assert result.notes and result.identical, "the replayed decisions differ from the live ones"
    assert [c["name"] for c in result.controls] == ["density", "mode"]
    assert result.counters["gated"] > 0 and result.counters["percepts"] > result.counters["gated"]
    replay_mid = tmp_path / "replay.mid"
    assert main(["replay", str(log), "--record", str(replay_mid)]) == 0
    live = [bytes(m) for _, m in read_smf_messages(live_mid)]
    replayed = [bytes(m) for _, m in read_smf_messages(replay_mid)]
    assert sum(1 for m in live if m[0] & 0xF0 == 0x90) >= 10

    def per_channel(messages):
        channels: dict = {}
        for m in messages:
            channels.setdefault(m[0] & 0x0F if m[0] < 0xF0 else "system", []).append(m)
        return channels

    # every channel carries the same bytes in the same order; across channels, messages due at (nearly) the same
    # moment may leave the live scheduler in either order (a reaction note is decided for "now" and reaches it a
    # little late, after another channel's note-off due at that moment), which changes no channel's stream
    assert sorted(replayed) == sorted(live), "the replayed MIDI messages differ from the live recording"
    assert per_channel(replayed) == per_channel(live), "a channel's MIDI bytes differ between replay and live"

    def on_times(path):
        return np.array([t for t, m in read_smf_messages(path) if m[0] & 0xF0 == 0x90])

    # the two files start at different setup times: align them on the median difference, not on the first note-on
    # (a response's first note is decided for "now" and may reach the live scheduler late)
    # the live file stamps each note-on when it was sent (its scheduled time + the scheduler's lateness, measured),
    # the replay at its scheduled time: their offsets may spread by the live run's lateness spread, and no more
    offsets = on_times(live_mid) - on_times(replay_mid)
    late_s = final["midi_out"]["latency_ms"]["schedule_error"]["max"] / 1000.0  # the live run's worst lateness
    assert np.abs(offsets - np.median(offsets)).max() <= max(0.05, late_s + 0.01), (late_s, offsets)
