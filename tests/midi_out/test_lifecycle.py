"""Panic on exit paths, in a real child process playing through JACK: normal exit, SIGTERM, SIGINT."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from services.midi_out.lifecycle import install_exit_panic
from shared.errors import ParameterError
from testkit.midi import JackReader, ReceiverModel, expected_panic, unique_name

CHILD = textwrap.dedent("""
    import sys, threading
    from services.midi_out.engine import MidiOutStage
    from services.midi_out.lifecycle import install_exit_panic
    from services.midi_out.ports import open_output
    from shared.config import MidiConfig
    from shared.messages import NoteEvent
    port, mode = sys.argv[1], sys.argv[2]
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=2), open_output("jack", port, client_name=sys.argv[3]))
    stage.start()
    install_exit_panic(stage.close)
    stage.note_on(NoteEvent(note_id=1, pitch=60, velocity=100, t_on=0.0, t_off=1e9))
    print("ready", flush=True)
    if mode != "exit":
        threading.Event().wait()   # hangs until a signal arrives
""")


@pytest.mark.jack
# an uncaught KeyboardInterrupt makes Python (>= 3.8) exit by SIGINT, hence -SIGINT
@pytest.mark.parametrize("mode, expected_rc", [("exit", 0), ("sigterm", -signal.SIGTERM), ("sigint", -signal.SIGINT)])
def test_child_panics_on_exit_paths(jack_server, mode, expected_rc):
    reader = JackReader(unique_name("mh-synth"))
    port = reader.open_virtual("midi_in")
    env = dict(os.environ, JACK_NO_START_SERVER="1", PYTHONPATH=os.getcwd())
    # -X faulthandler: a child that does not exit is sent SIGABRT and its threads' stacks are in the failure
    child = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", CHILD, port, mode, unique_name("mh-child")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        if mode == "sigterm":
            child.send_signal(signal.SIGTERM)
        elif mode == "sigint":
            child.send_signal(signal.SIGINT)
        try:
            _out, err = child.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            _out, err = child.communicate(timeout=10)
            pytest.fail(f"the child did not exit within 30 s of {mode}; its stacks:\n{err[-8000:]}")
        assert child.returncode == expected_rc, err
        setup = 32 + 6 + 2 * 6
        received = reader.wait_for(setup + 4 + 1 + 32)
        assert received[setup + 3] == [0x91, 60, 100]
        assert received[setup + 4:] == [[0x81, 60, 0]] + expected_panic()
        assert ReceiverModel().feed_all(received).on == set()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        reader.close()


def test_uninstall_restores_handlers():
    calls = []
    before = signal.getsignal(signal.SIGTERM)
    uninstall = install_exit_panic(lambda: calls.append(1))
    assert signal.getsignal(signal.SIGTERM) is not before
    uninstall()
    assert signal.getsignal(signal.SIGTERM) is before and calls == []
    with pytest.raises(ParameterError):
        install_exit_panic(None)
