"""One typed configuration for every entry point.

Each stage has a frozen dataclass validated in ``__post_init__``; :class:`MusicHalConfig` groups them.
Sources, later ones winning: defaults → TOML file (``MusicHalConfig.from_toml``) → CLI overrides
(``config.with_overrides({"midi.profile": "gm-safe"})``). Unknown sections or keys raise
:class:`~shared.errors.ParameterError`; stages never read environment variables.

>>> cfg = MusicHalConfig().with_overrides({"generation.mode": "lead"})
>>> cfg.generation.mode
'lead'
>>> cfg.audio.sample_rate_hz
48000
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from shared.errors import ParameterError
from shared.errors import check as _check

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "AudioConfig",
    "SegmenterConfig",
    "FeatureConfig",
    "Wav2VecConfig",
    "QuantizerConfig",
    "OracleConfig",
    "TrainerConfig",
    "GenerationConfig",
    "VoicesConfig",
    "VOICE_NAMES",
    "MIDI_APIS",
    "MidiConfig",
    "MIDI_PROFILES",
    "GENERATION_MODES",
    "LIVE_BOUNDS",
    "REMOVED_KEYS",
    "drop_removed_keys",
    "ClusterConfig",
    "ControlConfig",
    "ConsoleConfig",
    "MusicHalConfig",
    "INTERNAL_SAMPLE_RATE_HZ",
    "dataclass_from_mapping",
]

#: The one internal analysis rate: every input is converted to mono float32 at this rate on entry.
INTERNAL_SAMPLE_RATE_HZ = 48_000


@dataclass(frozen=True)
class AudioConfig:
    """Internal audio format and ring sizing."""

    sample_rate_hz: int = INTERNAL_SAMPLE_RATE_HZ
    block_samples: int = 256
    ring_seconds: float = 20.0
    input_channel: int | None = None  # None: mix all channels down to mono

    def __post_init__(self) -> None:
        _check(
            8_000 <= self.sample_rate_hz <= 192_000,
            f"audio.sample_rate_hz must be in 8000..192000, got {self.sample_rate_hz}",
        )
        _check(16 <= self.block_samples <= 8192, f"audio.block_samples must be in 16..8192, got {self.block_samples}")
        _check(self.ring_seconds >= 2.0, f"audio.ring_seconds must be >= 2, got {self.ring_seconds}")
        _check(self.input_channel is None or self.input_channel >= 0, "audio.input_channel must be >= 0 or unset")

    @property
    def ring_samples(self) -> int:
        return int(round(self.ring_seconds * self.sample_rate_hz))


@dataclass(frozen=True)
class SegmenterConfig:
    """Streaming onset segmentation (spectral flux, adaptive threshold, silence gate)."""

    frame_samples: int = 1024
    hop_samples: int = 256
    window_ms: float = 500.0
    min_gap_ms: float = 80.0
    threshold_k: float = 1.5  # how far above the local median the onset function must rise (in local MAD units)
    threshold_window_frames: int = 32
    min_flux: float = 0.08
    silence_db: float = -50.0
    # live only: an early event this long after each onset (0 or >= window_ms: none); never in training. 50 ms: what
    # sounds now is read well enough to play with it (25 ms mostly heard a chord's attack harmonics: benchmarks/
    # musical_offline.py, harmonic agreement 0.86 vs 0.95 on three pieces), the reaction within its 150 ms budget
    early_ms: float = 50.0

    def __post_init__(self) -> None:
        _check(
            self.frame_samples >= 64 and self.frame_samples & (self.frame_samples - 1) == 0,
            f"segmenter.frame_samples must be a power of two >= 64, got {self.frame_samples}",
        )
        _check(0 < self.hop_samples <= self.frame_samples, "segmenter.hop_samples must be in 1..frame_samples")
        _check(20.0 <= self.window_ms <= 5000.0, f"segmenter.window_ms must be in 20..5000, got {self.window_ms}")
        _check(self.min_gap_ms >= 0.0, "segmenter.min_gap_ms must be >= 0")
        _check(self.threshold_k > 0.0, "segmenter.threshold_k must be > 0")
        _check(self.threshold_window_frames >= 3, "segmenter.threshold_window_frames must be >= 3")
        _check(-120.0 <= self.silence_db <= 0.0, "segmenter.silence_db must be in -120..0")
        _check(0.0 <= self.early_ms <= 1000.0, "segmenter.early_ms must be in 0..1000 (0: no early events)")


@dataclass(frozen=True)
class FeatureConfig:
    """Which perception views are computed per event."""

    kind: str = (
        "traditional"  # "traditional" | "wav2vec" | "symbolic" (features of notes: services/encoder/symbolic.py)
    )
    hybrid: bool = False  # keep both views (traditional always + wav2vec when enabled)
    pca_components: int = 16  # 0 disables PCA for the continuous oracle
    # transcribe the notes sounding in each slice (docs/transcription.md): the melody sings the slice's top voice,
    # the bass and comping play its notes. A 2 s Basic Pitch model run per full-window event (25 ms idle, ~100 ms
    # loaded, on 2 CPU cores) in the encoder, off the reaction path (an onset's early view reacts without it)
    slice_notes: bool = True
    # MIDI notes → events (the symbolic view, services/encoder/symbolic.py): note-ons within this window of the first
    # make one chord; channel 10 (drums) is left out unless midi_drums
    chord_window_ms: float = 30.0
    midi_drums: bool = False

    def __post_init__(self) -> None:
        _check(
            self.kind in ("traditional", "wav2vec", "symbolic"),
            f"features.kind must be 'traditional', 'wav2vec' or 'symbolic', got {self.kind!r}",
        )
        _check(self.pca_components >= 0, "features.pca_components must be >= 0")
        _check(0.0 <= self.chord_window_ms <= 1000.0, "features.chord_window_ms must be in 0..1000")
        _check(not (self.kind == "symbolic" and self.hybrid), "features.hybrid needs kind 'wav2vec', not 'symbolic'")


@dataclass(frozen=True)
class Wav2VecConfig:
    """Wav2Vec 2.0 encoder settings."""

    model: str = "facebook/wav2vec2-base"
    layer: int = -1
    use_gpu: bool = False
    gpu_fallback: bool = (
        False  # with use_gpu: run on the CPU (warning) when the encoder's node has no GPU, not an error
    )
    fp16: bool = False
    int8: bool = False
    fallback: str = "none"  # "none" | "traditional"
    batch_size: int = 16
    other_checkpoint: bool = False  # playing a model: use ``model`` although its weights differ from the trained ones

    def __post_init__(self) -> None:
        _check(bool(self.model), "wav2vec.model must be a name or a directory")
        _check(
            self.fallback in ("none", "traditional"),
            f"wav2vec.fallback must be 'none' or 'traditional', got {self.fallback!r}",
        )
        _check(self.batch_size >= 1, "wav2vec.batch_size must be >= 1")


@dataclass(frozen=True)
class QuantizerConfig:
    """Symbolic quantizer (k-means) settings."""

    vocabulary_size: int = 64
    l2_normalize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check(
            2 <= self.vocabulary_size <= 4096,
            f"quantizer.vocabulary_size must be in 2..4096, got {self.vocabulary_size}",
        )


@dataclass(frozen=True)
class OracleConfig:
    """Audio Oracle settings."""

    threshold: float | None = None  # None: chosen by Information Rate
    rebuild_every_events: int = 64
    checkpoint_seconds: float = 5.0

    def __post_init__(self) -> None:
        _check(self.threshold is None or self.threshold >= 0.0, "oracle.threshold must be >= 0 or unset (auto)")
        _check(self.rebuild_every_events >= 1, "oracle.rebuild_every_events must be >= 1")
        _check(self.checkpoint_seconds > 0.0, "oracle.checkpoint_seconds must be > 0")


@dataclass(frozen=True)
class TrainerConfig:
    """``musichal-train`` at corpus scale (see docs/architecture.md, "Trainer")."""

    fit_sample_events: int = 200_000  # PCA + k-means are fitted on this many events, drawn with the quantizer seed
    oracle_max_states: int = 4_000_000  # above this the oracle holds whole files spread evenly over the corpus
    task_timeout_s: float = 900.0  # a unit of work (a batch of files) running longer is cancelled and rescheduled
    max_attempts: int = 3  # per unit (timeouts, lost workers/nodes), then the run fails naming the files
    skip_unreadable: bool = False  # a file a worker cannot open: error (default) or skip and list it

    def __post_init__(self) -> None:
        _check(self.fit_sample_events >= 2, "trainer.fit_sample_events must be >= 2")
        _check(self.oracle_max_states >= 1, "trainer.oracle_max_states must be >= 1")
        _check(self.task_timeout_s > 0.0, "trainer.task_timeout_s must be > 0")
        _check(self.max_attempts >= 1, "trainer.max_attempts must be >= 1")


GENERATION_MODES = ("imitate", "contrast", "lead")
MIDI_PROFILES = ("mpe", "gm-safe", "mono")

#: Bounds of the settings a performer changes live: each section's validation and the control table
#: (shared/controls.py) both read them here. ``(low, high)`` for numbers, the options for choices, the least
#: span (semitones) for note ranges.
LIVE_BOUNDS: dict[str, Any] = {
    "generation.continuity": (0.0, 1.0),
    "generation.density": (0.0, 4.0),
    "generation.tempo": (0.25, 4.0),
    "voices.bass_density": (0.0, 2.0),
    "voices.comping_density": (0.0, 2.0),
    "generation.mode": GENERATION_MODES,
    "midi.profile": MIDI_PROFILES,
    "generation.melody_range": 0,
    "voices.bass_range": 11,
    "voices.comping_range": 11,
}


def _check_bound(section: str, name: str, value: Any) -> None:
    low, high = LIVE_BOUNDS[f"{section}.{name}"]
    _check(low <= value <= high, f"{section}.{name} must be in {low:g}..{high:g}, got {value}")


@dataclass(frozen=True)
class GenerationConfig:
    """How the melody player walks the memory (services.oracle.player.walk)."""

    mode: str = "imitate"
    continuity: float = 0.8
    max_continuity: int = 8
    min_context: int = 1
    taboo_length: int = 4
    density: float = 1.0
    seed: int = 0
    melody_range: tuple[int, int] = (48, 72)  # the bass's range is voices.bass_range
    half_life_s: float = 2.0  # how fast live influence peaks decay (services.oracle.player.walk)
    tempo: float = 1.0  # speed factor on the learned inter-onset intervals (with density)
    max_transpose: int = 6  # semitones a memory run may be transposed towards the live harmony (0: never)
    wait_for_input: bool = False  # imitate/contrast stop stepping once the musician has rested WAIT_S seconds
    beat_aligned: bool = False  # steps fall on the tracked beat grid of the live input (when a tempo is tracked)
    # dynamics follow the musician (services.oracle.player.live): velocity and MPE pressure scaled by the live input's
    # loudness (an average with this half-life, in input time) against the memory's mean velocity; False: as learned
    follow_dynamics: bool = True
    dynamics_half_life_s: float = 4.0
    # notes leave ahead: a step on the player's own clock is decided this long before it sounds, so it reaches
    # midi_out in time (services.oracle.player.walk); reactions to an onset are due at once and do not wait for it
    lookahead_ms: float = 40.0

    def __post_init__(self) -> None:
        _check(
            self.mode in GENERATION_MODES,
            f"generation.mode must be one of {', '.join(GENERATION_MODES)}, got {self.mode!r}",
        )
        _check_bound("generation", "continuity", self.continuity)
        _check(self.max_continuity >= 1, "generation.max_continuity must be >= 1")
        _check(self.min_context >= 0, "generation.min_context must be >= 0")
        _check(self.taboo_length >= 0, "generation.taboo_length must be >= 0")
        _check_bound("generation", "density", self.density)
        _check(self.half_life_s > 0.0, f"generation.half_life_s must be > 0, got {self.half_life_s}")
        _check_bound("generation", "tempo", self.tempo)
        _check(0 <= self.max_transpose <= 6, f"generation.max_transpose must be in 0..6, got {self.max_transpose}")
        _check(
            self.dynamics_half_life_s > 0.0,
            f"generation.dynamics_half_life_s must be > 0, got {self.dynamics_half_life_s}",
        )
        _check(1.0 <= self.lookahead_ms <= 500.0, f"generation.lookahead_ms must be in 1..500, got {self.lookahead_ms}")
        low, high = self.melody_range
        _check(0 <= low <= high <= 127, "generation.melody_range must be two MIDI notes low <= high in 0..127")


VOICE_NAMES = ("melody", "bass", "comping")


@dataclass(frozen=True)
class VoicesConfig:
    """Which players play over the memory (services.oracle.player.voices): the melody (``generation`` settings), a bass
    and a comping (chords) voice that follow it. Densities are onsets per melody step (the bass also plays at
    every run start); phases delay a voice's onsets by that fraction of the melody's step."""

    melody: bool = True
    bass: bool = True
    comping: bool = True
    bass_range: tuple[int, int] = (28, 52)  # E1..E3
    comping_range: tuple[int, int] = (48, 67)  # C3..G4
    bass_density: float = 0.5
    comping_density: float = 0.5
    bass_phase: float = 0.0
    comping_phase: float = 0.0
    max_polyphony: int = 3  # comping chord notes at most (with the bass and the melody: five voices)

    def __post_init__(self) -> None:
        for name in ("bass_range", "comping_range"):
            value = getattr(self, name)
            _check(
                len(value) == 2 and 0 <= value[0] <= value[1] <= 127,
                f"voices.{name} must be two MIDI notes low <= high in 0..127",
            )
            span = LIVE_BOUNDS[f"voices.{name}"]
            _check(
                value[1] - value[0] >= span, f"voices.{name} must span at least {span} semitones (every pitch class)"
            )
        for name in ("bass_density", "comping_density"):
            _check_bound("voices", name, getattr(self, name))
        for name in ("bass_phase", "comping_phase"):
            _check(
                0.0 <= getattr(self, name) < 1.0, f"voices.{name} must be in 0..1 (below 1), got {getattr(self, name)}"
            )
        _check(1 <= self.max_polyphony <= 8, f"voices.max_polyphony must be in 1..8, got {self.max_polyphony}")


#: The MIDI APIs python-rtmidi knows (``auto``: the OS's default), for ``midi.api``, ``control.midi_in_api`` and the
# flags.
MIDI_APIS = ("auto", "jack", "alsa", "coremidi", "winmm")
_MIDI_APIS_TEXT = ", ".join(MIDI_APIS[:-1]) + " or " + MIDI_APIS[-1]


@dataclass(frozen=True)
class MidiConfig:
    """MIDI output settings."""

    api: str = "auto"  # auto | jack | alsa | coremidi | winmm
    port: str | None = None  # None: create a virtual port named ``virtual_port_name``
    virtual_port_name: str = "MusicHal"
    profile: str = "mpe"
    member_channels: int = 15
    bend_range_semitones: int = 48
    record_path: str | None = None
    # gm-safe: the bass and comping voices each play on their own MIDI channel (1..16, never 10; 0 = share the
    # melody's channels); the melody rotates over the other member channels
    bass_channel: int = 11
    comping_channel: int = 12
    # SCHED_FIFO priority of midi_out's scheduler thread where the system allows it (root, CAP_SYS_NICE or an rtprio
    # limit): it then wakes on time however busy the cores are; below JACK's own threads (10); 0 = normal scheduling
    scheduler_priority: int = 5

    def __post_init__(self) -> None:
        _check(
            0 <= self.scheduler_priority <= 99,
            f"midi.scheduler_priority must be in 0..99, got {self.scheduler_priority}",
        )
        for name in ("bass_channel", "comping_channel"):
            value = getattr(self, name)
            _check(
                value == 0 or (1 <= value <= 16 and value != 10),
                f"midi.{name} must be 1..16 but not 10 (GM drums), or 0, got {value}",
            )
        _check(
            self.bass_channel == 0 or self.bass_channel != self.comping_channel,
            "midi.bass_channel and midi.comping_channel must differ",
        )
        _check(self.api in MIDI_APIS, f"midi.api must be {_MIDI_APIS_TEXT}, got {self.api!r}")
        _check(
            self.profile in MIDI_PROFILES,
            f"midi.profile must be one of {', '.join(MIDI_PROFILES)}, got {self.profile!r}",
        )
        _check(1 <= self.member_channels <= 15, f"midi.member_channels must be in 1..15, got {self.member_channels}")
        _check(
            1 <= self.bend_range_semitones <= 96,
            f"midi.bend_range_semitones must be in 1..96, got {self.bend_range_semitones}",
        )


@dataclass(frozen=True)
class ClusterConfig:
    """Where Ray runs and where the encoder is placed."""

    address: str | None = None  # None: start a local Ray bound to 127.0.0.1
    encoder_resource: str | None = None
    encoder_deadline_ms: float = 250.0  # the longest wait for a remote Percept (the adaptive deadline's ceiling)
    encoder_deadline_floor_ms: float = 50.0  # the adaptive deadline's floor (2 x p90 round trip + 10 ms, clamped)
    encoder_miss_limit: int = 1  # deadline misses in a row that mark a remote encoder down (a death: at once); a probe
    # goes out at once and resumes it within one round trip if it was only slow
    encoder_probe_ms: float = 500.0  # while down, one cheap probe per this interval; the first answer resumes
    encoder_num_gpus: float = 1.0  # with --gpu: GPUs (or a fraction) requested for the encoder actor
    max_events_in_flight: int = 4  # unfinished remote encode calls (expired ones count until Ray ends them)

    def __post_init__(self) -> None:
        _check(self.encoder_deadline_ms > 0, "cluster.encoder_deadline_ms must be > 0")
        _check(
            0 < self.encoder_deadline_floor_ms <= self.encoder_deadline_ms,
            "cluster.encoder_deadline_floor_ms must be > 0 and <= cluster.encoder_deadline_ms",
        )
        _check(self.encoder_miss_limit >= 1, "cluster.encoder_miss_limit must be >= 1")
        _check(self.encoder_probe_ms > 0, "cluster.encoder_probe_ms must be > 0")
        _check(0 < self.encoder_num_gpus, "cluster.encoder_num_gpus must be > 0")
        _check(self.max_events_in_flight >= 1, "cluster.max_events_in_flight must be >= 1")


@dataclass(frozen=True)
class ControlConfig:
    """Live performer control (OSC, MIDI controller input), feedback protection and the too-slow guard.

    ``cc_map`` / ``note_map`` override the default MIDI map (``services.control.state.DEFAULT_CC_MAP``):
    ``{"continuity": 20}`` moves continuity to CC20; ``{"mute": 36}`` puts the mute toggle on note 36.
    """

    osc_port: int | None = None  # None: no OSC server
    osc_host: str = "127.0.0.1"
    midi_in_port: str | None = None  # None: no MIDI controller input
    midi_in_api: str = "auto"
    midi_in_channel: int | None = None  # 0..15; None: any channel
    cc_map: dict[str, int] = field(default_factory=dict)
    note_map: dict[str, int] = field(default_factory=dict)
    input_gate: bool | None = None  # ignore input onsets while own notes sound; None: on for a device, off for a file
    midi_input_gate: bool = False  # the echo gate for --input-midi notes too (MIDI has no acoustic echo: off)
    gate_pre_ms: float = 20.0  # the gate opens this long before each note-on
    gate_release_ms: float = 250.0  # ... and closes this long after its note-off (synth release + room)
    # "content": drop an onset during own notes only when its pitch content is explained by the notes sounding then
    # (echo-aware, services/oracle/player/echo.py); "time": drop every onset during own notes (the blanket gate)
    gate_mode: str = "content"
    slow_guard: bool = True  # switch to the traditional view when the encoder cannot keep up
    slow_window_events: int = 8
    slow_recover_events: int = 16
    test_encoder_delay_ms: float = 0.0  # test-only: the encoder sleeps this long per event

    def __post_init__(self) -> None:
        _check(self.osc_port is None or 0 <= self.osc_port <= 65535, "control.osc_port must be in 0..65535 or unset")
        _check(bool(self.osc_host), "control.osc_host must not be empty")
        _check(
            self.midi_in_api in MIDI_APIS, f"control.midi_in_api must be {_MIDI_APIS_TEXT}, got {self.midi_in_api!r}"
        )
        _check(
            self.midi_in_channel is None or 0 <= self.midi_in_channel <= 15, "control.midi_in_channel must be in 0..15"
        )
        for name in ("cc_map", "note_map"):
            table = getattr(self, name)
            _check(isinstance(table, Mapping), f"control.{name} must be a table of name = number")
            for key, value in table.items():
                _check(isinstance(value, int) and 0 <= value <= 127, f"control.{name}.{key} must be in 0..127")
        _check(self.gate_pre_ms >= 0.0 and self.gate_release_ms >= 0.0, "control.gate_*_ms must be >= 0")
        _check(
            self.gate_mode in ("content", "time"),
            f"control.gate_mode must be 'content' or 'time', got {self.gate_mode!r}",
        )
        _check(self.slow_window_events >= 1 and self.slow_recover_events >= 1, "control.slow_*_events must be >= 1")
        _check(self.test_encoder_delay_ms >= 0.0, "control.test_encoder_delay_ms must be >= 0")

    def __hash__(self) -> int:  # dict fields: hash by identity (frozen dataclasses are otherwise unhashable)
        return id(self)


@dataclass(frozen=True)
class ConsoleConfig:
    """The performer's console: a web page served by the driver (``services/console``, ``musichal --console``).

    Loopback only unless ``host`` says otherwise (``--console-host``); every request and WebSocket must carry the
    token, kept in ``token_file`` (created with a random token, mode 0600, on first use; reused so an open page
    reconnects after the stack restarts; delete the file for a new token).
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port (printed)
    token_file: str = "~/.config/musichal/console-token"
    rate_hz: float = 20.0  # frames per second over the WebSocket
    roll_seconds: float = 12.0  # the piano roll's history

    def __post_init__(self) -> None:
        _check(bool(self.host), "console.host must not be empty")
        _check(0 <= self.port <= 65535, f"console.port must be in 0..65535, got {self.port}")
        _check(bool(self.token_file), "console.token_file must not be empty")
        _check(1.0 <= self.rate_hz <= 60.0, f"console.rate_hz must be in 1..60, got {self.rate_hz}")
        _check(1.0 <= self.roll_seconds <= 120.0, f"console.roll_seconds must be in 1..120, got {self.roll_seconds}")


