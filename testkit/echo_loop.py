"""Listening while playing, through the real stack: MusicHal's own output rendered live and mixed back into its input.

The loop, all on one JACK server:

* a ``WavPlayer`` JACK client plays the **musician** (a line rendered with fluidsynth, its onsets known) into the
  audio input ports PortAudio registers for the capture actor (the dummy backend's silent ``system:capture`` ports
  are disconnected);
* MusicHal's MIDI out (the real ``midi_out`` actor, JACK MIDI) goes to a :class:`TimedJackReader` (what was sent,
  with receive times) **and** to a ``fluidsynth -a jack -m jack`` client whose audio output is connected to the same
  capture inputs: the **echo** is MusicHal's own notes, rendered as they are played, heard back with the musician;
* the oracle's session log (``--session-log``) says which input onsets the stack detected (``onset_t``), whether
  the gate dropped them (``gated``) and so whether they were learned (a full-window percept that is not gated is
  learned), and which notes it decided.

:func:`classify` then names each detected onset by time against ground truth: **musician** (within ``tol_s`` of a
musician onset), **echo** (within ``tol_s`` of a note-on MusicHal sent, as received), **both**, or **other**. The
constant latencies (player → capture, MIDI → synth → capture) are measured from the data (the median offset of
near matches) rather than assumed. Used by ``benchmarks/echo_stack.py`` and ``tests/reliability/test_echo_stack.py``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from testkit.audio import SOUNDFONT
from testkit.midi import TimedJackReader, unique_name

__all__ = [
    "musician_line",
    "run_loop",
    "classify",
    "learned_shares",
    "gate_verdicts",
    "cycle_time",
    "TimedJackReader",
    "SynthClient",
]

MUSICIAN_PITCHES = (36, 38, 40, 41, 43, 45, 47)  # C2..B2: two octaves under MusicHal's melody
TRAIN_PITCHES = (60, 62, 64, 65, 67, 69, 71, 72)
#: MusicHal plays above the musician: melody C4..C6, bass C3..C4 (the musician is C2..B2, "another register")
LOOP_RANGES = {"generation.melody_range": [60, 84], "voices.bass_range": [48, 60]}


def musician_line(seed: int, seconds: float, *, start_s: float = 0.5) -> list[tuple]:
    """A melodic line in C2..B2, ``(pitch, start_s, dur_s, velocity)``, onsets 0.45-0.9 s apart."""
    rng = np.random.default_rng(int(seed))
    notes, t = [], float(start_s)
    while t < seconds:
        step = float(rng.choice([0.45, 0.6, 0.75, 0.9]))
        notes.append((int(rng.choice(MUSICIAN_PITCHES)), round(t, 4), step * 0.9, int(rng.integers(85, 105))))
        t += step
    return notes


def training_line(seed: int, notes: int = 60) -> list[tuple]:
    rng = np.random.default_rng(int(seed))
    return [(int(rng.choice(TRAIN_PITCHES)), 0.3 + i * 0.3, 0.27, int(rng.integers(75, 100))) for i in range(notes)]


class SynthClient:
    """``fluidsynth -a jack -m jack`` with the GM soundfont: a JACK MIDI input and two audio outputs, nothing
    connected automatically. :attr:`midi_in` and :attr:`audio_out` are the port names once it is up."""

    def __init__(self, client, name: str, *, gain: float = 0.8, timeout_s: float = 30.0) -> None:
        from testkit.waiting import wait_until

        self.name = name
        self.process = subprocess.Popen(
            [
                "fluidsynth",
                "-a",
                "jack",
                "-m",
                "jack",
                "-g",
                str(gain),
                "-r",
                "48000",
                "-o",
                f"audio.jack.id={name}",
                "-o",
                f"midi.jack.id={name}",
                "-o",
                "audio.jack.autoconnect=0",
                "-o",
                "midi.autoconnect=0",
                "-o",
                "synth.reverb.active=0",
                "-o",
                "synth.chorus.active=0",
                str(SOUNDFONT),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.midi_in: str | None = None
        self.audio_out: list[str] = []

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"fluidsynth exited with {self.process.returncode}")
            ports = [p for p in client.get_ports(f"^{name}") if not p.name.startswith("system:")]
            midi = [p.name for p in ports if p.is_midi and p.is_input]
            audio = sorted(p.name for p in ports if p.is_audio and p.is_output)
            if midi and len(audio) >= 2:
                self.midi_in, self.audio_out = midi[0], audio
                return True
            return False

        if not wait_until(up, timeout_s=timeout_s):
            self.close()
            raise RuntimeError(f"fluidsynth's JACK ports did not appear within {timeout_s} s")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()  # its shell reads stdin: end of input ends it
                self.process.wait(timeout=5)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=5)


class WavPlayer:
    """A JACK client with one audio output that plays ``audio`` once ``playing`` is set; :attr:`cycles` holds
    ``(first sample, time.monotonic)`` of every process cycle that played: :meth:`time_of` maps a sample of the
    audio to when it went out. (On a loaded machine a ``--sync`` dummy server runs slower than the wall clock:
    ``t0 + start_s`` drifted by 0.4 s over 20 s in a measured take; the cycle stamps follow the graph.)"""

    def __init__(self, audio: np.ndarray, name: str) -> None:
        import jack

        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.position = 0
        self.t0: float | None = None
        self.cycles: list[tuple[int, float]] = []
        self.playing = threading.Event()
        self.done = threading.Event()
        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.outports.register("out")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        buffer = self.port.get_array()
        buffer[:] = 0.0
        if not self.playing.is_set() or self.done.is_set():
            return
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        self.cycles.append((self.position, now))
        chunk = self.audio[self.position : self.position + frames]
        buffer[: chunk.size] = chunk
        self.position += frames
        if self.position >= self.audio.size:
            self.done.set()

    def time_of(self, sample: int, rate: int = 48000) -> float:
        """``time.monotonic`` when ``sample`` of the audio was played (from the stamped cycles)."""
        return cycle_time(self.cycles, sample, rate)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def cycle_time(cycles: Sequence[tuple[int, float]], sample: int, rate: int = 48000) -> float:
    """The time of ``sample`` given ``(first sample, time)`` per process cycle (sorted): its cycle's time plus its
    offset in the cycle."""
    starts = [c[0] for c in cycles]
    i = max(0, bisect_right(starts, int(sample)) - 1)
    return cycles[i][1] + (int(sample) - cycles[i][0]) / rate


def _capture_inputs(client, own: Sequence[str]) -> list[str]:
    return [p.name for p in client.get_ports(is_audio=True, is_input=True) if not p.name.startswith(("system:", *own))]


def run_loop(
    *,
    model: Path,
    musician_wav: Path,
    mode: str,
    workdir: Path,
    seed: int = 4,
    overrides: dict[str, Any] | None = None,
    play_timeout_s: float = 180.0,
) -> dict[str, Any]:
    """One live session: the musician plays, MusicHal (``generation.mode`` imitate, ``control.gate_mode`` ``mode``)
    plays along, its notes rendered by fluidsynth and mixed back into the capture input. Returns the session's
    percepts (``onset_t``, ``gated``, ``early``), its notes as received (``(t, pitch)``), the musician's start time
    ``t0`` and the final stats."""
    import soundfile as sf

    from services.oracle.player.session import read_session
    from services.stack import LiveStack
    from shared.config import MusicHalConfig
    from testkit.waiting import wait_until

    audio, rate = sf.read(str(musician_wav), dtype="float32", always_2d=True)
    if rate != 48000:
        raise ValueError(f"{musician_wav}: 48 kHz expected, got {rate}")
    reader = TimedJackReader()
    port = reader.open_virtual("in")
    session_path = workdir / f"session_{mode}_{time.monotonic_ns()}.jsonl"
    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.port": port,
            "midi.profile": "gm-safe",
            "generation.mode": "imitate",
            "generation.seed": seed,
            "control.gate_mode": mode,
            "control.input_gate": True,
            **LOOP_RANGES,
            **(overrides or {}),
        }
    )
    stack = LiveStack(config, input_device="system", model_path=str(model), session_log=str(session_path))
    player = synth = None
    final: dict[str, Any] = {}
    try:
        stack.start()
        player = WavPlayer(audio.mean(axis=1), unique_name("mh-musician"))
        synth = SynthClient(player.client, unique_name("mh-echo-synth"))
        own = (player.client.name, synth.name)
        if not wait_until(lambda: len(_capture_inputs(player.client, own)) >= 1, timeout_s=30):
            raise RuntimeError("the capture's JACK input did not appear")
        # MusicHal's MIDI out: already connected to the reader (midi.port); connect it to the synth too
        if not wait_until(lambda: bool(player.client.get_all_connections(port)), timeout_s=30):
            raise RuntimeError("midi_out did not connect to the reader's port")
        for source in player.client.get_all_connections(port):
            player.client.connect(source.name, synth.midi_in)
        for name in _capture_inputs(player.client, own):
            for source in player.client.get_all_connections(name):
                player.client.disconnect(source, name)
            player.client.connect(player.port, name)
            player.client.connect(synth.audio_out[0], name)  # the synth's left channel: the echo
        player.playing.set()
        if not player.done.wait(timeout=play_timeout_s):
            raise RuntimeError("the musician's player did not finish")
        wait_until(lambda: stack.stats()["capture"]["counters"].get("events", 0) >= 5, timeout_s=30)
        final = stack.stop(graceful=True, drain_s=1.0)
    finally:
        stack.stop(graceful=False)
        reader.wait_for_stop_panic(timeout_s=20)
        reader.close()
        for thing in (player, synth):
            if thing is not None:
                thing.close()
    records = read_session(session_path)
    percepts = [
        {
            "event_id": r["event_id"],
            "onset_t": r["onset_t"],
            "gated": bool(r["gated"]),
            "early": bool(r["early"]),
            "notes": [n[0] for n in ((r.get("descriptors") or {}).get("notes") or [])],
        }
        for r in records
        if r["kind"] == "percept"
    ]
    decided = [n for r in records if r["kind"] == "notes" for n in r["notes"]]
    received = [(t, m[1]) for t, m in reader.timed if (m[0] & 0xF0) == 0x90 and m[2] > 0]
    return {
        "percepts": percepts,
        "received": received,
        "decided": decided,
        "t0": player.t0,
        "final": final,
        "cycles": player.cycles,
        "session": str(session_path),
    }


def _offset(detected: np.ndarray, truth: np.ndarray, window_s: float, *, width_s: float = 0.02) -> float:
    """The constant delay from ``truth`` to ``detected``, measured from the data: of all (detection - onset) deltas
    in ``[-0.02, window_s]``, the ``width_s`` span holding the most; their median (0 when none)."""
    if detected.size == 0 or truth.size == 0:
        return 0.0
    deltas = (detected[:, None] - truth[None, :]).ravel()
    deltas = np.sort(deltas[(deltas >= -0.02) & (deltas <= window_s)])
    if deltas.size == 0:
        return 0.0
    counts = np.searchsorted(deltas, deltas + width_s, side="right") - np.arange(deltas.size)
    k = int(np.argmax(counts))
    return float(np.median(deltas[k : k + counts[k]]))


def classify(
    onsets: Sequence[float],
    musician: Sequence[float],
    echoes: Sequence[float],
    *,
    tol_s: float = 0.05,
    echo_window_s: tuple[float, float] = (-0.02, 0.15),
    latency_window_s: float = 0.06,
) -> dict[str, Any]:
    """Name each detected onset (same clock as ``musician`` and ``echoes``): "musician", "echo", "both" or "other".

    Latencies are measured first, each source on its own (:func:`_offset`: the densest 20 ms of delays up to
    ``latency_window_s``; both paths are JACK connections in one graph, measured 0-30 ms; a wider search locked onto
    MusicHal's answers, which follow the musician's onsets by a steady ~85 ms in imitate). A musician
    onset is within ``tol_s`` of a musician onset (after its latency); an echo onset within ``echo_window_s`` of a
    note-on (after its latency): a synth cannot sound before its note-on, so the window is short on that side (a
    detection 25-40 ms before our note-on is the musician's onset our note answers, measured); it is long after it,
    since on a loaded machine JACK cycles stall (up to 0.3 s measured) and echoes are then detected up to ~150 ms
    late. "both": an onset of the musician's at one of our attacks (it holds the musician's note)."""
    d = np.asarray(sorted(onsets), dtype=float)
    m = np.asarray(sorted(musician), dtype=float)
    e = np.asarray(sorted(set(np.round(np.asarray(echoes, dtype=float), 4))), dtype=float)
    lat_m = _offset(d, m, latency_window_s)
    lat_e = _offset(d, e, latency_window_s)
    low, high = echo_window_s
    labels = []
    for x in onsets:
        is_m = m.size > 0 and float(np.min(np.abs(m - (x - lat_m)))) <= tol_s
        is_e = e.size > 0 and bool(np.any((x - lat_e - e >= low) & (x - lat_e - e <= high)))
        labels.append("both" if is_m and is_e else "musician" if is_m else "echo" if is_e else "other")
    return {"labels": labels, "latency_musician_s": lat_m, "latency_echo_s": lat_e}


def learned_shares(run: dict[str, Any], musician_notes: Sequence[tuple], *, tol_s: float = 0.05) -> dict[str, Any]:
    """Per class of detected onset (:func:`classify`): how many, how many learned (full-window percept not gated);
    ``musician_learned`` over the musician's onsets ("musician" + "both"), ``echo_learned`` over pure echoes;
    ``*_while_playing``: onsets after MusicHal's first note."""
    full = [p for p in run["percepts"] if not p["early"] and p["onset_t"] is not None]
    musician = [cycle_time(run["cycles"], round(n[1] * 48000)) for n in musician_notes]
    echoes = [t for t, _ in run["received"]]
    named = classify([p["onset_t"] for p in full], musician, echoes, tol_s=tol_s)
    first_note = min(echoes) if echoes else np.inf
    counts: dict[str, dict[str, int]] = {}
    for p, label in zip(full, named["labels"]):
        while_playing = p["onset_t"] >= first_note
        for key in (label, f"{label}_while_playing") if while_playing else (label,):
            c = counts.setdefault(key, {"onsets": 0, "learned": 0})
            c["onsets"] += 1
            c["learned"] += int(not p["gated"])

    def share(*keys: str) -> float | None:
        onsets = sum(counts.get(k, {}).get("onsets", 0) for k in keys)
        return round(sum(counts.get(k, {}).get("learned", 0) for k in keys) / onsets, 4) if onsets else None

    # the musician's onsets are those matching a musician onset: alone ("musician") or at one of our attacks ("both")
    # how the JACK graph kept time: a --sync dummy server waits for every client, so on a loaded machine its cycles
    # stall and it falls behind the wall clock; and how late echoes were detected after their note-on
    cycles = run["cycles"]
    drift = (cycles[-1][1] - cycles[0][1]) - (cycles[-1][0] - cycles[0][0]) / 48000 if len(cycles) > 1 else 0.0
    ons = np.asarray(sorted(echoes))
    delays = [
        1e3 * (p["onset_t"] - ons[ons <= p["onset_t"] + 0.02].max())
        for p, label in zip(full, named["labels"])
        if label == "echo" and (ons <= p["onset_t"] + 0.02).any()
    ]
    timing = {
        "jack_graph_behind_s": round(float(drift), 3),
        "echo_delay_ms_p50": round(float(np.percentile(delays, 50)), 1) if delays else None,
        "echo_delay_ms_p90": round(float(np.percentile(delays, 90)), 1) if delays else None,
    }
    return {
        "counts": counts,
        "timing": timing,
        "musician_learned": share("musician", "both"),
        "echo_learned": share("echo"),
        "musician_learned_while_playing": share("musician_while_playing", "both_while_playing"),
        "both_learned": share("both"),
        "latency_musician_ms": round(named["latency_musician_s"] * 1e3, 1),
        "latency_echo_ms": round(named["latency_echo_s"] * 1e3, 1),
        "musician_truth_onsets": len(musician),
        "echo_note_ons": len(set(np.round(echoes, 4))),
        "detected_full_percepts": len(full),
    }


