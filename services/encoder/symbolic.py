"""The symbolic view: features of an event computed from its **notes**, whether they come from MIDI or from audio.

One view, two sources, so a symbolic memory can be steered by audio and (through the same descriptors) an audio
memory by MIDI:

* MIDI (a keyboard live, a ``.mid`` corpus): note-on/off messages → :class:`NoteGrouper` (one code path offline and
  live) → :class:`NoteGroup` (a chord = the note-ons within ``features.chord_window_ms`` of the first, 30 ms) →
  :func:`descriptors_from_group` → the same :class:`~shared.messages.EventDescriptors` an audio event has.
* Audio: the event's descriptors (:func:`event_notes`): its transcribed slice notes when ``features.slice_notes`` is
  on, else its f0 as one note, else (unvoiced, e.g. a chord) its three strongest chroma classes in octave 4.

:func:`symbolic_features` turns the notes into the 23-D vector (all dimensions in ``[0, 1]``):

====  ==========================  =============================================================================
dim   name                        meaning
====  ==========================  =============================================================================
0-11  pc_C..pc_B                  the sounding pitch-class set (1 when a note of that class sounds, else 0)
12    bass_pitch                  lowest sounding MIDI pitch / 127
13    top_pitch                   highest sounding MIDI pitch / 127
14-19 ic1..ic6                    interval-class vector of the pitch-class set: pairs at each interval class
                                  (1 = semitone/major seventh … 6 = tritone) / all pairs (0 with one class)
20    span                        ``min(top − bass, 36) / 36`` semitones
21    density                     ``min(notes, 8) / 8``
22    velocity                    mean velocity of the notes / 127
====  ==========================  =============================================================================

Durations are in the event's descriptors, not in the vector: the event's duration (to the next onset) is the
memory's learned time and each note's duration is kept with the slice's notes (the voices play them), but neither is
known at the onset live (a held key's note-off comes later), and the vector must be the same offline and live
(PITFALLS 1), so it holds only what is known when the event is made.

"Sounding" = the notes struck in the event plus the ones still held from before (a melody note over a held chord
sees the chord). A rest (no note) is the zero vector.

>>> v = symbolic_features([(60, 90), (64, 90), (67, 90)])
>>> [int(x) for x in v[:12]]  # C E G
[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
>>> round(float(v[12]) * 127), round(float(v[13]) * 127), [round(float(x), 2) for x in v[14:20]]
(60, 67, [0.0, 0.0, 0.33, 0.33, 0.33, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ParameterError
from shared.messages import Event, EventDescriptors
from shared.pitch import hz_to_midi, midi_to_hz

__all__ = [
    "SYMBOLIC_DIMENSION",
    "SYMBOLIC_NAMES",
    "SYMBOLIC_VERSION",
    "MIDI_EXTENSIONS",
    "DRUM_CHANNEL",
    "symbolic_features",
    "symbolic_view",
    "event_notes",
    "describe_symbolic",
    "NoteGroup",
    "NoteGrouper",
    "descriptors_from_group",
    "read_midi_notes",
    "midi_file_groups",
    "analyze_midi_file",
]

_PC_NAMES = ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")
SYMBOLIC_NAMES = (
    *(f"pc_{name}" for name in _PC_NAMES),
    "bass_pitch",
    "top_pitch",
    *(f"ic{k}" for k in range(1, 7)),
    "span",
    "density",
    "velocity",
)
SYMBOLIC_DIMENSION = len(SYMBOLIC_NAMES)  # 23: never 22, so a symbolic memory is never taken for a traditional one
SYMBOLIC_VERSION = 1
MIDI_EXTENSIONS = (".mid", ".midi")
DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0
MAX_GROUP_NOTES = 16  # notes an event's descriptors keep (services.oracle.memory.states.MAX_SLICE_NOTES)


def symbolic_features(notes: Iterable[Sequence[float]]) -> np.ndarray:
    """The 23-D symbolic vector (float32) of the ``(pitch, velocity)`` notes sounding in an event.

    Raises
    ------
    ParameterError
        A pitch outside 0..127 or a velocity outside 0..127.
    """
    pitches: list[int] = []
    velocities: list[float] = []
    for note in notes:
        pitch, velocity = int(note[0]), float(note[1])
        if not 0 <= pitch <= 127 or not 0.0 <= velocity <= 127.0:
            raise ParameterError(f"a note must have pitch 0..127 and velocity 0..127, got {tuple(note)}")
        pitches.append(pitch)
        velocities.append(velocity)
    vector = np.zeros(SYMBOLIC_DIMENSION, dtype=np.float32)
    if not pitches:
        return vector
    classes = sorted({p % 12 for p in pitches})
    vector[classes] = 1.0
    bass, top = min(pitches), max(pitches)
    vector[12] = bass / 127.0
    vector[13] = top / 127.0
    pairs = len(classes) * (len(classes) - 1) // 2
    if pairs:
        for i, a in enumerate(classes):
            for b in classes[i + 1 :]:
                distance = (b - a) % 12
                vector[14 + min(distance, 12 - distance) - 1] += 1.0 / pairs
    vector[20] = min(top - bass, 36) / 36.0
    vector[21] = min(len(pitches), 8) / 8.0
    vector[22] = float(np.mean(velocities)) / 127.0
    return vector


def event_notes(descriptors: EventDescriptors) -> list[tuple[int, int]]:
    """``(pitch, velocity)`` of what an event's descriptors say sounds: its slice notes; else its f0 as
    one note; else (unvoiced) its three strongest chroma classes placed in octave 4; else nothing (a rest)."""
    d = descriptors
    if d.notes:
        return [(int(n[0]), int(n[3])) for n in d.notes]
    if d.f0_hz > 0.0:
        return [(int(np.clip(round(hz_to_midi(d.f0_hz)), 0, 127)), int(d.velocity))]
    return [(60 + int(pc), int(d.velocity)) for pc in d.chroma_peaks[:3]]


def describe_symbolic() -> dict[str, Any]:
    """The view's record (perception ``describe()``, the trainer's cache key, the model file)."""
    return {
        "dimension": SYMBOLIC_DIMENSION,
        "names": list(SYMBOLIC_NAMES),
        "version": SYMBOLIC_VERSION,
        "audio_notes": "slice notes, else f0, else 3 chroma classes",
    }


# ---------------------------------------------------------------------------------------------- MIDI notes → events
@dataclass
class NoteGroup:
    """One event made of notes: the note-ons within the chord window of ``onset_s`` and the notes still held then.

    ``struck``/``held`` are ``[pitch, velocity, on_s, off_s | None]`` lists (``off_s`` completed at the note-off).
    """

    onset_s: float
    struck: list[list[Any]] = field(default_factory=list)
    held: list[list[Any]] = field(default_factory=list)
    closed: bool = False


class NoteGrouper:
    """Note-on/off messages (in time order) → :class:`NoteGroup` events: the one grouping, offline and live.

    A group opens at a note-on; the note-ons within ``chord_window_s`` of it join it (a chord); the next note-on
    after that opens the next group. A group is complete (:meth:`close_due`) once its window has passed; the note
    durations keep completing at their note-offs (the lists are shared). Channel ``DRUM_CHANNEL`` (10) is left out
    unless ``include_drums``. A note-on with velocity 0 is a note-off; a note-on of a pitch already sounding on its
    channel ends the earlier one first, unless that one was struck in the same chord (a unison: one note).
    """

    def __init__(self, *, chord_window_s: float = 0.030, include_drums: bool = False) -> None:
        if not (math.isfinite(chord_window_s) and 0.0 <= chord_window_s <= 1.0):
            raise ParameterError(f"chord window must be in 0..1 s, got {chord_window_s}")
        self.chord_window_s = float(chord_window_s)
        self.include_drums = bool(include_drums)
        self.sounding: dict[tuple[int, int], list[Any]] = {}
        self.open: NoteGroup | None = None

    def _wanted(self, channel: int) -> bool:
        return self.include_drums or int(channel) != DRUM_CHANNEL

    def note_off(self, time_s: float, pitch: int, channel: int = 0) -> None:
        note = self.sounding.pop((int(channel), int(pitch)), None)
        if note is not None:
            note[3] = max(float(time_s), note[2])

    def note_on(self, time_s: float, pitch: int, velocity: int, channel: int = 0) -> tuple[NoteGroup | None, bool]:
        """Returns ``(the group closed by this note-on or None, whether this note opened a new group)``."""
        if int(velocity) == 0:
            self.note_off(time_s, pitch, channel)
            return None, False
        if not self._wanted(channel):
            return None, False
        if not 0 <= int(pitch) <= 127 or not 1 <= int(velocity) <= 127:
            raise ParameterError(f"note-on pitch {pitch} velocity {velocity} is out of range")
        closed = None
        opened = False
        if self.open is not None and time_s - self.open.onset_s > self.chord_window_s:
            closed = self._close()
        earlier = self.sounding.get((int(channel), int(pitch)))
        if earlier is not None and self.open is not None and any(n is earlier for n in self.open.struck):
            # the key struck again within the chord (a unison of two voices on one channel): one note
            earlier[1] = max(earlier[1], int(velocity))
            return closed, False
        self.note_off(time_s, pitch, channel)
        if self.open is None:
            held = [n for n in self.sounding.values()]
            self.open = NoteGroup(onset_s=float(time_s), held=held)
            opened = True
        note = [int(pitch), int(velocity), float(time_s), None]
        self.open.struck.append(note)
        self.sounding[(int(channel), int(pitch))] = note
        return closed, opened

    def _close(self) -> NoteGroup:
        group, self.open = self.open, None
        if group is None:
            raise ParameterError("no note group is open")
        group.closed = True
        return group

    def close_due(self, now_s: float) -> NoteGroup | None:
        """The open group, once its chord window has passed at ``now_s`` (else None)."""
        if self.open is not None and now_s - self.open.onset_s > self.chord_window_s:
            return self._close()
        return None

    def finish(self, end_s: float) -> NoteGroup | None:
        """End of input: every sounding note ends at ``end_s``; the open group (if any) is returned."""
        for key in list(self.sounding):
            self.note_off(end_s, key[1], key[0])
        return self._close() if self.open is not None else None


def descriptors_from_group(group: NoteGroup, *, duration_s: float, now_s: float | None = None) -> EventDescriptors:
    """The event's descriptors: its sounding notes (struck + held, the lowest pitch first, at most 16), the top note
    as its f0 (confidence 1), the pitch classes top first then by loudness as its chroma peaks, the loudest
    velocity. A note still sounding at ``now_s`` (live) lasts until ``now_s`` so far (its note-off completes it)."""
    end_default = group.onset_s + duration_s if now_s is None else float(now_s)
    notes: list[tuple[int, float, float, int, float, float]] = []
    for pitch, velocity, on_s, off_s in [*group.held, *group.struck]:
        end = off_s if off_s is not None else end_default
        onset = max(0.0, on_s - group.onset_s)
        notes.append((int(pitch), onset, max(0.0, end - max(on_s, group.onset_s)), int(velocity), 0.0, 0.0))
    notes.sort(key=lambda n: (n[0], n[1]))
    notes = notes[:MAX_GROUP_NOTES]
    if not notes:
        raise ParameterError("a note group needs at least one note")
    top = max(n[0] for n in notes)
    loudness: dict[int, int] = {}
    for n in notes:
        loudness[n[0] % 12] = max(loudness.get(n[0] % 12, 0), n[3])
    order = sorted(loudness, key=lambda pc: (pc != top % 12, -loudness[pc], pc))
    struck = [int(n[1]) for n in group.struck] or [n[3] for n in notes]
    return EventDescriptors(
        onset_s=float(group.onset_s),
        duration_s=max(0.0, float(duration_s)),
        rms=float(10.0 ** ((max(struck) - 1.0) * 60.0 / 126.0 / 20.0 - 3.0)),  # the inverse of rms_to_velocity
        velocity=int(max(struck)),
        f0_hz=float(midi_to_hz(top)),
        f0_confidence=1.0,
        chroma_peaks=tuple(order),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------- MIDI files
def read_midi_notes(path: str | Path) -> tuple[list[tuple[float, str, int, int, int]], float]:
    """``([(time_s, "on"|"off", pitch, velocity, channel)], length_s)`` of a standard MIDI file (type 0 or 1; the
    tempo map applied, running status handled by mido). Raises ParameterError (one line) for a corrupt file."""
    import mido

    try:
        midi = mido.MidiFile(str(path))
        if midi.type == 2:
            raise ParameterError("type 2 MIDI files (independent sequences) are not supported")
        messages: list[tuple[float, str, int, int, int]] = []
        now = 0.0
        for message in midi:  # merged tracks, delta times in seconds through the tempo map
            now += float(message.time)
            if message.type == "note_on" and message.velocity > 0:
                messages.append((now, "on", int(message.note), int(message.velocity), int(message.channel)))
            elif message.type in ("note_on", "note_off"):
                messages.append((now, "off", int(message.note), 0, int(message.channel)))
    except ParameterError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ParameterError(f"{Path(path).name}: not a readable MIDI file ({type(error).__name__}: {error})") from None
    return messages, now


def midi_file_groups(
    path: str | Path, *, chord_window_s: float = 0.030, include_drums: bool = False
) -> tuple[list[NoteGroup], float]:
    """A MIDI file's note groups (complete: every note-off seen) and its length in seconds."""
    messages, length_s = read_midi_notes(path)
    grouper = NoteGrouper(chord_window_s=chord_window_s, include_drums=include_drums)
    groups: list[NoteGroup] = []
    for time_s, kind, pitch, velocity, channel in messages:
        if kind == "off":
            grouper.note_off(time_s, pitch, channel)
            continue
        closed, _ = grouper.note_on(time_s, pitch, velocity, channel)
        if closed is not None:
            groups.append(closed)
    last = grouper.finish(length_s)
    if last is not None:
        groups.append(last)
    return groups, length_s


