"""Every exit path of a real child process playing through JACK delivers all it sent (normal exit, stop(), port
swap, an exception, SIGTERM, SIGINT), signals reach the main thread, and a stalled server is reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from services.midi_out.lifecycle import install_exit_panic
from shared.errors import ParameterError
from testkit.midi import JackReader, ReceiverModel, expected_panic, unique_name
from testkit.waiting import wait_until

CHILD = textwrap.dedent("""
    import json, signal, sys, threading
    # a foreground process's SIGINT: a runner started in the background (`cmd &`, no job control) hands its children
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler (install_exit_panic keeps what it finds)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from shared.signals import library_threads_without_signals, threads_taking
    with library_threads_without_signals():   # as launch.py does: numpy's BLAS threads must not take the signals
        from services.midi_out.engine import MidiOutStage
        from services.midi_out.lifecycle import install_exit_panic
        from services.midi_out.ports import open_input, open_output
        from shared.config import MidiConfig
        from shared.messages import NoteEvent
    port, mode, client = sys.argv[1], sys.argv[2], sys.argv[3]
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=2), open_output("jack", port, client_name=client))
    stage.start()
    install_exit_panic(stage.close)
    # more JACK clients in the process, opened while the first one plays (a controller input, a second output):
    # their threads must block the signals too, and the first output loses nothing meanwhile
    controller = open_input(lambda message: None, "jack", None, virtual_name="ctl", client_name=client + "-ctl")
    second = open_output("jack", None, virtual_name="second", client_name=client + "-second")
    stage.note_on(NoteEvent(note_id=1, pitch=60, velocity=100, t_on=0.0, t_off=1e9))
    if mode == "swap":   # the destination returned: a new output to it, the old one closed under the stage's lock
        stage.replace_sink(open_output("jack", port, client_name=client + "-2"))
        stage.note_on(NoteEvent(note_id=2, pitch=62, velocity=90, t_on=0.0, t_off=1e9))
    report = {signal.Signals(s).name: sorted(threads_taking(s)) for s in (signal.SIGINT, signal.SIGTERM)}
    report["main"] = threading.main_thread().native_id
    print("ready " + json.dumps(report), flush=True)
    if mode == "exception":
        raise RuntimeError("a failure in the performer's process")
    if mode == "stop":
        stage.close()
    if mode in ("sigint", "sigterm"):
        while True:  # as launch.py waits: bounded, so a signal that comes as a wait begins is handled (signals.py)
            threading.Event().wait(0.5)
