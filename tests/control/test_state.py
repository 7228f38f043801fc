"""The control table, state, OSC/MIDI maps, hub, refusals, config section and the --controls text (pure, no
servers)."""

from __future__ import annotations

import pytest

from services.console.state import control_specs
from services.control.hub import ControlHub
from services.control.state import (
    REFUSALS_KEPT,
    ControlChange,
    ControlState,
    cc_map,
    controls_text,
    midi_to_change,
    osc_map,
    osc_to_change,
)
from services.oracle.memory.store import OracleMemory
from services.oracle.player.live import LiveOracle
from shared import controls as table
from shared.config import MusicHalConfig
from shared.controls import CONTROLS, Control, calls
from shared.errors import ParameterError

DEFAULT_CC_MAP = cc_map()


def test_state_validates_and_reports_only_real_changes():
    state = ControlState(MusicHalConfig().with_overrides({"generation.density": 1.5}))
    assert state.density == 1.5 and state.learning and not state.mute
    assert state.apply(ControlChange("density", 0.5)) == {"density": 0.5}
    assert state.apply(ControlChange("density", 0.5)) == {}
    assert state.apply(ControlChange("mode", 2)) == {"mode": "lead"}
    for bad in (
        ControlChange("density", 5.0),
        ControlChange("continuity", -0.1),
        ControlChange("mode", "loud"),
        ControlChange("profile", "gm"),
        ControlChange("mute", 7),
        ControlChange("density", "x"),
    ):
        with pytest.raises(ParameterError):
            state.apply(bad)
    with pytest.raises(ParameterError):
        ControlChange("volume", 1)
    assert state.apply(ControlChange("mute", None)) == {"mute": True}  # toggle
    assert state.apply(ControlChange("mute", None)) == {"mute": False}
    state.apply(ControlChange("freeze", 1))
    assert state.learn and not state.learning and "FROZEN" in state.summary()


def test_osc_addresses_map_to_changes():
    assert osc_to_change("/musichal/density", [0.25]) == ControlChange("density", 0.25, source="osc")
    assert osc_to_change("/musichal/panic").name == "panic"
    assert set(osc_map()) >= {"mode", "continuity", "density", "mute", "learn", "freeze", "profile", "panic"}
    for address, args in (("/other/density", [1]), ("/musichal/volume", [1]), ("/musichal/density", [])):
        with pytest.raises(ParameterError):
            osc_to_change(address, args)


def test_midi_map_defaults_overrides_and_channel_filter():
    cc = DEFAULT_CC_MAP
    assert midi_to_change([0xB0, cc["continuity"], 127]).value == 1.0
    assert midi_to_change([0xB0, cc["density"], 0]).value == 0.0
    assert midi_to_change([0xB0, cc["mode"], 100]).value == "lead"
    assert midi_to_change([0xB0, cc["learn"], 0]).value is False
    assert midi_to_change([0x90, 37, 100]).name == "panic"
    assert midi_to_change([0x90, 36, 100]) == ControlChange("mute", None, source="midi")  # toggle
    assert midi_to_change([0x90, 36, 0]) is None  # note-off
    assert midi_to_change([0xB0, 99, 10]) is None
    moved = midi_to_change([0xB3, 30, 127], cc_map={"density": 30})
    assert moved.name == "density" and moved.value == 4.0
    assert midi_to_change([0xB3, 30, 127], cc_map={"density": 30}, channel=0) is None


def test_hub_turns_learn_and_freeze_into_one_learning_flag_and_counts_bad_messages():
    applied = []
    hub = ControlHub(MusicHalConfig(), lambda name, value: applied.append((name, value)))
    hub.handle_osc("/musichal/freeze", 1)
    hub.handle_osc("/musichal/learn", 0)  # already not learning: nothing effective
    hub.handle_osc("/musichal/freeze", 0)
    hub.handle_osc("/musichal/learn", 1)
    hub.handle_osc("/musichal/density", 9.0)
    hub.handle_osc("/musichal/nothing")
    hub.handle_midi([0xB0, 21, 64])
    hub.handle_midi([0xF8])
    assert applied == [("learning", False), ("learning", True), ("density", round(4 * 64 / 127, 4))]
    assert hub.errors == 2 and "nothing" in hub.last_error and hub.ignored == 1
    assert hub.snapshot()["learning"] is True


