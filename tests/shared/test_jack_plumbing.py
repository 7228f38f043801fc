"""The real audio/MIDI plumbing the other tests stand on: PyAudio's JACK host API and an rtmidi JACK port pair."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.jack


def test_jack_input_device_visible_and_streams_through_pyaudio(jack_server):
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        apis = {pa.get_host_api_info_by_index(i)["name"]: i for i in range(pa.get_host_api_count())}
        jack_api = next((i for name, i in apis.items() if "JACK" in name), None)
        assert jack_api is not None, f"no JACK host API in {sorted(apis)}"
        info = pa.get_host_api_info_by_index(jack_api)
        device = pa.get_device_info_by_host_api_device_index(jack_api, 0)
        assert device["maxInputChannels"] >= 1 and int(device["defaultSampleRate"]) == jack_server.sample_rate_hz
        # callback mode, as capture uses it (PortAudio 19.6's blocking JACK mode corrupts memory on close)
        frames = [0]
        enough = threading.Event()

        def callback(data, frame_count, time_info, status):
            frames[0] += frame_count
            if frames[0] >= 256 * 8:
                enough.set()
            return None, pyaudio.paContinue

        stream = pa.open(
            format=pyaudio.paFloat32,
            channels=1,
            rate=48000,
            input=True,
            input_device_index=device["index"],
            frames_per_buffer=256,
            stream_callback=callback,
        )
        stream.start_stream()
        assert enough.wait(10), "JACK delivered no audio blocks"
        stream.stop_stream()
        stream.close()
        assert info["deviceCount"] >= 1
    finally:
        pa.terminate()


def test_rtmidi_jack_port_pair_passes_a_message(jack_server):
    """A python-rtmidi JACK output opens a python-rtmidi JACK input (in its own process, see
    testkit/jack_midi_reader.py)."""
    import rtmidi

    from testkit.midi import JackReader

    reader = JackReader()
    port = reader.open_virtual("in")
    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="musichal-test-out")
    try:
        target = next(i for i, name in enumerate(midi_out.get_ports()) if name == port)
        midi_out.open_port(target)
        # a new JACK connection carries data from the next period on: resend until the first message lands
        for _ in range(50):
            midi_out.send_message([0x90, 60, 100])
            if reader.wait_for(1, timeout_s=0.1):
                break
        assert reader.wait_for(1, timeout_s=5)[0] == [0x90, 60, 100], "message not delivered through JACK"
    finally:
        reader.close()
        midi_out.close_port()
        del midi_out
