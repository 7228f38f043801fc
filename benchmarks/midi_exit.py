"""Short-lived MIDI senders on JACK lose nothing, whatever way they leave; every stop signal is heard.

Beside one busy process, on a JACK dummy server of its own (``--sync``, as the tests'), three kinds of processes play
into one JACK MIDI reader, one after another, and every message each one sent must arrive, in order:

- ``--children`` (200) processes open a JACK output to the reader, send the MPE setup and a note and leave by a random
  path: normal exit, SIGINT, SIGTERM, an uncaught exception, ``stop()`` (close then exit). Expected: the setup, the
  note,
  then the exit's note-off and all-notes-off, exactly; the exit status of the path (a signal is heard and handled: the
  process runs its panic and dies of the signal).
- ``--panics`` (50) runs of ``musichal --panic --midi-api jack --midi-port READER``: exactly the 32-message panic.
- ``--replays`` (50) runs of ``musichal replay LOG --midi-api jack --midi-port READER`` on a short session log recorded
  first by the live stack: exactly the messages the replay's SMF (``--record``) holds, in order per channel.

    python benchmarks/midi_exit.py [--children 200] [--panics 50] [--replays 50] [--no-save]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, goal, strip_no_save  # noqa: E402

PATHS = {"exit": 0, "stop": 0, "exception": 1, "sigterm": -signal.SIGTERM, "sigint": -signal.SIGINT}
SETUP = 32 + 6 + 2 * 6  # panic + MCM + RPN 0 on two member channels

CHILD = textwrap.dedent("""
    import signal, sys, threading
    # a foreground process's SIGINT: a runner started in the background (`cmd &`, no job control) hands its children
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler (install_exit_panic keeps what it finds)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from shared.signals import library_threads_without_signals
    with library_threads_without_signals():
        from services.midi_out.engine import MidiOutStage
        from services.midi_out.lifecycle import install_exit_panic
        from services.midi_out.ports import open_output
        from shared.config import MidiConfig
        from shared.messages import NoteEvent
    port, mode, client, pitch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    stage = MidiOutStage(MidiConfig(profile="mpe", member_channels=2), open_output("jack", port, client_name=client))
    stage.start()
    install_exit_panic(stage.close)
    stage.note_on(NoteEvent(note_id=1, pitch=pitch, velocity=100, t_on=0.0, t_off=1e9))
    print("ready", flush=True)
    if mode == "exception":
        raise RuntimeError("a failure")
    if mode == "stop":
        stage.close()
    if mode in ("sigint", "sigterm"):
        while True:  # as launch.py waits: bounded (see shared/signals.py)
            threading.Event().wait(0.5)
