"""``musichal``: start the whole MusicHal stack with one command.

Starts Ray (locally bound to 127.0.0.1 with the dashboard off, or joins ``--ray-address``), creates the shared
audio ring and message rings, starts the four actors — capture, encoder, oracle, midi_out — wires and supervises
them, prints one status line per second, and shuts everything down cleanly on Ctrl-C, SIGTERM or ``--duration``:
notes off, SMF written, rings unlinked, Ray stopped if it started it.

Examples::

    musichal --input-file take1.wav --record out.mid --duration 30
    musichal --model model.json --input-device "USB Audio" --midi-port "Surge XT"
    musichal --ray-address 192.168.1.10:6379 --encoder-resource encoder --wav2vec --model model.json
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from shared.config import GENERATION_MODES, MIDI_PROFILES, MusicHalConfig
from shared.errors import MusicHalError

__all__ = ["build_parser", "config_from_args", "preflight", "LiveStack", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal",
        description="MusicHal: a real-time AI co-improviser. Listens to audio, learns an Audio Oracle, answers in MIDI/MPE.",
        epilog="Without --model MusicHal learns live from what it hears. Ctrl-C stops cleanly (all notes off).")
    io = parser.add_argument_group("input and output")
    io.add_argument("--input-file", help="play this audio file into the stack at real-time pace (instead of a device)")
    io.add_argument("--loop", action="store_true", help="repeat --input-file")
    io.add_argument("--input-device", help="audio input device, by name (substring) or index (see --list-devices)")
    io.add_argument("--input-channel", type=int, help="use only this input channel (0-based) instead of a mono mix")
    io.add_argument("--midi-port", help="MIDI output port by name, substring or index (default: a virtual port 'MusicHal')")
    io.add_argument("--midi-api", choices=["auto", "jack", "alsa", "coremidi", "winmm"], help="MIDI API (default: auto)")
    io.add_argument("--midi-profile", choices=list(MIDI_PROFILES), help="mpe (default), gm-safe (fluidsynth, GM synths), mono")
    io.add_argument("--no-mpe", action="store_true", help="one MIDI channel (same as --midi-profile mono)")
    io.add_argument("--record", help="write the performance as a Standard MIDI File")
    model = parser.add_argument_group("model and perception")
    model.add_argument("--model", action="append", help="model.json written by musichal-train (default: learn live); "
                       "repeat to play from several corpora merged into one memory (the first model's perception)")
    model.add_argument("--save-learned", help="checkpoint the live-learned oracle here (atomic, every "
                       "oracle.checkpoint_seconds and at stop; resumed from after a crash)")
    model.add_argument("--hybrid-perception", action="store_true", help="keep both views: traditional 22-D and wav2vec")
    model.add_argument("--wav2vec", action="store_true", help="Wav2Vec 2.0 features")
    model.add_argument("--wav2vec-model", help="checkpoint name or local directory (default facebook/wav2vec2-base)")
    model.add_argument("--gpu", action="store_true", help="run wav2vec on a GPU if there is one (warns and uses the CPU otherwise)")
    play = parser.add_argument_group("playing")
    play.add_argument("--mode", choices=list(GENERATION_MODES), help="imitate (default), contrast or lead")
    play.add_argument("--continuity", type=float, help="probability of a forward step in the oracle (0..1)")
    play.add_argument("--density", type=float, help="note density factor (0..4)")
    play.add_argument("--seed", type=int, help="random seed of the improviser")
    live = parser.add_argument_group("live control (musichal --controls prints the OSC address and MIDI CC/note map)")
    live.add_argument("--osc-port", type=int, help="listen for OSC control messages on this UDP port (0: any free port)")
    live.add_argument("--osc-host", help="OSC listen address (default 127.0.0.1)")
    live.add_argument("--midi-in", help="MIDI controller input port by name/substring/index, or 'virtual' for a port of our own")
    live.add_argument("--midi-in-api", choices=["auto", "jack", "alsa", "coremidi", "winmm"], help="MIDI API of --midi-in")
    live.add_argument("--no-input-gate", action="store_true",
                      help="learn from everything heard, even while MusicHal's own notes sound (feedback protection off)")
    live.add_argument("--gate-release-ms", type=float, help="the input gate stays closed this long after each own note-off")
    live.add_argument("--session-log", help="write a JSONL log of every event, percept, decision, note and control change "
                      "(replay it with: musichal replay LOG --record out.mid)")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray on 127.0.0.1)")
    cluster.add_argument("--encoder-resource", help="place the encoder on a node that offers this custom resource")
    run = parser.add_argument_group("run")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--stats", action="store_true", help="print per-stage latency p50/p95/p99 at the end and write JSON")
    run.add_argument("--stats-file", default="musichal_stats.json", help="where --stats writes its JSON (default %(default)s)")
    run.add_argument("--quiet", action="store_true", help="no status line")
    run.add_argument("--config", help="TOML config file (sections: audio, segmenter, features, wav2vec, quantizer, oracle, generation, midi, cluster, control)")
    tools = parser.add_argument_group("tools (print and exit)")
    tools.add_argument("--list-midi", action="store_true", help="list MIDI output ports")
    tools.add_argument("--list-devices", action="store_true", help="list audio input devices")
    tools.add_argument("--panic", action="store_true", help="send all-notes-off (CC123/CC120 on every channel) to --midi-port")
    tools.add_argument("--controls", action="store_true", help="print the OSC address map and the MIDI CC/note map")
    return parser


def config_from_args(args: argparse.Namespace) -> MusicHalConfig:
    config = MusicHalConfig.from_toml(args.config) if args.config else MusicHalConfig()
    for name in ("input_file", "record", "save_learned", "session_log"):  # actors run in other working directories
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if args.model:
        args.model = [os.path.abspath(path) for path in args.model]
    profile = "mono" if args.no_mpe else args.midi_profile
    kind = "wav2vec" if args.wav2vec else None
    return config.with_overrides({
        "audio.input_channel": args.input_channel,
        "midi.port": args.midi_port, "midi.api": args.midi_api, "midi.profile": profile, "midi.record_path": args.record,
        "features.kind": kind, "features.hybrid": True if args.hybrid_perception else None,
        "wav2vec.model": args.wav2vec_model, "wav2vec.use_gpu": True if args.gpu else None,
        "generation.mode": args.mode, "generation.continuity": args.continuity, "generation.density": args.density,
        "generation.seed": args.seed,
        "cluster.address": args.ray_address, "cluster.encoder_resource": args.encoder_resource,
        "control.osc_port": args.osc_port, "control.osc_host": args.osc_host, "control.midi_in_port": args.midi_in,
        "control.midi_in_api": args.midi_in_api, "control.input_gate": False if args.no_input_gate else None,
        "control.gate_release_ms": args.gate_release_ms,
    })


def _wav2vec_available(model: str) -> None:
    """Raise DeviceError (one line) when the wav2vec checkpoint is neither a local directory nor in the HF cache."""
    from shared.errors import DeviceError

    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DeviceError(f"wav2vec model directory {model} has no config.json: save it with save_pretrained")
        return
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        raise DeviceError(f"wav2vec model directory {model} does not exist: pass a directory saved with save_pretrained, "
                          "or a hub name that is in the Hugging Face cache")
    from services.encoder.wav2vec import _how_to_provide, hub_offline

    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise DeviceError(_how_to_provide(model))


def preflight(config: MusicHalConfig, *, input_file: Optional[str] = None, input_device: Any = None,
              model_path: Optional[str] = None) -> None:
    """Check every input a user names before Ray or any actor starts; raise a MusicHalError with one line.

    Input file header, the model (loaded and checked as the oracle actor will check it), MIDI API and named port,
    audio input device (when no file is given) and the wav2vec checkpoint (when wav2vec features are used).
    """
    if input_file is not None:
        from shared.audio import probe_audio_file

        probe_audio_file(input_file)
    if model_path is not None:
        from services.model_file import load_musichal_model
        from services.oracle.stage import OracleStage
        from shared.errors import ModelFormatError

        model = load_musichal_model(model_path)
        try:  # the oracle's own consistency checks (the actor would otherwise die at start and restart forever)
            OracleStage(config, model=model.oracle_parts)
        except ModelFormatError as error:
            raise ModelFormatError(f"{model_path}: {error}") from None
    from services.midi_out.ports import _choose_port, list_output_ports, resolve_api

    api = resolve_api(config.midi.api)
    if config.midi.port is not None:
        _choose_port(list_output_ports(api), config.midi.port)
    if input_file is None:
        from services.capture.devices import _choose, list_input_devices

        _choose(list_input_devices(), input_device)
    if config.features.kind == "wav2vec":
        _wav2vec_available(config.wav2vec.model)


@dataclass
class LiveStack:
    """The running system: Ray, the rings and the four actors. Used by ``main`` and by the tests."""

    config: MusicHalConfig
    input_file: Optional[str] = None
    input_device: Any = None
    loop: bool = False
    model_path: Any = None  # a path, or a list of paths (several corpora merged into one memory)
    checkpoint_path: Optional[str] = None
    session_log: Optional[str] = None
    actors: dict[str, Any] = field(default_factory=dict)
    control: Any = None  # services.control.hub.ControlHub once started
    control_inputs: list[Any] = field(default_factory=list)
    rings: dict[str, Any] = field(default_factory=dict)
    started_ray: bool = False
    encoder_info: dict[str, Any] = field(default_factory=dict)

    def start(self) -> "LiveStack":
        import ray

        from shared.message_ring import MessageRing
        from shared.ring import AudioRing, remove_stale_rings
        from services.capture.actor import CaptureActor
        from services.encoder.actor import EncoderActor
        from services.midi_out.actor import MidiOutActor
        from services.oracle.actor import OracleActor
        from services.ray_support import pin_to_node

        remove_stale_rings()  # segments of a predecessor that was killed
        if self.config.control.input_gate is None:  # auto: a microphone hears our synth, a file does not
            self.config = self.config.with_overrides({"control.input_gate": self.input_file is None})
        models = self.model_paths
        preflight(self.config, input_file=self.input_file, input_device=self.input_device,
                  model_path=models[0] if models else None)
        if len(models) > 1:
            from services.control.corpus import load_corpora

            load_corpora(self.config, models)  # every corpus valid and mergeable before Ray starts
        if not ray.is_initialized():
            address = self.config.cluster.address
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                         num_cpus=max(2, os.cpu_count() or 2), log_to_driver=False, configure_logging=False)
            self.started_ray = True
        try:
            self._start_actors(ray, AudioRing, MessageRing, CaptureActor, EncoderActor, MidiOutActor, OracleActor, pin_to_node)
            self._start_controls()
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def _start_actors(self, ray, AudioRing, MessageRing, CaptureActor, EncoderActor, MidiOutActor, OracleActor, pin_to_node) -> None:
        audio = self.config.audio
        self.rings = {
            "audio": AudioRing.create_for(seconds=audio.ring_seconds, sample_rate_hz=audio.sample_rate_hz),
            "events": MessageRing.create(capacity_bytes=1 << 20),
            "percepts": MessageRing.create(capacity_bytes=1 << 22),
            "notes": MessageRing.create(capacity_bytes=1 << 20),
        }
        names = {key: ring.name for key, ring in self.rings.items()}
        self.driver_node = ray.get_runtime_context().get_node_id()
        local = pin_to_node(self.driver_node)
        self.actors["midi_out"] = MidiOutActor.options(**local).remote(self.config, names["notes"])
        encoder_options: dict[str, Any] = dict(local)
        if self.config.cluster.encoder_resource:
            encoder_options = {"resources": {self.config.cluster.encoder_resource: 1}}
        elif self.config.wav2vec.use_gpu and ray.cluster_resources().get("GPU", 0) >= 1:
            encoder_options = {"num_gpus": 1}
        models = self.model_paths
        self.actors["encoder"] = EncoderActor.options(**encoder_options).remote(
            self.config, model_path=models[0] if models else None, rings=names, local_node_id=self.driver_node)
        ray.get(self.actors["midi_out"].ready.remote(), timeout=60)
        self.encoder_info = ray.get(self.actors["encoder"].ready.remote(), timeout=300)
        remote_encoder = None if self.encoder_info["local"] else self.actors["encoder"]
        self.actors["oracle"] = OracleActor.options(**local).remote(
            self.config, names, model_path=models or None, encoder=remote_encoder, checkpoint_path=self.checkpoint_path,
            session_log=self.session_log)
        ray.get(self.actors["oracle"].ready.remote(), timeout=60)
        self.actors["capture"] = CaptureActor.options(**local).remote(
            self.config, names["audio"], names["events"], input_file=self.input_file, input_device=self.input_device,
            loop=self.loop)
        ray.get(self.actors["capture"].ready.remote(), timeout=60)

    @property
    def model_paths(self) -> list[str]:
        if not self.model_path:
            return []
        return [self.model_path] if isinstance(self.model_path, (str, os.PathLike)) else [str(p) for p in self.model_path]

    # ------------------------------------------------------------------ performer controls
    def _start_controls(self) -> None:
        """The control hub (always; ``apply_control`` works without servers) and the OSC/MIDI inputs asked for."""
        from services.control.hub import ControlHub
        from services.control.servers import open_controls

        self.control = ControlHub(self.config, self._apply_control)
        self.control_inputs = open_controls(self.control)

    def _apply_control(self, name: str, value: Any) -> None:
        """Control plane: one effective change → plain actor calls (waited for, so the order is kept)."""
        import ray

        oracle, midi_out = self.actors.get("oracle"), self.actors.get("midi_out")
        refs = []
        if name in ("mode", "continuity", "density", "learning", "gate", "tempo", "wait", "beat") and oracle is not None:
            refs.append(oracle.control.remote(name, value))
        elif name == "mute":
            refs += [a for a in (oracle and oracle.control.remote("mute", value),
                                 midi_out and midi_out.set_muted.remote(value)) if a is not None]
        elif name == "profile":
            refs += [a for a in (oracle and oracle.control.remote("profile", value),
                                 midi_out and midi_out.set_profile.remote(value)) if a is not None]
        elif name == "panic" and midi_out is not None:
            refs.append(midi_out.panic.remote())
        elif name == "save" and oracle is not None:
            refs.append(oracle.checkpoint.remote())
        if refs:
            ray.get(refs, timeout=5.0)

    def set_control(self, name: str, value: Any = None) -> dict[str, Any]:
        """Apply one control from Python (as OSC/MIDI would); raises ParameterError on a bad value."""
        from services.control.state import ControlChange

        if self.control is None:
            raise MusicHalError("the stack is not running")
        return self.control.handle(ControlChange(name, value, source="api"))

    # ------------------------------------------------------------------ monitoring
    def stats(self, *, timeout_s: float = 1.0) -> dict[str, Any]:
        """Each actor's stats; an actor that does not answer in time is reported as unavailable."""
        import ray

        refs = {name: actor.stats.remote() for name, actor in self.actors.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        out: dict[str, Any] = {}
        if self.control is not None:
            out["control"] = self.control.snapshot()
        for name, ref in refs.items():
            if ref in ready:
                try:
                    out[name] = ray.get(ref)
                except Exception as error:
                    out[name] = {"unavailable": f"{type(error).__name__}"}
            else:
                out[name] = {"unavailable": "no answer"}
        return out

    def finished(self) -> bool:
        import ray

        try:
            return bool(ray.get(self.actors["capture"].finished.remote(), timeout=2))
        except Exception:
            return False

    @staticmethod
    def status_line(stats: dict[str, Any], elapsed_s: float) -> str:
        def counter(stage: str, key: str) -> Any:
            return stats.get(stage, {}).get("counters", {}).get(key, "?")

        oracle = stats.get("oracle", {})
        encoder = stats.get("encoder", {})
        if "unavailable" in encoder or oracle.get("encoder_lost"):
            where = "LOST (playing on)"
        else:
            node = encoder.get("node_id") or "?"
            where = f"{node[:8]} ({'local' if encoder.get('local') else 'remote'})"
        drops = sum(int(counter(stage, key)) for stage, key in (("encoder", "dropped_backlog"), ("oracle", "dropped_in_flight"),
                                                                  ("capture", "samples_lost")) if isinstance(counter(stage, key), int))
        p99 = stats.get("midi_out", {}).get("latency_ms", {}).get("pipeline", {}).get("p99")
        guard = encoder.get("slow_guard") or {}
        if guard.get("using_fallback"):
            where += " TOO SLOW->traditional"
        control = stats.get("control", {}).get("summary")
        gated = counter("oracle", "gated")
        return (f"[{elapsed_s:6.1f}s] events {counter('capture', 'events')}  percepts {counter('oracle', 'percepts')}  "
                f"states {counter('oracle', 'stage_states')}  notes {counter('midi_out', 'notes_received')}  drops {drops}  "
                f"encoder {where}  latency p99 {p99 if p99 is not None else '-'} ms"
                + (f"  gated {gated}" if gated not in (0, "?") else "") + (f"  | {control}" if control else ""))

    # ------------------------------------------------------------------ shutdown
    def stop(self, *, graceful: bool = True, drain_s: float = 0.0) -> dict[str, Any]:
        """Stop capture, let the last notes finish (``drain_s``), panic, write the SMF, unlink the rings."""
        import ray

        final: dict[str, Any] = {}
        order = ["capture", "oracle", "encoder", "midi_out"]
        for server in self.control_inputs:  # no control change may arrive while the actors stop
            try:
                server.close()
            except Exception:
                pass
        self.control_inputs = []
        if graceful and "capture" in self.actors:
            try:
                ray.get(self.actors["capture"].stop.remote(), timeout=1.0)
            except Exception:
                pass
            if "oracle" in self.actors or "midi_out" in self.actors:
                try:
                    final = self.stats(timeout_s=1.0)
                except Exception:
                    final = {}
            # the player plays on by itself: stop deciding first, then let the decided notes finish (bounded)
            # before midi_out stops, so a session log's replay ends as the live recording did
            if "oracle" in self.actors:
                try:
                    ray.get(self.actors["oracle"].stop.remote(), timeout=5.0)
                except Exception:
                    pass
            if "midi_out" in self.actors:
                drain = max(drain_s, 2.5)  # notes last at most MAX_IOI_S (2 s)
                try:
                    ray.get(self.actors["midi_out"].wait_idle.remote(drain), timeout=drain + 1)
                except Exception:
                    pass
            refs = []
            for name in ("encoder", "midi_out"):
                if name in self.actors:
                    refs.append(self.actors[name].stop.remote())
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=2.0)
        for name in order:
            actor = self.actors.pop(name, None)
            if actor is not None:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
        for ring in self.rings.values():
            try:
                ring.close()
                ring.unlink()
            except Exception:
                pass
        self.rings = {}
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
        return final