_SECTIONS: dict[str, type] = {
    "audio": AudioConfig,
    "segmenter": SegmenterConfig,
    "features": FeatureConfig,
    "wav2vec": Wav2VecConfig,
    "quantizer": QuantizerConfig,
    "oracle": OracleConfig,
    "generation": GenerationConfig,
    "voices": VoicesConfig,
    "midi": MidiConfig,
    "cluster": ClusterConfig,
    "control": ControlConfig,
    "trainer": TrainerConfig,
    "console": ConsoleConfig,
}


def _coerce(value: Any, annotation: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_value_type(where: str, value: Any, annotation: Any) -> None:
    """One-line ParameterError for a value of the wrong kind: numbers must be finite, ints whole, flags booleans."""
    import math
    import numbers

    annotation = str(annotation).replace("typing.", "").replace(" ", "")
    if annotation.startswith("Optional[") and annotation.endswith("]"):
        optional, base = True, annotation[len("Optional[") : -1]
    elif annotation.endswith("|None") or annotation.startswith("None|"):  # PEP 604: ``int | None``
        optional, base = True, annotation.replace("|None", "").replace("None|", "")
    else:
        optional, base = False, annotation
    if value is None:
        _check(optional, f"{where} must be set")
        return
    if base == "float":
        _check(
            isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)),
            f"{where} must be a finite number, got {value!r}",
        )
    elif base == "int":
        _check(
            isinstance(value, numbers.Integral) and not isinstance(value, bool),
            f"{where} must be a whole number, got {value!r}",
        )
    elif base == "bool":
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
    elif base == "str":
        _check(isinstance(value, str), f"{where} must be text, got {value!r}")