def gate_verdicts(session_path: str | Path, mode: str, **gate_options: Any) -> list[bool]:
    """The input gate's verdicts (True: dropped) on a session's full-window percepts, replayed offline with
    ``control.gate_mode`` ``mode`` over the same notes and onsets, in the logged order, the way
    :meth:`services.oracle.player.live.LiveOracle._echo` consults it (slice notes, else the f0 + chroma-peak profile).
    Replaying the session's own mode gives its logged verdicts back (checked by the test)."""
    from services.oracle.player.echo import EchoGate
    from services.oracle.player.session import read_session
    from services.oracle.player.walk import live_profile
    from shared.config import MusicHalConfig

    records = read_session(session_path)
    config = MusicHalConfig.from_mapping(records[0]["config"])
    control = config.control
    gate = EchoGate(mode=mode, pre_ms=control.gate_pre_ms, release_ms=control.gate_release_ms, **gate_options)
    window_s = config.segmenter.window_ms / 1000.0
    out = []
    for record in records[1:]:
        if record["kind"] == "notes":
            for note in record["notes"]:
                gate.note_sent(note["t_on"], note["t_off"], pitch=note["pitch"])
        elif record["kind"] == "percept":
            d = record.get("descriptors")
            if d is None:
                blocked = gate.blocks(record["onset_t"])
            else:
                profile = live_profile(d["f0_hz"], tuple(d["chroma_peaks"]))
                blocked = gate.blocks(
                    record["onset_t"],
                    notes=[tuple(n) for n in d["notes"]] or None,
                    chroma=profile if profile.any() else None,
                    window_s=window_s,
                )
            if not record["early"]:
                out.append(bool(blocked))
    return out