def test_control_config_section_and_controls_text(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        "[control]\nosc_port = 9100\ncc_map = { density = 30 }\nnote_map = { panic = 48 }\ninput_gate = false\n"
    )
    config = MusicHalConfig.from_toml(toml)
    assert config.control.osc_port == 9100 and config.control.cc_map == {"density": 30}
    text = controls_text(config)
    assert (
        "127.0.0.1:9100" in text and "CC30  density" in text and "note 48  panic" in text and "input gate: off" in text
    )
    for bad in ({"osc_port": 70000}, {"cc_map": {"density": 200}}, {"gate_release_ms": -1}, {"midi_in_api": "x"}):
        with pytest.raises(ParameterError):
            MusicHalConfig.from_mapping({"control": bad})


def test_voice_controls_over_osc_and_midi_cc():
    applied = []
    hub = ControlHub(MusicHalConfig().with_overrides({"voices.comping": False}), lambda n, v: applied.append((n, v)))
    assert osc_to_change("/musichal/voice/bass/range", [30, 50]) == ControlChange(
        "voice/bass/range", (30, 50), source="osc"
    )
    hub.handle_osc("/musichal/voice/bass/on", 0)
    hub.handle_osc("/musichal/voice/bass/range", 30, 50)
    hub.handle_osc("/musichal/voice/comping/density", 1.5)
    hub.handle_osc("/musichal/voice/melody/range", 55, 79)
    hub.handle_midi([0xB0, DEFAULT_CC_MAP["voice/comping/on"], 127])
    hub.handle_midi([0xB0, DEFAULT_CC_MAP["voice/bass/density"], 127])
    assert applied == [
        ("voice/bass/on", False),
        ("voice/bass/range", (30, 50)),
        ("voice/comping/density", 1.5),
        ("voice/melody/range", (55, 79)),
        ("voice/comping/on", True),
        ("voice/bass/density", 2.0),
    ]
    for address, args in (
        ("/musichal/voice/bass/range", (50, 45)),
        ("/musichal/voice/bass/range", (40, 45)),
        ("/musichal/voice/bass/range", (40,)),
        ("/musichal/voice/comping/density", (3.0,)),
        ("/musichal/voice/melody/density", (1.0,)),
        ("/musichal/voice/drums/on", (1,)),
    ):
        before = hub.errors
        hub.handle_osc(address, *args)
        assert hub.errors == before + 1, address
    assert len(applied) == 6, "a bad voice control changes nothing"
    state = hub.snapshot()["voices"]
    assert state["bass"] == {"on": False, "range": [30, 50], "density": 2.0} and state["comping"]["on"] is True
    assert "CC25  voice/bass/on" in controls_text(MusicHalConfig())
    assert "/musichal/voice/comping/range" in controls_text(MusicHalConfig())


def test_a_refused_control_is_kept_with_its_reason_for_a_ui():
    hub = ControlHub(MusicHalConfig())
    hub.handle_osc("/musichal/mode", "loud")
    hub.handle_osc("/musichal/density", 9.0)
    hub.handle_osc("/musichal/nothing", 1)
    with pytest.raises(ParameterError):
        hub.handle(ControlChange("continuity", 2.0, source="api"))
    refusals = hub.snapshot()["refusals"]
    assert [(r["control"], r["source"]) for r in refusals] == [
        ("mode", "osc"),
        ("density", "osc"),
        ("/musichal/nothing", "osc"),
        ("continuity", "api"),
    ]
    assert "mode must be one of imitate, contrast, lead, got 'loud'" in refusals[0]["reason"]
    assert "density must be in 0..4, got 9.0" in refusals[1]["reason"] and refusals[1]["value"] == 9.0
    assert "unknown OSC address" in refusals[2]["reason"]
    assert hub.snapshot()["density"] == 1.0 and hub.snapshot()["mode"] == "imitate"  # nothing refused was applied
    for i in range(REFUSALS_KEPT + 5):  # bounded: the oldest drop out
        hub.handle_osc("/musichal/tempo", 10.0 + i)
    refusals = hub.snapshot()["refusals"]
    assert len(refusals) == REFUSALS_KEPT and refusals[-1]["value"] == 10.0 + REFUSALS_KEPT + 4


