"""SMF recording: the file read back with mido equals what was sent (bytes, order, channels, times)."""

from __future__ import annotations

import os
import time

import mido
import pytest

from services.midi_out.engine import ListSink, MidiOutStage
from services.midi_out.recorder import SmfRecorder, read_smf_messages
from services.midi_out.scheduler import NoteScheduler
from shared.config import MidiConfig
from shared.errors import ParameterError
from shared.messages import NoteEvent


@pytest.mark.jack
def test_recorded_smf_equals_what_was_sent_over_jack(jack_link, tmp_path):
    recorder = SmfRecorder()
    stage = MidiOutStage(
        MidiConfig(profile="mpe", member_channels=4), jack_link.output, recorder=recorder, owns_sink=False
    )
    stage.start()
    base = time.monotonic() + 0.01
    with NoteScheduler(stage) as scheduler:
        for i in range(12):
            t_on = base + 0.007 * i
            scheduler.schedule(
                NoteEvent(
                    note_id=i,
                    pitch=60 + i % 3,
                    velocity=20 + i,
                    t_on=t_on,
                    t_off=t_on + 0.02,
                    bend_semitones=0.25 * i,
                    pressure=i,
                    timbre=100 - i,
                )
            )
        assert scheduler.wait_idle(timeout_s=20.0)
    received = jack_link.reader.wait_for(stage.counters["messages_sent"])
    path = recorder.save(tmp_path / "take.mid")
    read_back = read_smf_messages(path)
    assert [m for _t, m in read_back] == received == [m for _t, m in recorder.events]
    assert {m[0] & 0x0F for _t, m in read_back if m[0] & 0xF0 == 0x90} <= {1, 2, 3, 4}  # MPE channels kept
    t0 = recorder.events[0][0]
    tick_s = mido.tick2second(1, recorder.ticks_per_beat, recorder.tempo_us_per_beat)
    for (t_file, _), (t_sent, _) in zip(read_back, recorder.events):
        assert abs(t_file - (t_sent - t0)) <= tick_s
    assert os.listdir(tmp_path) == ["take.mid"]  # atomic: no temp file left behind


def test_close_writes_record_path(tmp_path):
    path = tmp_path / "sub" / "perf.mid"
    stage = MidiOutStage(MidiConfig(profile="gm-safe", member_channels=2, record_path=str(path)), ListSink())
    stage.start()
    stage.note_on(NoteEvent(note_id=1, pitch=60, velocity=90, t_on=0.0, t_off=1.0))
    stage.close()
    messages = [m for _t, m in read_smf_messages(path)]
    assert messages == stage.sink.messages
    assert [0x91, 60, 90] in messages and [0x81, 60, 0] in messages


def test_empty_recording_is_a_valid_file(tmp_path):
    path = SmfRecorder().save(tmp_path / "empty.mid")
    assert read_smf_messages(path) == []


def test_bad_arguments_raise():
    with pytest.raises(ParameterError):
        SmfRecorder(ticks_per_beat=0)
    with pytest.raises(ParameterError):
        SmfRecorder().record([])