""")

SETUP = 32 + 6 + 2 * 6  # panic + MCM + RPN 0 on two member channels
PATHS = [
    ("exit", 0),
    ("stop", 0),
    ("swap", 0),
    ("exception", 1),
    # an uncaught KeyboardInterrupt makes Python (>= 3.8) exit by SIGINT, hence -SIGINT
    ("sigterm", -signal.SIGTERM),
    ("sigint", -signal.SIGINT),
]


@pytest.mark.jack
@pytest.mark.parametrize("mode, expected_rc", PATHS)
def test_child_panics_on_exit_paths(jack_server, mode, expected_rc):
    """A short-lived process that plays into JACK and leaves by each exit path: every byte it sent arrives (the
    exit's note-off and all-notes-off last), the signal is handled by the main thread, and no thread of the
    JACK libraries (ours and RtMidi's) can take SIGINT/SIGTERM away from it."""
    reader = JackReader(unique_name("mh-synth"))
    port = reader.open_virtual("midi_in")
    env = dict(os.environ, JACK_NO_START_SERVER="1", PYTHONPATH=os.getcwd())
    # -X faulthandler: a child that does not exit is sent SIGABRT and its threads' stacks are in the failure
    child = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-c", CHILD, port, mode, unique_name("mh-child")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline().strip()
        assert line.startswith("ready "), child.communicate(timeout=30)[1][-4000:]
        report = json.loads(line[len("ready ") :])
        # only the main thread takes the stop signals: no thread of the JACK libraries (ours, RtMidi's) nor numpy's
        main = report.pop("main")
        assert report == {"SIGINT": [main], "SIGTERM": [main]}, report
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
        assert "not delivered" not in err, err
        on = 4  # per-note expression (bend, pressure, CC74) on the note's member channel, then the note-on
        if mode == "swap":
            # old port: setup, note 60; it is closed (the stage goes on). The new port: the start's note-off for 60
            # (still sounding when the stage restarted) + panic + setup, note 62, then the exit's note-off + panic
            received = reader.wait_for(SETUP + on + 1 + SETUP + on + 1 + 32)
            assert received[SETUP + on - 1] == [0x91, 60, 100]
            new = received[SETUP + on :]
            assert new[0] == [0x81, 60, 0] and new[1 : SETUP + 1] == received[:SETUP]
            note_on = new[SETUP + on]
            assert note_on[0] & 0xF0 == 0x90 and note_on[1:] == [62, 90]
            assert new[SETUP + on + 1 :] == [[0x80 | (note_on[0] & 0x0F), 62, 0]] + expected_panic()
        else:
            received = reader.wait_for(SETUP + on + 1 + 32)
            assert received[SETUP + on - 1] == [0x91, 60, 100]
            assert received[SETUP + on :] == [[0x81, 60, 0]] + expected_panic()
        assert len(received) == len(reader.wait_for(len(received) + 1, timeout_s=0)), "more messages than sent"
        assert ReceiverModel().feed_all(received).on == set()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        reader.close()


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            states.append(stat.read().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


STALL_CHILD = textwrap.dedent("""
    import faulthandler, sys
    faulthandler.dump_traceback_later(300, exit=True)   # bounded: a hung child dumps its stacks and exits
    from services.midi_out.ports import open_input, open_output
    output = open_output("jack", None, virtual_name="out", client_name=sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()   # the test stopped the server
    for note in range(5):
        output.send([0x90, 60 + note, 100])
    output.close(timeout_s=1.0)
    print(f"closed sent={output.sent} delivered={output.delivered}", flush=True)
""")


@pytest.mark.jack
def test_close_reports_what_a_stalled_server_did_not_deliver(tmp_path):
    """No JACK cycle can run (the server is stopped): close() gives up after its bound and says on stderr how many
    messages were not delivered — the performer learns that the all-notes-off did not go out."""
    from shared.jack_server import start_dummy_jack, stop_jack

    name = f"musichal-stall-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1", PYTHONPATH=os.getcwd())
    old = os.environ["JACK_DEFAULT_SERVER"]
    os.environ["JACK_DEFAULT_SERVER"] = name  # jackd and jack_wait read it
    try:
        server = start_dummy_jack(log_path=str(tmp_path / "jackd.log"), sync=True)
    finally:
        os.environ["JACK_DEFAULT_SERVER"] = old
    assert server is not None
    child = subprocess.Popen(
        [sys.executable, "-c", STALL_CHILD, unique_name("mh-stall")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        os.kill(server.pid, signal.SIGSTOP)
        try:
            # a group stop takes effect as each of jackd's threads is next scheduled: on a loaded machine a cycle can
            # still run after kill() returned. Send only once every thread is stopped (bounded).
            assert wait_until(lambda: _all_threads_stopped(server.pid), timeout_s=30), "jackd did not stop"
            child.stdin.write("go\n")
            child.stdin.flush()
            # the report comes before the client leaves the graph (which needs the server): read it while stopped
            lines = []
            for line in child.stderr:  # libjack may print its own lines first
                lines.append(line)
                if "not delivered" in line:
                    break
            assert "5 of 5 MIDI messages not delivered" in lines[-1] and "stalled" in lines[-1], lines
        finally:
            os.kill(server.pid, signal.SIGCONT)
        out, err = child.communicate(timeout=30)
        assert "closed sent=5" in out, (out, err)  # it then left the graph once the server went on
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        stop_jack(server)
        import glob

        for leftover in glob.glob(f"/dev/shm/jack_{name}_*") + glob.glob(f"/dev/shm/jack_sem.*_{name}_*"):
            os.unlink(leftover)


def test_uninstall_restores_handlers():
    calls = []
    before = signal.getsignal(signal.SIGTERM)
    uninstall = install_exit_panic(lambda: calls.append(1))
    assert signal.getsignal(signal.SIGTERM) is not before
    uninstall()
    assert signal.getsignal(signal.SIGTERM) is before and calls == []
    with pytest.raises(ParameterError):
        install_exit_panic(None)