def analyze_midi_file(
    path: str | Path, config: Any, perception: Any
) -> tuple[list[Event], list[tuple[EventDescriptors, dict[str, np.ndarray]]], float]:
    """The trainer's path for a ``.mid``: note groups → events and ``(descriptors, {"symbolic": vector})`` analyses
    as :func:`services.encoder.analysis.analyze_file` gives for audio, plus the file's length in seconds.

    An event lasts until the next one (the last: until its longest note ends). Raises ParameterError when the
    perception has no symbolic view (an audio model cannot learn from MIDI) or the file is corrupt.
    """
    if "symbolic" not in perception.views:
        raise ParameterError(f"the perception ({'+'.join(perception.views)}) cannot learn from MIDI notes")
    groups, length_s = midi_file_groups(
        path,
        chord_window_s=config.features.chord_window_ms / 1000.0,
        include_drums=config.features.midi_drums,
    )
    sr = int(config.audio.sample_rate_hz)
    events: list[Event] = []
    analyses: list[tuple[EventDescriptors, dict[str, np.ndarray]]] = []
    for index, group in enumerate(groups):
        if index + 1 < len(groups):
            duration = groups[index + 1].onset_s - group.onset_s
        else:
            duration = max((n[3] for n in group.struck), default=group.onset_s) - group.onset_s
        descriptors = descriptors_from_group(group, duration_s=max(duration, 0.0))
        start = int(round(group.onset_s * sr))
        events.append(
            Event(
                event_id=index,
                onset_sample=start,
                window_start=start,
                window_end=start + max(1, int(round(descriptors.duration_s * sr))),
                sample_rate_hz=sr,
                strength=1.0,
                source=str(path),
            )
        )
        analyses.append((descriptors, {"symbolic": symbolic_view(descriptors)}))
    return events, analyses, float(length_s)


def symbolic_view(descriptors: EventDescriptors) -> np.ndarray:
    """The symbolic vector of an event from its descriptors (MIDI or audio: :func:`event_notes`)."""
    return symbolic_features(event_notes(descriptors))
