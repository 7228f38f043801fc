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
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from shared.config import GENERATION_MODES, MIDI_PROFILES, MusicHalConfig
from shared.cluster_security import require_token_auth
from shared.errors import MusicHalError, ParameterError

__all__ = ["build_parser", "config_from_args", "listening_request", "plan_listening", "preflight", "LiveStack", "main"]

#: ``learned 0 of N events`` is reported once this much time has passed with onsets heard …
DEAF_AFTER_S = 10.0
#: … and, at the end of a run that heard at least this many onsets, makes the exit status 1.
DEAF_MIN_EVENTS = 3
#: how long a stop waits for midi_out's own stop (its all-notes-off) before the actor is killed
MIDI_STOP_WAIT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musichal",
        description="MusicHal: a real-time AI co-improviser. Listens to audio, learns an Audio Oracle, answers in MIDI/MPE.",
        epilog="Without --model MusicHal learns live from what it hears; with --model it listens as the model was trained "
               "(musichal --model m.json --describe shows how). Ctrl-C stops cleanly (all notes off). Exit status: 0 "
               "played; 1 heard onsets but learned none of them (the warning names the likely cause); 2 error.")
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
    model.add_argument("--hybrid-perception", action="store_true", help="keep both views: traditional 22-D and wav2vec "
                       "(learning live; a --model listens as it was trained, these flags may only repeat that)")
    model.add_argument("--wav2vec", action="store_true", help="Wav2Vec 2.0 features (learning live; see --hybrid-perception)")
    model.add_argument("--wav2vec-model", help="checkpoint name or local directory (default facebook/wav2vec2-base); with "
                       "--model: where the model's own checkpoint is, when it moved (its content hash is checked)")
    model.add_argument("--other-checkpoint", action="store_true", help="with --model and --wav2vec-model: use that "
                       "checkpoint although its weights differ from the model's (its dimension and layer must fit)")
    model.add_argument("--gpu", action="store_true", help="run wav2vec on a GPU: the encoder requests cluster.encoder_num_gpus "
                       "GPUs (default 1) and the stack refuses to start when the encoder's node has none")
    model.add_argument("--gpu-fallback", action="store_true", help="with --gpu: use the CPU (with a warning) where no GPU is found")
    play = parser.add_argument_group("playing")
    play.add_argument("--mode", choices=list(GENERATION_MODES), help="imitate (default), contrast or lead")
    play.add_argument("--continuity", type=float, help="probability of a forward step in the oracle (0..1)")
    play.add_argument("--density", type=float, help="note density factor (0..4)")
    play.add_argument("--seed", type=int, help="random seed of the improviser")
    play.add_argument("--voices", help="voices that play, comma-separated: melody,bass,comping (default all three; "
                      "[voices] in the config)")
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
    cluster.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray listening on 127.0.0.1 only); "
                         "a head on another machine needs token auth: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (see README)")
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
    tools.add_argument("--describe", action="store_true", help="with --model: print what the model contains and how "
                       "it will listen (views, checkpoint, dimension, vocabulary, threshold, states, source files)")
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
    return config.with_overrides({
        "audio.input_channel": args.input_channel,
        "midi.port": args.midi_port, "midi.api": args.midi_api, "midi.profile": profile, "midi.record_path": args.record,
        "features.kind": kind, "features.hybrid": True if args.hybrid_perception else None,
        "wav2vec.model": args.wav2vec_model, "wav2vec.use_gpu": True if args.gpu else None,
        "wav2vec.gpu_fallback": True if getattr(args, "gpu_fallback", False) else None,
        "generation.mode": args.mode, "generation.continuity": args.continuity, "generation.density": args.density,
        "generation.seed": args.seed,
        "cluster.address": args.ray_address, "cluster.encoder_resource": args.encoder_resource,
        "control.osc_port": args.osc_port, "control.osc_host": args.osc_host, "control.midi_in_port": args.midi_in,
        "control.midi_in_api": args.midi_in_api, "control.input_gate": False if args.no_input_gate else None,
        "control.gate_release_ms": args.gate_release_ms, **voices,
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


def _gpu_placement(ray: Any, config: MusicHalConfig) -> tuple[bool, str]:
    """(a node can host the encoder with its GPUs, a description of what Ray sees) for ``--gpu``."""
    resource, need = config.cluster.encoder_resource, config.cluster.encoder_num_gpus
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    fits = [n for n in nodes if n["Resources"].get("GPU", 0) >= need and (not resource or n["Resources"].get(resource, 0) >= 1)]
    where = f"no node offering resource {resource!r}" if resource else "no node"
    return bool(fits), f"{where} has {need:g} GPU(s) in Ray (GPUs seen: {sum(n['Resources'].get('GPU', 0) for n in nodes):g})"


def listening_request(config: MusicHalConfig, *, checkpoint: Optional[str] = None,
                      other_checkpoint: bool = False) -> dict[str, Any]:
    """The live perception the user asked for (flags or config file): only what differs from the defaults counts."""
    from shared.config import Wav2VecConfig

    default = Wav2VecConfig()
    if checkpoint is None and config.wav2vec.model != default.model:
        checkpoint = config.wav2vec.model
    return {"wav2vec": config.features.kind == "wav2vec", "hybrid": bool(config.features.hybrid),
            "checkpoint": checkpoint, "allow_other_checkpoint": bool(other_checkpoint or config.wav2vec.other_checkpoint),
            "layer": config.wav2vec.layer if config.wav2vec.layer != default.layer else None}


def plan_listening(config: MusicHalConfig, model: Any, *, checkpoint: Optional[str] = None, other_checkpoint: bool = False,
                   resolve_here: bool = True) -> Any:
    """The model's PerceptionSpec with the live request attached; contradicting flags and a missing or different
    checkpoint raise one line (ParameterError / DeviceError). ``resolve_here``: the encoder runs on this node."""
    from services.encoder.spec import check_live_request, resolve_checkpoint

    spec = model.spec
    if spec is None:
        return None
    request = listening_request(config, checkpoint=checkpoint, other_checkpoint=other_checkpoint)
    check_live_request(spec, **request)
    spec = spec.with_request(checkpoint=request["checkpoint"], allow_other_checkpoint=request["allow_other_checkpoint"])
    if resolve_here:  # found and verified here: the encoder (same node, another working directory) loads that folder
        found = resolve_checkpoint(spec)
        if found is not None:
            spec = spec.with_request(checkpoint=found, allow_other_checkpoint=request["allow_other_checkpoint"])
    return spec


def preflight(config: MusicHalConfig, *, input_file: Optional[str] = None, input_device: Any = None,
              model_path: Optional[str] = None, checkpoint: Optional[str] = None, other_checkpoint: bool = False) -> Any:
    """Check every input a user names before Ray or any actor starts; raise a MusicHalError with one line.

    Input file header, the model (loaded and checked as the oracle actor will check it) and how it listens
    (:func:`plan_listening`: flags that contradict it, its wav2vec checkpoint found and verified), MIDI API and
    named port, audio input device (when no file is given) and, learning live, the wav2vec checkpoint.
    Returns the model's PerceptionSpec (None without a model, or a model without fitted perception).
    """
    spec = None
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
        spec = plan_listening(config, model, checkpoint=checkpoint, other_checkpoint=other_checkpoint,
                              resolve_here=not config.cluster.encoder_resource)
    from services.midi_out.ports import _choose_port, list_output_ports, resolve_api

    api = resolve_api(config.midi.api)
    if config.midi.port is not None:
        _choose_port(list_output_ports(api), config.midi.port)
    if input_file is None:
        from services.capture.devices import _choose, list_input_devices

        _choose(list_input_devices(), input_device)
    if model_path is None and config.features.kind == "wav2vec" and not config.cluster.encoder_resource:
        _wav2vec_available(config.wav2vec.model)  # a remote encoder resolves it on its own node (one line naming it)
    return spec


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
    wav2vec_checkpoint: Optional[str] = None  # --wav2vec-model with --model: where the model's checkpoint is
    other_checkpoint: bool = False  # --other-checkpoint
    perception_spec: Any = None  # the first model's PerceptionSpec (what the encoder is built from)

    def start(self) -> "LiveStack":
        from shared.message_ring import MessageRing
        from shared.ring import AudioRing, remove_stale_rings

        remove_stale_rings()  # segments of a predecessor that was killed
        if self.config.control.input_gate is None:  # auto: a microphone hears our synth, a file does not
            self.config = self.config.with_overrides({"control.input_gate": self.input_file is None})
        models = self.model_paths
        self.perception_spec = preflight(self.config, input_file=self.input_file, input_device=self.input_device,
                                         model_path=models[0] if models else None, checkpoint=self.wav2vec_checkpoint,
                                         other_checkpoint=self.other_checkpoint)
        if len(models) > 1:
            from services.oracle.corpus import load_corpora

            load_corpora(self.config, models)  # every corpus valid and mergeable before Ray starts
        import ray  # only now: every error above is one line before Ray is even imported

        from services.capture.actor import CaptureActor
        from services.encoder.actor import EncoderActor
        from services.midi_out.actor import MidiOutActor
        from services.oracle.actor import OracleActor
        from services.ray_support import pin_to_node

        if not ray.is_initialized():
            address = self.config.cluster.address
            if address:
                require_token_auth(address)
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                from services.ray_support import loopback_only

                with loopback_only():
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
        cluster = self.config.cluster
        if cluster.encoder_resource:
            encoder_options = {"resources": {cluster.encoder_resource: 1}, "runtime_env": local["runtime_env"]}
        spec = self.perception_spec  # a model listens as it was trained: its record says whether wav2vec runs
        uses_wav2vec = self.config.features.kind == "wav2vec" or (spec is not None and spec.wav2vec is not None)
        if self.config.wav2vec.use_gpu and uses_wav2vec:
            fits, seen = _gpu_placement(ray, self.config)
            if fits:
                encoder_options["num_gpus"] = cluster.encoder_num_gpus
                if not cluster.encoder_resource and ray.available_resources().get("GPU", 0) >= cluster.encoder_num_gpus:
                    local_gpu = any(n["NodeID"] == self.driver_node and n["Resources"].get("GPU", 0) >= cluster.encoder_num_gpus
                                    for n in ray.nodes() if n.get("Alive"))
                    if not local_gpu:  # the GPU is on another node: place by GPU, not on the driver's node
                        encoder_options = {"num_gpus": cluster.encoder_num_gpus, "runtime_env": local["runtime_env"]}
            elif not self.config.wav2vec.gpu_fallback:
                from shared.errors import DeviceError

                raise DeviceError(f"--gpu: {seen}; start the worker with a GPU, or add --gpu-fallback to use the CPU")
            else:
                print(f"musichal: warning: --gpu: {seen}; wav2vec runs on the CPU (--gpu-fallback)", file=sys.stderr)
        models = self.model_paths
        self.actors["encoder"] = EncoderActor.options(**encoder_options).remote(  # the model's perception, by value
            self.config,  # never a head path: a model without a perception record gives spec None too
            perception_spec=self.perception_spec, rings=names, local_node_id=self.driver_node)
        ray.get(self.actors["midi_out"].ready.remote(), timeout=60)
        self.encoder_info = ray.get(self.actors["encoder"].ready.remote(), timeout=300)
        remote_encoder = None if self.encoder_info["local"] else self.actors["encoder"]
        self.actors["oracle"] = OracleActor.options(**local).remote(
            self.config, names, model_path=models or None, encoder=remote_encoder, checkpoint_path=self.checkpoint_path,
            session_log=self.session_log, encoder_rate_hz=self.encoder_info.get("input_rate_hz"))
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
        if (name in ("mode", "continuity", "density", "learning", "gate", "tempo", "wait", "beat")
                or name.startswith("voice/")) and oracle is not None:
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
        failed = counter("encoder", "exceptions")
        mismatch = counter("oracle", "stage_dim_mismatch")
        return (f"[{elapsed_s:6.1f}s] events {counter('capture', 'events')}  percepts {counter('oracle', 'percepts')}  "
                f"learned {counter('oracle', 'stage_learned')}  "
                f"states {counter('oracle', 'stage_states')}  notes {counter('midi_out', 'notes_received')}  drops {drops}  "
                f"encoder {where}  latency p99 {p99 if p99 is not None else '-'} ms"
                + (f"  ENCODER ERRORS {failed}" if failed not in (0, "?") else "")
                + (f"  DIM MISMATCH {mismatch}" if mismatch not in (0, "?") else "")
                + (f"  gated {gated}" if gated not in (0, "?") else "") + (f"  | {control}" if control else ""))

    @staticmethod
    def deafness(stats: dict[str, Any]) -> Optional[str]:
        """``"learned 0 of N events: <likely cause>"`` when onsets were heard and none was learned, else None."""
        def counter(stage: str, key: str) -> int:
            value = stats.get(stage, {}).get("counters", {}).get(key, 0)
            return int(value) if isinstance(value, (int, float)) else 0

        events = counter("capture", "events")
        oracle = stats.get("oracle", {})
        if events == 0 or counter("oracle", "stage_learned") > 0 or "counters" not in oracle:
            return None
        if (oracle.get("control") or {}).get("learning") is False:
            return None  # learning switched off on purpose
        encoder = stats.get("encoder", {})
        if counter("encoder", "exceptions"):
            cause = f"the encoder failed on {counter('encoder', 'exceptions')} event(s) (first: {encoder.get('first_exception')})"
        elif counter("oracle", "stage_dim_mismatch"):
            cause = (f"{counter('oracle', 'stage_dim_mismatch')} percept(s) did not have the memory's dimension "
                     "(the perception is not the model's)")
        elif counter("oracle", "gated") and counter("oracle", "gated") >= counter("oracle", "events"):
            cause = "the input gate blocked every event (MusicHal heard only itself? try --no-input-gate)"
        elif counter("oracle", "encoder_misses"):
            cause = (f"the encoder missed its deadline on {counter('oracle', 'encoder_misses')} event(s) "
                     "(too slow or lost: see the encoder column)")
        elif counter("oracle", "events") == 0:
            cause = "no event reached the oracle"
        else:
            cause = "no percept reached the oracle"
        return f"learned 0 of {events} events: {cause}"

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
            # the final figures are taken once each has finished: the oracle's as it stops (its last decisions
            # counted), midi_out's after the drain (every decided note received)
            if "oracle" in self.actors:
                try:
                    final["oracle"] = ray.get(self.actors["oracle"].stop.remote(), timeout=5.0)
                except Exception:
                    pass
            if "midi_out" in self.actors:
                drain = max(drain_s, 2.5)  # notes last at most MAX_IOI_S (2 s)
                try:
                    ray.get(self.actors["midi_out"].wait_idle.remote(drain), timeout=drain + 1)
                    final["midi_out"] = ray.get(self.actors["midi_out"].stats.remote(), timeout=1.0)
                except Exception:
                    pass
            refs = {name: self.actors[name].stop.remote() for name in ("encoder", "midi_out") if name in self.actors}
            if refs:
                ray.wait(list(refs.values()), num_returns=len(refs), timeout=2.0)
            if "midi_out" in refs:  # its stop sends all-notes-off: worth a longer (bounded) wait on a loaded machine
                ray.wait([refs["midi_out"]], timeout=MIDI_STOP_WAIT_S)
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
    if args.describe:
        if not args.model:
            raise MusicHalError("--describe needs --model m.json")
        from services.model_file import describe_model, load_musichal_model

        from services.encoder.spec import resolve_checkpoint

        for index, path in enumerate(args.model):
            model = load_musichal_model(path)
            print(describe_model(model), flush=True)
            if index == 0 and model.spec is not None:  # how this invocation would listen, checked
                spec = plan_listening(config, model, checkpoint=args.wav2vec_model,
                                      other_checkpoint=args.other_checkpoint, resolve_here=False)
                if spec.wav2vec is not None and not config.cluster.encoder_resource:
                    print(f"checkpoint on this machine: {resolve_checkpoint(spec)} (verified)")
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
    from services.midi_out.render import render_notes
    from services.oracle.session import replay_session

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
                          model_path=args.model, checkpoint_path=args.save_learned, session_log=args.session_log,
                          wav2vec_checkpoint=args.wav2vec_model if args.model else None,
                          other_checkpoint=args.other_checkpoint)
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
            print(f"musichal: running (encoder on node {info.get('node_id', '?')[:8]} {info.get('node_ip', '')}, "
                  f"{'local rings' if info.get('local') else 'remote, windows by value at ' + str(info.get('input_rate_hz')) + ' Hz'}, "
                  f"device {info.get('device', '?')}; listening with "
                  f"{' + '.join(info.get('views') or ['?'])}"
                  + (f", {info['wav2vec']}" if info.get("wav2vec") else "")
                  + (" as the model was trained" if stack.perception_spec is not None else ", learning live")
                  + "); Ctrl-C to stop", flush=True)
        shown: set[str] = set()  # warnings printed once

        def warn_once(key: str, line: Optional[str]) -> None:
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
            print(f"musichal: stopped ({reason['why']}) in {time.monotonic() - t_stop:.2f} s; all notes off"
                  + (f"; MIDI written to {args.record}" if args.record else ""))
        first = final.get("encoder", {}).get("first_exception")
        warn_once("encoder", first and f"the encoder failed on an event: {first}")
        if args.stats:
            _print_latency_table(final)
            from shared.model_io import atomic_write_bytes

            atomic_write_bytes(args.stats_file, json.dumps(final, indent=2, default=str).encode())
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