""")


def per_channel(messages):
    channels = collections.defaultdict(list)
    for message in messages:
        channels[message[0] & 0x0F].append(list(message))
    return channels


def expected_child(reference_setup, pitch):
    from testkit.midi import expected_panic

    return (
        reference_setup
        + [[0xE1, 0, 64], [0xD1, 0], [0xB1, 74, 64], [0x91, pitch, 100], [0x81, pitch, 0]]
        + expected_panic()
    )


def run_children(count, port, reader, env, rng):
    from testkit.midi import expected_panic

    setup = None
    lost = exits_ok = wrong = 0
    by_path = collections.Counter()
    failures = []
    durations = []
    for run in range(count):
        mode = rng.choice(sorted(PATHS))
        pitch = 40 + run % 48
        reader.clear()
        t0 = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, port, mode, f"mh-exit-{os.getpid()}-{run}", str(pitch)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = child.stdout.readline().strip() == "ready"
        if mode == "sigint":
            child.send_signal(signal.SIGINT)
        elif mode == "sigterm":
            child.send_signal(signal.SIGTERM)
        try:
            _out, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            _out, err = child.communicate()
        durations.append(time.monotonic() - t0)
        by_path[mode] += 1
        heard = ready and child.returncode == PATHS[mode]
        exits_ok += heard
        expected_len = SETUP + 4 + 1 + 32
        received = reader.wait_for(expected_len, timeout_s=10)
        if setup is None and len(received) >= SETUP:
            setup = received[:SETUP]
            assert setup[:32] == expected_panic(), setup[:32]
        expected = expected_child(setup or [], pitch)
        lost += max(0, len(expected) - len(received))
        if received != expected:
            wrong += 1
        if not heard or received != expected:
            failures.append(
                {
                    "run": run,
                    "path": mode,
                    "rc": child.returncode,
                    "received": len(received),
                    "expected": len(expected),
                    "stderr": err[-300:],
                }
            )
    return {
        "runs": count,
        "exits_heard_and_handled": exits_ok,
        "messages_lost": lost,
        "runs_not_exact": wrong,
        "paths": dict(by_path),
        "run_s_p50": sorted(durations)[len(durations) // 2] if durations else None,
        "failures": failures[:5],
    }


def run_command(count, argv, expected, reader, env):
    lost = wrong = ok_rc = 0
    failures = []
    durations = []
    for run in range(count):
        reader.clear()
        t0 = time.monotonic()
        result = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        durations.append(time.monotonic() - t0)
        ok_rc += result.returncode == 0
        received = reader.wait_for(len(expected), timeout_s=10)
        lost += max(0, len(expected) - len(received))
        exact = received == expected and per_channel(received) == per_channel(expected)
        wrong += not exact
        if result.returncode or not exact:
            failures.append(
                {
                    "run": run,
                    "rc": result.returncode,
                    "received": len(received),
                    "expected": len(expected),
                    "stderr": result.stderr[-300:],
                }
            )
    return {
        "runs": count,
        "exit_0": ok_rc,
        "messages_per_run": len(expected),
        "messages_lost": lost,
        "runs_not_exact": wrong,
        "run_s_p50": sorted(durations)[len(durations) // 2] if durations else None,
        "failures": failures[:5],
    }


def record_session_log(work: Path, env) -> tuple[Path, list[list[int]]]:
    """A short live session (rendered chorale, the whole stack), then its replay's SMF: the expected messages."""
    import mido

    from testkit.audio import chorale_opening, render_midi_notes

    clip = render_midi_notes(chorale_opening("bwv66.6", seconds=4.0), work / "clip.wav")
    log = work / "session.jsonl"
    live = subprocess.run(
        [
            str(REPO / ".venv/bin/musichal"),
            "--input-file",
            str(clip),
            "--midi-api",
            "jack",
            "--quiet",
            "--session-log",
            str(log),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if live.returncode:
        raise RuntimeError(f"the live run failed: {live.stderr[-800:]}")
    smf = work / "replay.mid"
    subprocess.run(
        [str(REPO / ".venv/bin/musichal"), "replay", str(log), "--record", str(smf)],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    expected = [list(message.bytes()) for message in mido.MidiFile(str(smf)) if not message.is_meta]
    return log, expected


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--panics", type=int, default=50)
    parser.add_argument("--replays", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(strip_no_save(argv))

    from shared.jack_server import start_dummy_jack, stop_jack
    from testkit.midi import JackReader, expected_panic

    name = f"musichal-bench-exit-{os.getpid()}"
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    server = start_dummy_jack(sync=True, log_path=os.path.join(tempfile.gettempdir(), f"{name}.log"))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    reader = JackReader(f"mh-exit-reader-{os.getpid()}")
    try:
        port = reader.open_virtual("in")
        with tempfile.TemporaryDirectory() as tmp:
            log, replay_expected = record_session_log(Path(tmp), env) if args.replays else (None, [])
            children = run_children(args.children, port, reader, env, random.Random(args.seed))
            musichal = str(REPO / ".venv/bin/musichal")
            panics = run_command(
                args.panics,
                [musichal, "--panic", "--midi-api", "jack", "--midi-port", port],
                expected_panic(),
                reader,
                env,
            )
            replays = (
                run_command(
                    args.replays,
                    [musichal, "replay", str(log), "--midi-api", "jack", "--midi-port", port],
                    replay_expected,
                    reader,
                    env,
                )
                if args.replays
                else {}
            )
    finally:
        reader.close()
        busy.kill()
        busy.wait()
        stop_jack(server)
    figures = {"children": children, "panic_runs": panics, "replay_runs": replays, "busy_processes": 1}
    goals = [
        goal("short-lived senders: messages lost", children["messages_lost"], "==", 0),
        goal("short-lived senders: runs whose stream differs", children["runs_not_exact"], "==", 0),
        goal(
            f"short-lived senders: exits heard and handled (of {args.children})",
            children["exits_heard_and_handled"],
            "==",
            args.children,
        ),
        goal("musichal --panic: messages lost", panics["messages_lost"], "==", 0),
        goal(
            f"musichal --panic: exact 32-message panics (of {args.panics})",
            args.panics - panics["runs_not_exact"],
            "==",
            args.panics,
        ),
    ]
    if replays:
        goals += [
            goal("musichal replay: messages lost", replays["messages_lost"], "==", 0),
            goal(
                f"musichal replay: runs delivering the SMF's messages in order (of {args.replays})",
                args.replays - replays["runs_not_exact"],
                "==",
                args.replays,
            ),
        ]
    return emit("midi_exit", figures, goals, loaded_by_design=True)


if __name__ == "__main__":
    sys.exit(main())
