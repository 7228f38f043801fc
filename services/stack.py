"""The live stack: Ray, the shared rings and the four actors, wired, supervised and stopped cleanly.

:class:`LiveStack` starts Ray (locally bound to 127.0.0.1 with the dashboard off, or joins ``cluster.address``),
checks every input first (:func:`services.preflight.preflight`), creates the shared audio ring and message rings,
starts capture, encoder, oracle and midi_out, applies performer controls through the control hub, reports each
actor's stats, and stops everything: notes off, SMF written, rings unlinked, Ray stopped if it started it.
``musichal`` (launch.py) is its command line; the tests and benchmarks drive it directly.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from services.preflight import preflight
from shared.cluster_security import require_token_auth
from shared.config import MusicHalConfig
from shared.errors import MusicHalError

__all__ = ["LiveStack", "gpu_placement", "DEAF_AFTER_S", "DEAF_MIN_EVENTS", "MIDI_STOP_WAIT_S"]

#: ``learned 0 of N events`` is reported once this much time has passed with onsets heard …
DEAF_AFTER_S = 10.0
#: … and, at the end of a run that heard at least this many onsets, makes the exit status 1.
DEAF_MIN_EVENTS = 3
#: how long a stop waits for midi_out's own stop (its all-notes-off) before the actor is killed
MIDI_STOP_WAIT_S = 10.0


def gpu_placement(ray: Any, config: MusicHalConfig) -> tuple[bool, str]:
    """(a node can host the encoder with its GPUs, a description of what Ray sees) for ``--gpu``."""
    resource, need = config.cluster.encoder_resource, config.cluster.encoder_num_gpus
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    fits = [
        n
        for n in nodes
        if n["Resources"].get("GPU", 0) >= need and (not resource or n["Resources"].get(resource, 0) >= 1)
    ]
    where = f"no node offering resource {resource!r}" if resource else "no node"
    return bool(
        fits
    ), f"{where} has {need:g} GPU(s) in Ray (GPUs seen: {sum(n['Resources'].get('GPU', 0) for n in nodes):g})"


@dataclass
class LiveStack:
    """The running system: Ray, the rings and the four actors. Used by ``main`` and by the tests."""

    config: MusicHalConfig
    input_file: str | None = None
    input_device: Any = None
    loop: bool = False
    model_path: Any = None  # a path, or a list of paths (several corpora merged into one memory)
    checkpoint_path: str | None = None
    session_log: str | None = None
    actors: dict[str, Any] = field(default_factory=dict)
    control: Any = None  # services.control.hub.ControlHub once started
    control_inputs: list[Any] = field(default_factory=list)
    console: Any = None  # services.console.console.LiveConsole with [console] enabled (musichal --console)
    last_stats: dict[str, Any] | None = None  # the latest stats() (the console shows them) and when they were taken
    last_stats_at: float | None = None
    rings: dict[str, Any] = field(default_factory=dict)
    started_ray: bool = False
    encoder_info: dict[str, Any] = field(default_factory=dict)
    wav2vec_checkpoint: str | None = None  # --wav2vec-model with --model: where the model's checkpoint is
    other_checkpoint: bool = False  # --other-checkpoint
    perception_spec: Any = None  # the first model's PerceptionSpec (what the encoder is built from)
    #: start-up phases, seconds each, in order (preflight, ray_import, ray_init, actor_modules, actors, listen …)
    startup: dict[str, float] = field(default_factory=dict)
    listening_at: float | None = None  # monotonic time the input started (every actor ready): music from here
    input_midi: str | None = None  # --input-midi: a MIDI source port (name, substring, index) or "virtual"
    midi_input: Any = None  # its open port (services.midi_out.ports.open_input) while running
    env_inherited: bool = False  # Ray was started here with the actors' environment (no runtime_env needed)

    def _phase(self, name: str) -> None:
        """Close the start-up phase ``name`` (its duration since the previous one)."""
        now = time.monotonic()
        self.startup[name] = round(now - self._phase_t, 3)
        self._phase_t = now

    def start(self) -> LiveStack:
        from shared.message_ring import MessageRing
        from shared.ring import AudioRing, remove_stale_rings

        self._phase_t = self._start_t = time.monotonic()
        self.startup = {}
        remove_stale_rings()  # segments of a predecessor that was killed
        if self.config.control.input_gate is None:  # auto: a microphone hears our synth, a file does not
            self.config = self.config.with_overrides({"control.input_gate": self.input_file is None})
        models = self.model_paths
        if self.input_midi is not None and not models and self.config.features.kind == "traditional":
            self.config = self.config.with_overrides({"features.kind": "symbolic"})  # learn what MIDI notes are
        self.perception_spec = preflight(
            self.config,
            input_file=self.input_file,
            input_device=self.input_device,
            model_path=models[0] if models else None,
            checkpoint=self.wav2vec_checkpoint,
            other_checkpoint=self.other_checkpoint,
            input_midi=self.input_midi,
        )
        console_token = None
        if self.config.console.enabled:  # its address and token checked before Ray starts (one line each)
            from services.console.server import check_console_address
            from services.console.server import console_token as read_token

            check_console_address(self.config.console.host, self.config.console.port)
            console_token = read_token(self.config.console.token_file)
        if len(models) > 1:
            from services.oracle.memory.corpus import load_corpora

            load_corpora(self.config, models)  # every corpus valid and mergeable before Ray starts
        self._phase("preflight")
        import ray  # only now: every error above is one line before Ray is even imported

        self._phase("ray_import")
        from services.capture.actor import CaptureActor
        from services.encoder.actor import EncoderActor
        from services.midi_out.actor import MidiOutActor
        from services.oracle.actor import OracleActor
        from services.ray_support import pin_to_node

        self._phase("actor_modules")
        if not ray.is_initialized():
            address = self.config.cluster.address
            if address:
                require_token_auth(address)
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                from services.ray_support import start_local_ray

                start_local_ray(max(2, os.cpu_count() or 2), actor_env=True)  # the actors need no runtime_env
                self.env_inherited = True
            self.started_ray = True
        self._phase("ray_init")
        try:
            self._start_actors(
                ray, AudioRing, MessageRing, CaptureActor, EncoderActor, MidiOutActor, OracleActor, pin_to_node
            )
            self._start_controls()
            if self.config.console.enabled:
                from services.console.console import LiveConsole

                self.console = LiveConsole(self, token=console_token)
            self._phase("controls")
            self._open_midi_input()
            self.listening_at = ray.get(self.actors["capture"].listen.remote(), timeout=60)  # the input starts now
            if self.midi_input is not None:  # MIDI onsets on the audio events' clock
                ray.get(self.actors["oracle"].midi_origin.remote(self.listening_at), timeout=10)
            self._phase("listen")
        except BaseException:
            self.stop(graceful=False)
            raise
        self.startup["total"] = round(time.monotonic() - self._start_t, 3)
        return self

    def _start_actors(
        self, ray, AudioRing, MessageRing, CaptureActor, EncoderActor, MidiOutActor, OracleActor, pin_to_node
    ) -> None:
        audio = self.config.audio
        self.rings = {
            "audio": AudioRing.create_for(seconds=audio.ring_seconds, sample_rate_hz=audio.sample_rate_hz),
            "events": MessageRing.create(capacity_bytes=1 << 20),
            "percepts": MessageRing.create(capacity_bytes=1 << 22),
            "notes": MessageRing.create(capacity_bytes=1 << 20),
        }
        if self.input_midi is not None:  # --input-midi: the port's messages, read by the oracle
            self.rings["midi_in"] = MessageRing.create(capacity_bytes=1 << 20)
        names = {key: ring.name for key, ring in self.rings.items()}
        self.driver_node = ray.get_runtime_context().get_node_id()
        local = pin_to_node(self.driver_node, env=not self.env_inherited)
        self._phase("rings")
        encoder_options = self._encoder_options(ray, local)
        models = self.model_paths
        # every actor is created at once and waited for together (their imports, model loads and warm-ups overlap);
        # the capture actor's input starts only once all are ready (listen), so no audio is lost to start-up.
        # The slowest to start (encoder: its model; oracle: numba, the model file) come first and so take the
        # workers Ray has started ahead; midi_out and capture get fresh ones.
        self.actors["encoder"] = EncoderActor.options(**encoder_options).remote(  # the model's perception, by value
            self.config,  # never a head path: a model without a perception record gives spec None too
            perception_spec=self.perception_spec,
            rings=names,
            local_node_id=self.driver_node,
        )
        encoder_is_local = encoder_options is local  # pinned to this node: it uses the rings
        if encoder_is_local:  # the oracle needs nothing from the encoder: start it now too
            self.actors["oracle"] = self._create_oracle(ray, OracleActor, local, names, models, None, None)
        self.actors["midi_out"] = MidiOutActor.options(**local).remote(self.config, names["notes"])
        self.actors["capture"] = CaptureActor.options(**local).remote(
            self.config,
            names["audio"],
            names["events"],
            input_file=self.input_file,
            input_device=self.input_device,
            loop=self.loop,
            start=False,
        )
        waits = {
            "midi_out": self.actors["midi_out"].ready.remote(),
            "encoder": self.actors["encoder"].ready.remote(),
            "capture": self.actors["capture"].ready.remote(),
        }
        if "oracle" in self.actors:
            waits["oracle"] = self.actors["oracle"].ready.remote()
        self._wait_ready(ray, waits)
        if "oracle" not in self.actors:  # a remote encoder: the oracle sends it windows at its rate
            remote_encoder = None if self.encoder_info["local"] else self.actors["encoder"]
            self.actors["oracle"] = self._create_oracle(
                ray, OracleActor, local, names, models, remote_encoder, self.encoder_info.get("input_rate_hz")
            )
            self._wait_ready(ray, {"oracle": self.actors["oracle"].ready.remote()})
        elif not self.encoder_info["local"]:
            raise MusicHalError("the encoder was pinned to this node but does not see its rings")

    def _create_oracle(self, ray, OracleActor, local, names, models, remote_encoder, rate_hz) -> Any:
        return OracleActor.options(**local).remote(
            self.config,
            names,
            model_path=models or None,
            encoder=remote_encoder,
            checkpoint_path=self.checkpoint_path,
            session_log=self.session_log,
            encoder_rate_hz=rate_hz,
        )

    #: how long each actor may take to be ready (the encoder loads and warms its model)
    READY_TIMEOUT_S = {"encoder": 300.0}
    READY_TIMEOUT_DEFAULT_S = 60.0

    def _wait_ready(self, ray, waits: dict[str, Any]) -> None:
        """Wait for every ``ready`` call together; each actor's time to ready goes into :attr:`startup`."""
        t0 = time.monotonic()
        pending = {ref: name for name, ref in waits.items()}
        timeout = max(self.READY_TIMEOUT_S.get(name, self.READY_TIMEOUT_DEFAULT_S) for name in waits)
        while pending:
            left = t0 + timeout - time.monotonic()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, left))
            if not done:
                raise MusicHalError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending.values()))}")
            for ref in done:
                name = pending.pop(ref)
                value = ray.get(ref)  # an actor that died while starting raises here, with its reason
                if name == "encoder":
                    self.encoder_info = value
                self.startup[f"ready_{name}"] = round(time.monotonic() - t0, 3)
        self._phase("actors" if "actors" not in self.startup else "oracle")

    @staticmethod
    def _actor_env() -> dict[str, Any]:
        """The actors' runtime_env for a node that did not inherit it (another node's encoder)."""
        from services.ray_support import ACTOR_ENV_VARS

        return {"env_vars": dict(ACTOR_ENV_VARS)}

    def _encoder_options(self, ray, local: dict[str, Any]) -> dict[str, Any]:
        """Where the encoder runs: pinned to this node (``local`` itself), by custom resource, or on a GPU node."""
        encoder_options: dict[str, Any] = local
        cluster = self.config.cluster
        if cluster.encoder_resource:
            encoder_options = {"resources": {cluster.encoder_resource: 1}, "runtime_env": self._actor_env()}
        spec = self.perception_spec  # a model listens as it was trained: its record says whether wav2vec runs
        uses_wav2vec = self.config.features.kind == "wav2vec" or (spec is not None and spec.wav2vec is not None)
        if self.config.wav2vec.use_gpu and uses_wav2vec:
            fits, seen = gpu_placement(ray, self.config)
            if fits:
                encoder_options = {**encoder_options, "num_gpus": cluster.encoder_num_gpus}
                if not cluster.encoder_resource and ray.available_resources().get("GPU", 0) >= cluster.encoder_num_gpus:
                    local_gpu = any(
                        n["NodeID"] == self.driver_node and n["Resources"].get("GPU", 0) >= cluster.encoder_num_gpus
                        for n in ray.nodes()
                        if n.get("Alive")
                    )
                    if not local_gpu:  # the GPU is on another node: place by GPU, not on the driver's node
                        encoder_options = {"num_gpus": cluster.encoder_num_gpus, "runtime_env": self._actor_env()}
            elif not self.config.wav2vec.gpu_fallback:
                from shared.errors import DeviceError

                raise DeviceError(f"--gpu: {seen}; start the worker with a GPU, or add --gpu-fallback to use the CPU")
            else:
                print(f"musichal: warning: --gpu: {seen}; wav2vec runs on the CPU (--gpu-fallback)", file=sys.stderr)
        return encoder_options

    @property
    def model_paths(self) -> list[str]:
        if not self.model_path:
            return []
        return (
            [self.model_path] if isinstance(self.model_path, (str, os.PathLike)) else [str(p) for p in self.model_path]
        )

    def _open_midi_input(self) -> None:
        """``--input-midi``: open the port here (its own delivery thread); every message goes to the ``midi_in``
        ring with its arrival time, where the oracle makes events of the notes."""
        if self.input_midi is None:
            return
        from services.encoder.midi_input import midi_record
        from services.midi_out.ports import open_input

        ring = self.rings["midi_in"]

        def on_message(message: list[int]) -> None:
            ring.send(midi_record(time.monotonic(), message))

        self.midi_input = open_input(
            on_message,
            self.config.midi.api,
            None if self.input_midi == "virtual" else self.input_midi,
            virtual_name="MusicHal in",
            client_name="MusicHal-notes",
        )

    # ------------------------------------------------------------------ performer controls
    def _start_controls(self) -> None:
        """The control hub (always; ``apply_control`` works without servers) and the OSC/MIDI inputs asked for."""
        from services.control.hub import ControlHub
        from services.control.servers import open_controls

        self.control = ControlHub(self.config, self._apply_control)
        self.control_inputs = open_controls(self.control)

    def _apply_control(self, name: str, value: Any) -> None:
        """Control plane: one effective change → the actor calls its row of the control table names
        (:func:`shared.controls.calls`), waited for, so the order is kept."""
        import ray

        from shared.controls import calls

        refs = [
            getattr(self.actors[actor], method).remote(*args)
            for actor, method, args in calls(name, value)
            if self.actors.get(actor) is not None
        ]
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
        self.last_stats, self.last_stats_at = out, time.monotonic()
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
        drops = sum(
            int(counter(stage, key))
            for stage, key in (
                ("encoder", "dropped_backlog"),
                ("oracle", "dropped_in_flight"),
                ("capture", "samples_lost"),
            )
            if isinstance(counter(stage, key), int)
        )
        p99 = stats.get("midi_out", {}).get("latency_ms", {}).get("pipeline", {}).get("p99")
        guard = encoder.get("slow_guard") or {}
        if guard.get("using_fallback"):
            where += " TOO SLOW->traditional"
        control = stats.get("control", {}).get("summary")
        gated = counter("oracle", "gated")
        failed = counter("encoder", "exceptions")
        mismatch = counter("oracle", "stage_dim_mismatch")
        reaction_p95 = stats.get("midi_out", {}).get("latency_ms", {}).get("onset_to_note", {}).get("p95")
        return (
            f"[{elapsed_s:6.1f}s] events {counter('capture', 'events')}  percepts {counter('oracle', 'percepts')}  "
            f"learned {counter('oracle', 'stage_learned')}  "
            f"states {counter('oracle', 'stage_states')}  notes {counter('midi_out', 'notes_received')}  drops "
            f"{drops}  "
            f"encoder {where}  latency p99 {p99 if p99 is not None else '-'} ms  "
            f"late steps {counter('midi_out', 'scheduler_clocked_late_on_arrival')}/"
            f"{counter('midi_out', 'scheduler_clocked_notes')}  "
            f"reaction p95 {reaction_p95 if reaction_p95 is not None else '-'} ms"
            + (f"  ENCODER ERRORS {failed}" if failed not in (0, "?") else "")
            + (f"  DIM MISMATCH {mismatch}" if mismatch not in (0, "?") else "")
            + (f"  gated {gated}" if gated not in (0, "?") else "")
            + (f"  | {control}" if control else "")
        )

    def running_lines(self) -> list[str]:
        """What ``musichal`` prints once the stack runs: the control inputs, then where and how it listens."""
        info = self.encoder_info
        lines = [] if self.console is None else [f"console on {self.console.url}"]
        for server in self.control_inputs:
            where = (
                f"OSC on {server.host}:{server.port}"
                if hasattr(server, "host")
                else f"MIDI control on {server.port_name}"
            )
            lines.append(f"{where} (musichal --controls prints the map)")
        if self.midi_input is not None:
            lines.append(
                f"MIDI notes from {self.midi_input.port_name} (the symbolic view; a chord = note-ons within "
                f"{self.config.features.chord_window_ms:g} ms)"
            )
        lines.append(
            f"running (encoder on node {info.get('node_id', '?')[:8]} {info.get('node_ip', '')}, "
            + ("local rings" if info.get("local") else f"remote, windows by value at {info.get('input_rate_hz')} Hz")
            + ", "
            f"device {info.get('device', '?')}; listening with "
            f"{' + '.join(info.get('views') or ['?'])}"
            + (f", {info['wav2vec']}" if info.get("wav2vec") else "")
            + (" as the model was trained" if self.perception_spec is not None else ", learning live")
            + "); Ctrl-C to stop"
        )
        return lines

    @staticmethod
    def latency_table(final: dict[str, Any]) -> str:
        """``--stats``: per-stage latency percentiles of the final stats, one line per measured hop."""
        lines = ["per-stage latency (ms):"]
        for stage in ("encoder", "oracle", "midi_out"):
            for name, figures in sorted(final.get(stage, {}).get("latency_ms", {}).items()):
                if figures.get("count"):
                    lines.append(
                        f"  {stage:9s} {name:20s} n={figures['count']:6d}  p50 {figures['p50']:8.3f}  "
                        f"p95 {figures['p95']:8.3f}  p99 {figures['p99']:8.3f}"
                    )
        counters = final.get("midi_out", {}).get("counters", {})
        for kind, what in (("clocked", "steps on the own clock"), ("reaction", "reactions, due at once")):
            if f"scheduler_{kind}_notes" in counters:
                lines.append(
                    f"  midi_out  {kind} notes ({what}): {counters[f'scheduler_{kind}_notes']}, "
                    f"late on arrival {counters[f'scheduler_{kind}_late_on_arrival']}, "
                    f"sent late {counters[f'scheduler_{kind}_late']}"
                )
        return "\n".join(lines)

    @staticmethod
    def deafness(stats: dict[str, Any]) -> str | None:
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
            cause = (
                f"the encoder failed on {counter('encoder', 'exceptions')} event(s) (first: "
                f"{encoder.get('first_exception')})"
            )
        elif counter("oracle", "stage_dim_mismatch"):
            cause = (
                f"{counter('oracle', 'stage_dim_mismatch')} percept(s) did not have the memory's dimension "
                "(the perception is not the model's)"
            )
        elif counter("oracle", "gated") and counter("oracle", "gated") >= counter("oracle", "events"):
            cause = "the input gate blocked every event (MusicHal heard only itself? try --no-input-gate)"
        elif counter("oracle", "encoder_misses"):
            cause = (
                f"the encoder missed its deadline on {counter('oracle', 'encoder_misses')} event(s) "
                "(too slow or lost: see the encoder column)"
            )
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
        if self.console is not None:  # it reads the rings: it stops first
            try:
                self.console.close()
            except Exception:
                pass
            self.console = None
        for server in self.control_inputs:  # no control change may arrive while the actors stop
            try:
                server.close()
            except Exception:
                pass
        self.control_inputs = []
        if self.midi_input is not None:  # no note may arrive while the actors stop
            try:
                self.midi_input.close()
            except Exception:
                pass
            self.midi_input = None
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
            self.env_inherited = False
        return final
