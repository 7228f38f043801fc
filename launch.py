"""``musichal``: start the whole MusicHal stack with one command (the command line; the stack is
:class:`services.stack.LiveStack`).

Parses the flags into a config, runs the tools (``--list-midi``, ``--describe`` …) or the live stack — one status
line per second, a clean stop on Ctrl-C, SIGTERM or ``--duration`` (seconds of listening: counted from the moment the
stack listens, which the ``listening after …`` line announces) — and ``musichal replay LOG``.

Examples::

    musichal --input-file take1.wav --record out.mid --duration 30
    musichal --model model.json --input-device "USB Audio" --midi-port "Surge XT"
    musichal --ray-address 192.168.1.10:6379 --encoder-resource encoder --wav2vec --model model.json
    musichal --input-midi virtual --record out.mid     # a keyboard as the musician (connect it to "MusicHal in")
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shared.signals import library_threads_without_signals

# Libraries start threads as they load (numpy's BLAS pool): those threads must never take Ctrl-C or SIGTERM from the
# main thread (shared/signals.py), so everything heavy is imported with the stop signals blocked.
with library_threads_without_signals():
    from services.preflight import describe_listening
    from services.stack import DEAF_AFTER_S, DEAF_MIN_EVENTS, LiveStack
    from shared.config import GENERATION_MODES, MIDI_APIS, MIDI_PROFILES, MusicHalConfig
    from shared.errors import MusicHalError, ParameterError, one_line

__all__ = ["build_parser", "config_from_args", "build_replay_parser", "replay_console", "replay_main", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal",
        description="MusicHal: a real-time AI co-improviser. Listens to audio, learns an Audio Oracle, answers in "
        "MIDI/MPE.",
        epilog="Without --model MusicHal learns live from what it hears; with --model it listens as the model was "
        "trained "
        "(musichal --model m.json --describe shows how). Ctrl-C stops cleanly (all notes off). Exit status: 0 "
        "played; 1 heard onsets but learned none of them (the warning names the likely cause); 2 error.",
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--input-file", help="play this audio file into the stack at real-time pace (instead of a device)")
    io.add_argument("--loop", action="store_true", help="repeat --input-file")
    io.add_argument("--input-device", help="audio input device, by name (substring) or index (see --list-devices)")
    io.add_argument(
        "--input-midi",
        metavar="NAME|virtual",
        help="also hear the notes of a MIDI source (name, substring or index, as --midi-port), or 'virtual' for a "
        "port named 'MusicHal in' to connect a keyboard to; learns the symbolic view (a --model must be symbolic); "
        "no echo gate on it unless [control] midi_input_gate",
    )
    io.add_argument("--input-channel", type=int, help="use only this input channel (0-based) instead of a mono mix")
    io.add_argument(
        "--midi-port", help="MIDI output port by name, substring or index (default: a virtual port 'MusicHal')"
    )
    io.add_argument("--midi-api", choices=MIDI_APIS, help="MIDI API (default: auto)")
    io.add_argument(
        "--midi-profile", choices=list(MIDI_PROFILES), help="mpe (default), gm-safe (fluidsynth, GM synths), mono"
    )
    io.add_argument("--no-mpe", action="store_true", help="one MIDI channel (same as --midi-profile mono)")
    io.add_argument("--record", help="write the performance as a Standard MIDI File")
    model = parser.add_argument_group("model and perception")
    model.add_argument(
        "--model",
        action="append",
        help="model.json written by musichal-train (default: learn live); "
        "repeat to play from several corpora merged into one memory (the first model's perception)",
    )
    model.add_argument(
        "--save-learned",
        help="checkpoint the live-learned oracle here (atomic, every "
        "oracle.checkpoint_seconds and at stop; resumed from after a crash)",
    )
    model.add_argument(
        "--hybrid-perception",
        action="store_true",
        help="keep both views: traditional 22-D and wav2vec "
        "(learning live; a --model listens as it was trained, these flags may only repeat that)",
    )
    model.add_argument(
        "--wav2vec", action="store_true", help="Wav2Vec 2.0 features (learning live; see --hybrid-perception)"
    )
    model.add_argument(
        "--wav2vec-model",
        help="checkpoint name or local directory (default facebook/wav2vec2-base); with "
        "--model: where the model's own checkpoint is, when it moved (its content hash is checked)",
    )
    model.add_argument(
        "--other-checkpoint",
        action="store_true",
        help="with --model and --wav2vec-model: use that "
        "checkpoint although its weights differ from the model's (its dimension and layer must fit)",
    )
    model.add_argument(
        "--gpu",
        action="store_true",
        help="run wav2vec on a GPU: the encoder requests cluster.encoder_num_gpus "
        "GPUs (default 1) and the stack refuses to start when the encoder's node has none",
    )
    model.add_argument(
        "--gpu-fallback", action="store_true", help="with --gpu: use the CPU (with a warning) where no GPU is found"
    )
    play = parser.add_argument_group("playing")
    play.add_argument("--mode", choices=list(GENERATION_MODES), help="imitate (default), contrast or lead")
    play.add_argument("--continuity", type=float, help="probability of a forward step in the oracle (0..1)")
    play.add_argument("--density", type=float, help="note density factor (0..4)")
    play.add_argument("--seed", type=int, help="random seed of the improviser")
    play.add_argument(
        "--voices",
        help="voices that play, comma-separated: melody,bass,comping (default all three; [voices] in the config)",
    )
    live = parser.add_argument_group("live control (musichal --controls prints the OSC address and MIDI CC/note map)")
    live.add_argument(
        "--osc-port", type=int, help="listen for OSC control messages on this UDP port (0: any free port)"
    )
    live.add_argument("--osc-host", help="OSC listen address (default 127.0.0.1)")
    live.add_argument(
        "--midi-in", help="MIDI controller input port by name/substring/index, or 'virtual' for a port of our own"
    )
    live.add_argument("--midi-in-api", choices=MIDI_APIS, help="MIDI API of --midi-in")
    live.add_argument(
        "--no-input-gate",
        action="store_true",
        help="learn from everything heard, even while MusicHal's own notes sound (feedback protection off)",
    )
    live.add_argument(
        "--gate-release-ms", type=float, help="the input gate stays closed this long after each own note-off"
    )
    live.add_argument(
        "--session-log",
        help="write a JSONL log of every event, percept, decision, note and control change "
        "(replay it with: musichal replay LOG --record out.mid)",
    )
    live.add_argument(
        "--console",
        action="store_true",
        help="serve the performer's console (a web page: what MusicHal hears, remembers and plays, and every "
        "control) on 127.0.0.1; open the URL it prints (it carries the access token)",
    )
    live.add_argument(
        "--console-host",
        help="serve the console on this address instead (e.g. 0.0.0.0: reachable from the LAN, still with the "
        "token); implies --console",
    )
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--ray-address",
        help="join this Ray cluster (default: start a local Ray listening on 127.0.0.1 only); "
        "a head on another machine needs token auth: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (see README)",
    )
    cluster.add_argument("--encoder-resource", help="place the encoder on a node that offers this custom resource")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--duration",
        type=float,
        help="stop after this many seconds of listening (counted from the "
        "'listening' line, not from the command: start-up is not included)",
    )
    run.add_argument(
        "--stats", action="store_true", help="print per-stage latency p50/p95/p99 at the end and write JSON"
    )
    run.add_argument(
        "--stats-file", default="musichal_stats.json", help="where --stats writes its JSON (default %(default)s)"
    )
    run.add_argument("--quiet", action="store_true", help="no status line")
    run.add_argument(
        "--config",
        help="TOML config file (sections: audio, segmenter, features, wav2vec, quantizer, oracle, generation, midi, "
        "cluster, control, console)",
    )
    tools = parser.add_argument_group("tools (print and exit)")
    tools.add_argument("--list-midi", action="store_true", help="list MIDI output ports")
    tools.add_argument("--list-devices", action="store_true", help="list audio input devices")
    tools.add_argument(
        "--panic", action="store_true", help="send all-notes-off (CC123/CC120 on every channel) to --midi-port"
    )
    tools.add_argument("--controls", action="store_true", help="print the OSC address map and the MIDI CC/note map")
    tools.add_argument(
        "--describe",
        action="store_true",
        help="with --model: print what the model contains and how "
        "it will listen (views, checkpoint, dimension, vocabulary, threshold, states, source files)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> MusicHalConfig:
    config = MusicHalConfig.from_toml(args.config) if args.config else MusicHalConfig()
    for name in ("input_file", "record", "save_learned", "session_log"):  # actors run in other working directories
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if args.model:
        args.model = [os.path.abspath(path) for path in args.model]
    if args.wav2vec_model and Path(args.wav2vec_model).expanduser().is_dir():  # the encoder runs elsewhere
        args.wav2vec_model = str(Path(args.wav2vec_model).expanduser().resolve())
    duration = getattr(args, "duration", None)
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ParameterError(f"--duration must be a number of seconds > 0, got {duration:g}")
    profile = "mono" if args.no_mpe else args.midi_profile
    voices: dict[str, Any] = {}
    if getattr(args, "voices", None) is not None:
        from shared.config import VOICE_NAMES

        chosen = [v.strip() for v in args.voices.split(",") if v.strip()]
        unknown = sorted(set(chosen) - set(VOICE_NAMES))
        if unknown or not chosen:
            raise ParameterError(f"--voices takes {', '.join(VOICE_NAMES)} (comma-separated), got {args.voices!r}")
        voices = {f"voices.{v}": v in chosen for v in VOICE_NAMES}
    kind = "wav2vec" if args.wav2vec else None
    return config.with_overrides(
        {
            "audio.input_channel": args.input_channel,
            "midi.port": args.midi_port,
            "midi.api": args.midi_api,
            "midi.profile": profile,
            "midi.record_path": args.record,
            "features.kind": kind,
            "features.hybrid": True if args.hybrid_perception else None,
            "wav2vec.model": args.wav2vec_model,
            "wav2vec.use_gpu": True if args.gpu else None,
            "wav2vec.gpu_fallback": True if getattr(args, "gpu_fallback", False) else None,
            "generation.mode": args.mode,
            "generation.continuity": args.continuity,
            "generation.density": args.density,
            "generation.seed": args.seed,
            "cluster.address": args.ray_address,
            "cluster.encoder_resource": args.encoder_resource,
            "control.osc_port": args.osc_port,
            "control.osc_host": args.osc_host,
            "control.midi_in_port": args.midi_in,
            "control.midi_in_api": args.midi_in_api,
            "control.input_gate": False if args.no_input_gate else None,
            "control.gate_release_ms": args.gate_release_ms,
            "console.enabled": True if getattr(args, "console", False) or getattr(args, "console_host", None) else None,
            "console.host": getattr(args, "console_host", None),
            **voices,
        }
    )


def _tool_commands(args: argparse.Namespace, config: MusicHalConfig) -> int | None:
    if args.list_midi:
        from services.midi_out.cli import list_midi_ports_text

        print(list_midi_ports_text(config.midi.api))
        return 0
    if args.list_devices:
        from services.capture.devices import list_input_devices_text

        print(list_input_devices_text())
        return 0
    if args.controls:
        from services.control.state import controls_text

        print(controls_text(config))
        return 0
    if args.describe:
        if not args.model:
            raise MusicHalError("--describe needs --model m.json")
        for text in describe_listening(
            config, args.model, checkpoint=args.wav2vec_model, other_checkpoint=args.other_checkpoint
        ):
            print(text, flush=True)
        return 0
    if args.panic:
        from services.midi_out.cli import panic_port

        sent = panic_port(config.midi.api, config.midi.port)
        print(f"panic: {sent} messages sent")
        return 0
    return None


def build_replay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal replay",
        description="Re-run the decisions of a session logged with --session-log (no Ray, no audio): the logged "
        "percepts and control changes go into a fresh oracle with the logged config, seed and models; "
        "the notes come out as they did live.",
    )
    parser.add_argument("session_log", help="the JSONL file written by musichal --session-log")
    parser.add_argument("--record", help="write the replayed performance as a Standard MIDI File")
    parser.add_argument("--midi-port", help="also play it to this MIDI output port, at the logged pace")
    parser.add_argument("--midi-api", choices=MIDI_APIS, default="auto")
    parser.add_argument(
        "--console",
        action="store_true",
        help="show the session on the performer's console at its logged pace (open the printed URL; Ctrl-C stops)",
    )
    parser.add_argument("--console-host", help="serve that console on this address (default 127.0.0.1)")
    parser.add_argument("--console-port", type=int, help="... and port (default 8765; 0: any free port)")
    return parser


def replay_console(args: argparse.Namespace) -> int:
    """``musichal replay LOG --console``: serve the console while the replay runs at its pace; Ctrl-C stops."""
    from services.console.replay import ReplayConsole
    from services.console.server import console_token

    config = (
        MusicHalConfig()
        .with_overrides({"console.enabled": True, "console.host": args.console_host, "console.port": args.console_port})
        .console
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    console = ReplayConsole(args.session_log, config, token=console_token(config.token_file))
    try:
        print(f"musichal replay: console on {console.url} (Ctrl-C to stop)", flush=True)
        while not stop.wait(0.5):
            if console.done.is_set():
                if console.error:
                    raise MusicHalError(f"the replay failed: {console.error}")
                print("musichal replay: the session has ended; the console stays open until Ctrl-C", flush=True)
                stop.wait()
    finally:
        console.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def replay_main(argv: list[str]) -> int:
    from services.midi_out.render import render_notes
    from services.oracle.player.replay import replay_session

    args = build_replay_parser().parse_args(argv)
    try:
        if args.console or args.console_host or args.console_port is not None:
            return replay_console(args)
        result = replay_session(args.session_log)
        print(
            f"musichal replay: {result.counters['percepts']} percepts ({result.counters['gated']} gated), "
            f"{result.counters['controls']} control changes, {len(result.notes)} notes; "
            + ("identical to the logged decisions" if result.identical else "DIFFERENT from the logged decisions")
        )
        recorder = render_notes(
            result.notes, result.config, t_start=result.t0, controls=result.controls, t_end=result.t_end
        )
        if args.record:
            recorder.save(args.record)
            print(f"MIDI written to {args.record}")
        if args.midi_port:
            from services.midi_out.cli import play_events

            play_events(args.midi_api, args.midi_port, recorder.events)
        return 0 if result.identical else 1
    except MusicHalError as error:
        print(f"musichal replay: error: {error}", file=sys.stderr)
        return 2


def process_age_s() -> float | None:
    """Seconds since this process was created (Linux /proc; None elsewhere): the command's own start."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up_s = float(uptime.read().split()[0])
        return max(0.0, up_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def startup_figures(stack: LiveStack, listening_at: float) -> dict[str, Any]:
    """The stack's start-up phases and the time from the command to listening (``command_to_listening_s``)."""
    age = process_age_s()
    out: dict[str, Any] = {"phases_s": dict(stack.startup)}
    if age is not None:
        out["command_to_listening_s"] = round(age - (time.monotonic() - listening_at), 2)
        out["before_stack_s"] = round(out["command_to_listening_s"] - stack.startup.get("total", 0.0), 2)
    return out


def listening_line(startup: dict[str, Any], duration_s: float | None) -> str:
    """``listening after 5.1 s (Ray 1.9 s, actors 2.4 s) …``: the moment the input starts and the first event counts."""
    phases = startup["phases_s"]
    ray_s = phases.get("ray_import", 0.0) + phases.get("ray_init", 0.0)
    since = startup.get("command_to_listening_s", phases.get("total"))
    return (
        f"listening after {since:.1f} s of start-up (Ray {ray_s:.1f} s, actors {phases.get('actors', 0.0):.1f} s); "
        + (
            f"--duration {duration_s:g} s counts from now"
            if duration_s is not None
            else "the status line counts from now"
        )
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["replay"]:
        return replay_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        tool = _tool_commands(args, config)
        if tool is not None:
            return tool
        if args.input_file and args.input_device:
            raise MusicHalError("give either --input-file or --input-device, not both")
        stop = threading.Event()
        reason = {"why": "end of input"}

        def on_signal(signum, frame):
            reason["why"] = signal.Signals(signum).name
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        stack = LiveStack(
            config,
            input_file=args.input_file,
            input_device=args.input_device,
            loop=args.loop,
            model_path=args.model,
            checkpoint_path=args.save_learned,
            session_log=args.session_log,
            input_midi=args.input_midi,
            wav2vec_checkpoint=args.wav2vec_model if args.model else None,
            other_checkpoint=args.other_checkpoint,
        )
        try:
            stack.start()
        except MusicHalError:
            raise
        except Exception as error:  # an actor died while starting: report its reason in one line
            raise MusicHalError(f"could not start the stack: {one_line(error)}") from None
        for sig in previous:  # ray.init installs its own C-level SIGTERM handler (abort, shm left behind): ours again
            signal.signal(sig, on_signal)
        t0 = (
            stack.listening_at or time.monotonic()
        )  # --duration, the status line and the deafness check count from here
        startup = startup_figures(stack, t0)
        for line in [] if args.quiet else stack.running_lines() + [listening_line(startup, args.duration)]:
            print(f"musichal: {line}", flush=True)
        shown: set[str] = set()  # warnings printed once

        def warn_once(key: str, line: str | None) -> None:
            if line and key not in shown:
                shown.add(key)
                print(f"musichal: warning: {line}", file=sys.stderr, flush=True)

        try:
            while not stop.wait(1.0):
                elapsed = time.monotonic() - t0
                stats = stack.stats(timeout_s=0.5)
                if not args.quiet:
                    print(stack.status_line(stats, elapsed), flush=True)
                first = stats.get("encoder", {}).get("first_exception")
                warn_once("encoder", first and f"the encoder failed on an event: {first}")
                if elapsed >= DEAF_AFTER_S:
                    warn_once("deaf", stack.deafness(stats))
                if args.duration is not None and elapsed >= args.duration:
                    reason["why"] = "duration reached"
                    break
                if args.input_file and not args.loop and stack.finished():
                    break
        finally:
            t_stop = time.monotonic()
            natural = reason["why"] == "end of input"
            final = stack.stop(graceful=True, drain_s=3.0 if natural else 0.0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not args.quiet:
            print(
                f"musichal: stopped ({reason['why']}) in {time.monotonic() - t_stop:.2f} s; all notes off"
                + (f"; MIDI written to {args.record}" if args.record else "")
            )
        first = final.get("encoder", {}).get("first_exception")
        warn_once("encoder", first and f"the encoder failed on an event: {first}")
        if args.stats:
            print(LiveStack.latency_table(final))
            from shared.model_io import atomic_write_bytes

            atomic_write_bytes(
                args.stats_file, json.dumps({**final, "startup": startup}, indent=2, default=str).encode()
            )
            print(f"stats written to {args.stats_file}")
        deaf = stack.deafness(final) if final else None
        if deaf and final.get("capture", {}).get("counters", {}).get("events", 0) >= DEAF_MIN_EVENTS:
            warn_once("deaf", deaf)
            return 1  # never a clean exit while deaf
        return 0
    except MusicHalError as error:
        print(f"musichal: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