def _print_latency_table(final: dict[str, Any]) -> None:
    print("per-stage latency (ms):")
    for stage in ("encoder", "oracle", "midi_out"):
        for name, figures in sorted(final.get(stage, {}).get("latency_ms", {}).items()):
            if figures.get("count"):
                print(f"  {stage:9s} {name:20s} n={figures['count']:6d}  p50 {figures['p50']:8.3f}  "
                      f"p95 {figures['p95']:8.3f}  p99 {figures['p99']:8.3f}")


def _tool_commands(args: argparse.Namespace, config: MusicHalConfig) -> Optional[int]:
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
    if args.panic:
        from services.midi_out.cli import panic_port

        sent = panic_port(config.midi.api, config.midi.port)
        print(f"panic: {sent} messages sent")
        return 0
    return None


def _one_line(error: BaseException) -> str:
    """The innermost ``SomeError: message`` line of a (Ray-wrapped) exception, else its type and first line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return _one_line(cause)
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head, sep, message = line.partition(": ")
        if sep and head.split(".")[-1].endswith("Error") and " " not in head:
            return message
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def build_replay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal replay",
        description="Re-run the decisions of a session logged with --session-log (no Ray, no audio): the logged "
                    "percepts and control changes go into a fresh oracle with the logged config, seed and models; "
                    "the notes come out as they did live.")
    parser.add_argument("session_log", help="the JSONL file written by musichal --session-log")
    parser.add_argument("--record", help="write the replayed performance as a Standard MIDI File")
    parser.add_argument("--midi-port", help="also play it to this MIDI output port, at the logged pace")
    parser.add_argument("--midi-api", choices=["auto", "jack", "alsa", "coremidi", "winmm"], default="auto")
    return parser


def replay_main(argv: list[str]) -> int:
    from services.control.session import render_notes, replay_session

    args = build_replay_parser().parse_args(argv)
    try:
        result = replay_session(args.session_log)
        print(f"musichal replay: {result.counters['percepts']} percepts ({result.counters['gated']} gated), "
              f"{result.counters['controls']} control changes, {len(result.notes)} notes; "
              + ("identical to the logged decisions" if result.identical else "DIFFERENT from the logged decisions"))
        recorder = render_notes(result.notes, result.config, t_start=result.t0, controls=result.controls,
                                t_end=result.t_end)
        if args.record:
            recorder.save(args.record)
            print(f"MIDI written to {args.record}")
        if args.midi_port:
            from services.midi_out.ports import open_output

            port = open_output(args.midi_api, args.midi_port)
            try:
                events = recorder.events
                start = time.monotonic() - (events[0][0] if events else 0.0)
                for stamp, message in events:
                    time.sleep(max(0.0, start + stamp - time.monotonic()))
                    port.send(message)
            finally:
                port.close()
        return 0 if result.identical else 1
    except MusicHalError as error:
        print(f"musichal replay: error: {error}", file=sys.stderr)
        return 2


def main(argv: Optional[list[str]] = None) -> int:
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
        stack = LiveStack(config, input_file=args.input_file, input_device=args.input_device, loop=args.loop,
                          model_path=args.model, checkpoint_path=args.save_learned, session_log=args.session_log)
        t0 = time.monotonic()
        try:
            stack.start()
        except MusicHalError:
            raise
        except Exception as error:  # an actor died while starting: report its reason in one line
            raise MusicHalError(f"could not start the stack: {_one_line(error)}") from None
        for sig in previous:  # ray.init installs its own C-level SIGTERM handler (abort, shm left behind): ours again
            signal.signal(sig, on_signal)
        if not args.quiet:
            info = stack.encoder_info
            for server in stack.control_inputs:
                where = f"OSC on {server.host}:{server.port}" if hasattr(server, "host") else f"MIDI control on {server.port_name}"
                print(f"musichal: {where} (musichal --controls prints the map)", flush=True)
            print(f"musichal: running (encoder on node {info.get('node_id', '?')[:8]}, "
                  f"{'local rings' if info.get('local') else 'remote, windows by value'}); Ctrl-C to stop", flush=True)
        try:
            while not stop.wait(1.0):
                elapsed = time.monotonic() - t0
                if not args.quiet:
                    print(stack.status_line(stack.stats(timeout_s=0.5), elapsed), flush=True)
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
            print(f"musichal: stopped ({reason['why']}) in {time.monotonic() - t_stop:.2f} s; all notes off"
                  + (f"; MIDI written to {args.record}" if args.record else ""))
        if args.stats:
            _print_latency_table(final)
            Path(args.stats_file).write_text(json.dumps(final, indent=2, default=str))
            print(f"stats written to {args.stats_file}")
        return 0
    except MusicHalError as error:
        print(f"musichal: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