def test_one_row_added_to_the_table_shows_in_every_view(monkeypatch):
    """Adding a control is one row: the OSC map, the MIDI CC map, --controls, the stack's routing and the decision
    object's apply_control all see it."""
    row = Control("swing", "number", "a fake control for this test", key="generation.tempo", cc=90)
    monkeypatch.setitem(CONTROLS, "swing", row)
    assert osc_map()["swing"] == ("f", "a fake control for this test")
    assert osc_to_change("/musichal/swing", [2.0]) == ControlChange("swing", 2.0, source="osc")
    assert cc_map()["swing"] == 90 and midi_to_change([0xB0, 90, 127]) == ControlChange("swing", 4.0, source="midi")
    text = controls_text(MusicHalConfig())
    assert "/musichal/swing" in text and "a fake control for this test" in text and "CC90  swing" in text
    assert "0..127 -> 0.25..4" in text.split("CC90  swing")[1].splitlines()[0]  # bounds from the config
    assert calls("swing", 2.0) == [("oracle", "control", ("swing", 2.0))]  # the stack's routing
    config = MusicHalConfig()
    live = LiveOracle(config, OracleMemory(config, background=False))
    live.apply_control("swing", 2.0)
    assert live.config.generation.tempo == 2.0 and live.player.config.tempo == 2.0
    applied = []
    hub = ControlHub(config, lambda name, value: applied.append((name, value)))
    hub.handle_osc("/musichal/swing", 3.0)
    hub.handle_osc("/musichal/swing", 5.0)  # out of generation.tempo's bounds: refused
    assert applied == [("swing", 3.0)] and hub.snapshot()["swing"] == 3.0
    assert "swing must be in 0.25..4" in hub.snapshot()["refusals"][0]["reason"]
    # the console (a third view): its widget comes from the row, its value from the hub, and it applies like OSC
    spec = {c["name"]: c for c in control_specs(hub.snapshot())}["swing"]
    assert spec == {
        "name": "swing",
        "kind": "number",
        "bounds": [0.25, 4.0],
        "help": "a fake control for this test",
        "address": "/musichal/swing",
        "cc": 90,
        "note": None,
        "value": 3.0,
    }
    hub.handle_named("swing", 1.5, "console")
    assert applied[-1] == ("swing", 1.5)


def test_every_row_is_routed_and_every_oracle_row_is_applied():
    """The table is complete: each control the oracle owns changes the decision object's state."""
    config = MusicHalConfig()
    values = {
        "mode": "lead",
        "continuity": 0.3,
        "density": 2.0,
        "mute": True,
        "gate": True,
        "profile": "mono",
        "tempo": 2.0,
        "wait": True,
        "beat": True,
        "learning": False,
        "voice/melody/on": False,
        "voice/bass/on": False,
        "voice/comping/on": False,
        "voice/melody/range": (50, 70),
        "voice/bass/range": (30, 45),
        "voice/comping/range": (50, 65),
        "voice/bass/density": 1.5,
        "voice/comping/density": 1.5,
    }
    for name, row in CONTROLS.items():
        if not row.routes:
            assert name in ("learn", "freeze")  # the hub combines them into learning
            continue
        if "oracle.control" not in row.routes:
            continue
        live = LiveOracle(config, OracleMemory(config, background=False))
        before = live.control_state()
        after = live.apply_control(name, values[name])
        assert after != before or name == "profile", name
        if row.key is not None:
            assert row.initial(live.config) == values[name], name
    with pytest.raises(ParameterError):
        LiveOracle(config, OracleMemory(config, background=False)).apply_control("panic", True)  # midi_out's
    with pytest.raises(ParameterError):
        LiveOracle(config, OracleMemory(config, background=False)).apply_control("density", 7.0)
    assert table.control("range").name == "voice/melody/range"  # older session logs


def test_a_row_needs_bounds_from_the_config():
    with pytest.raises(ParameterError, match="no bounds"):
        Control("loudness", "number", "no such bounded setting", key="generation.half_life_s")


def test_a_removed_config_key_fails_with_one_line_naming_its_replacement_and_old_logs_drop_it(tmp_path):
    from shared.config import drop_removed_keys

    toml = tmp_path / "old.toml"
    toml.write_text("[generation]\nbass_range = [36, 60]\n")
    with pytest.raises(ParameterError) as error:
        MusicHalConfig.from_toml(toml)
    assert "\n" not in str(error.value) and "[voices] bass_range" in str(error.value)
    recorded = {**MusicHalConfig().to_dict()}
    recorded["generation"] = {**recorded["generation"], "bass_range": [36, 60]}  # a session log written before
    assert MusicHalConfig.from_mapping(drop_removed_keys(recorded)) == MusicHalConfig()


def test_hub_history_is_bounded_and_the_change_count_is_not():
    hub = ControlHub(MusicHalConfig())
    for i in range(ControlHub.HISTORY + 500):  # an automated controller: many changes over a long set
        hub.handle_osc("/musichal/density", 1.0 + (i % 2))
    assert len(hub.history) == ControlHub.HISTORY
    assert hub.snapshot()["changes"] == ControlHub.HISTORY + 500
    assert hub.history[-1]["value"] == 1.0 + ((ControlHub.HISTORY + 499) % 2)