#: Keys that were removed, with what replaces them: a file that still sets one fails with this one line
#: (:func:`drop_removed_keys` drops them from a recorded config, such as an older session log's header).
REMOVED_KEYS: dict[str, str] = {
    "generation.bass_range": "the bass voice's range is [voices] bass_range; the phrase generator that read "
    "generation.bass_range is gone",
}


def drop_removed_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a nested config mapping without the :data:`REMOVED_KEYS` (for configs recorded by older versions,
    whose removed settings nothing read live)."""
    out = {name: dict(values) if isinstance(values, Mapping) else values for name, values in data.items()}
    for dotted in REMOVED_KEYS:
        section, _, key = dotted.partition(".")
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def dataclass_from_mapping(cls: type, values: Mapping[str, Any], *, base: Any = None, section: str = "") -> Any:
    """Build (or update ``base`` of) dataclass ``cls`` from ``values``; unknown keys raise ParameterError."""
    for key in values:
        if f"{section}.{key}" in REMOVED_KEYS:
            raise ParameterError(f"config key [{section}] {key} was removed: {REMOVED_KEYS[f'{section}.{key}']}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f"[{section}] " if section else ""
        raise ParameterError(f"unknown config key {where}{', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {key: _coerce(value, known[key].type) for key, value in values.items()}
    for key, value in kwargs.items():
        _check_value_type(f"{section}.{key}" if section else key, value, known[key].type)
    try:
        return replace(base, **kwargs) if base is not None else cls(**kwargs)
    except TypeError as error:
        raise ParameterError(f"bad config [{section}]: {error}") from None


@dataclass(frozen=True)
class MusicHalConfig:
    """Every section together; the single object passed down from an entry point."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    wav2vec: Wav2VecConfig = field(default_factory=Wav2VecConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    voices: VoicesConfig = field(default_factory=VoicesConfig)
    midi: MidiConfig = field(default_factory=MidiConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MusicHalConfig:
        config = cls()
        return config.merged(data)

    def merged(self, data: Mapping[str, Any]) -> MusicHalConfig:
        """Return a copy with whole sections updated from a nested mapping (``{"midi": {"profile": "mono"}}``)."""
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ParameterError(f"unknown config section(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}")
        updates = {}
        for name, values in data.items():
            if not isinstance(values, Mapping):
                raise ParameterError(f"config section [{name}] must be a table")
            updates[name] = dataclass_from_mapping(_SECTIONS[name], values, base=getattr(self, name), section=name)
        return replace(self, **updates)

    @classmethod
    def from_toml(cls, path: str | Path) -> MusicHalConfig:
        """Load a TOML file; a missing or malformed file raises ParameterError with one line."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ParameterError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ParameterError(f"config file {path} is not valid TOML: {error}") from None
        return cls.from_mapping(data)

    def with_overrides(self, overrides: Mapping[str, Any]) -> MusicHalConfig:
        """Apply dotted overrides such as ``{"generation.mode": "lead"}``; ``None`` values are ignored."""
        nested: dict[str, dict[str, Any]] = {}
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if not key:
                raise ParameterError(f"override {dotted!r} must look like 'section.key'")
            nested.setdefault(section, {})[key] = value
        return self.merged(nested)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
