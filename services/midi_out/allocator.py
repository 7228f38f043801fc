"""Channel allocation per note id (never per pitch) for the ``mpe``, ``gm-safe`` and ``mono`` profiles.

- ``mpe``: member channels are indices 1..N (MIDI channels 2..N+1), one sounding note per channel.
- ``gm-safe``: the same, but channel 10 (index 9, GM drums) is never used; indices 1..8, 10..15, then 0.
- ``mono``: every note on channel index 0; the same pitch sounding twice is a *retrigger*: the older note is
  ended (note-off) before the new note-on, and its own later note-off is swallowed (it would cut the new note).

Free channels are handed out least-recently-released first; when every channel is busy the oldest sounding
note is stolen (ended with a note-off first).

``voice_channels`` (gm-safe: ``midi.bass_channel``/``midi.comping_channel``, see :func:`voice_channel_map`) gives
a voice (``NoteEvent.voice``) one channel of its own: its notes share it (as in ``mono``: the same pitch twice
is a retrigger, and ``channel_shared`` says another note sounds there), and the pool of the other notes leaves
it out.

>>> alloc = ChannelAllocator("mpe", 2)
>>> alloc.note_on(10, 60).channel, alloc.note_on(11, 60).channel
(1, 2)
>>> plan = alloc.note_on(12, 64)          # all busy: steal note 10
>>> plan.channel, [v.note_id for v in plan.ended]
(1, [10])
>>> alloc.note_off(10) is None            # already ended by the steal
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import MIDI_PROFILES
from shared.errors import ParameterError

__all__ = ["Voice", "NoteOnPlan", "ChannelAllocator", "member_channel_indices", "voice_channel_map", "GM_DRUM_CHANNEL"]

GM_DRUM_CHANNEL = 9  # MIDI channel 10


@dataclass(frozen=True, slots=True)
class Voice:
    """A sounding note: its id, the channel index it sounds on and its pitch."""

    note_id: int
    channel: int
    pitch: int


@dataclass(frozen=True, slots=True)
class NoteOnPlan:
    """What to send for a note-on: note-offs for ``ended`` voices first, then the note on ``channel``."""

    channel: int
    ended: tuple[Voice, ...] = ()
    stolen: bool = False
    retriggered: bool = False
    channel_shared: bool = False  # another note is still sounding on ``channel`` (mono profile)


def member_channel_indices(profile: str, member_channels: int) -> tuple[int, ...]:
    """Channel indices a profile plays notes on.

    >>> member_channel_indices("gm-safe", 10)
    (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)
    >>> member_channel_indices("mono", 15)
    (0,)
    """
    if profile not in MIDI_PROFILES:
        raise ParameterError(f"profile must be one of {', '.join(MIDI_PROFILES)}, got {profile!r}")
    if not isinstance(member_channels, int) or not 1 <= member_channels <= 15:
        raise ParameterError(f"member_channels must be in 1..15, got {member_channels!r}")
    if profile == "mono":
        return (0,)
    if profile == "mpe":
        return tuple(range(1, member_channels + 1))
    order = [c for c in range(1, 16) if c != GM_DRUM_CHANNEL] + [0]
    return tuple(order[:member_channels])


def voice_channel_map(config: Any) -> dict[str, int]:
    """The channel index of each voice with a channel of its own: gm-safe only (``midi.bass_channel`` and
    ``midi.comping_channel``, MIDI numbering, 0 = none); mpe and mono share their channels among all voices.

    >>> from shared.config import MidiConfig
    >>> voice_channel_map(MidiConfig(profile="gm-safe"))
    {'bass': 10, 'comping': 11}
    >>> voice_channel_map(MidiConfig(profile="mpe"))
    {}
    """
    if config.profile != "gm-safe":
        return {}
    return {
        voice: channel - 1
        for voice, channel in (("bass", config.bass_channel), ("comping", config.comping_channel))
        if channel
    }


class ChannelAllocator:
    """Assign channels to notes by note id; least-recently-released first; steal the oldest when full.

    Parameters
    ----------
    profile : str
        ``"mpe"``, ``"gm-safe"`` or ``"mono"``.
    member_channels : int
        Number of member channels (1..15); ignored by ``mono``.
    voice_channels : mapping, optional
        Voice name → the channel index its notes share (left out of the pool of the other notes).

    Raises
    ------
    ParameterError
        Unknown profile, bad channel count, or a note id that is already sounding.
    """

    def __init__(self, profile: str, member_channels: int, *, voice_channels: Mapping[str, int] | None = None) -> None:
        self.profile = profile
        members = member_channel_indices(profile, member_channels)
        self.voice_channels = dict(voice_channels or {})
        if any(not isinstance(c, int) or not 0 <= c <= 15 for c in self.voice_channels.values()):
            raise ParameterError(f"voice channels must be channel indices 0..15, got {self.voice_channels}")
        if len(set(self.voice_channels.values())) != len(self.voice_channels):
            raise ParameterError(f"each voice needs a channel of its own, got {self.voice_channels}")
        own = set(self.voice_channels.values())
        self.pool = tuple(c for c in members if c not in own) or members[:1]
        if own & set(self.pool):
            raise ParameterError("the voice channels leave no channel for the other notes")
        # every channel notes may sound on (the profile's setup goes to each)
        self.channels = members + tuple(c for c in self.voice_channels.values() if c not in members)
        self.steals = 0
        self.retriggers = 0
        self.unknown_note_offs = 0
        self.reset()

    def reset(self) -> None:
        """Forget every sounding note (after a panic); counters are kept."""
        self._free: OrderedDict[int, None] = OrderedDict((c, None) for c in self.pool)
        self._sounding: OrderedDict[int, Voice] = OrderedDict()  # note id -> voice, oldest note-on first
        self._by_channel_pitch: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note id (mono retrigger)

    # ----------------------------------------------------------------------------------------------- queries
    @property
    def sounding(self) -> dict[int, Voice]:
        """Copy of the sounding notes, note id → voice, oldest first."""
        return dict(self._sounding)

    def voice(self, note_id: int) -> Voice | None:
        return self._sounding.get(note_id)

    def __len__(self) -> int:
        return len(self._sounding)

    # ----------------------------------------------------------------------------------------------- changes
    def _end(self, note_id: int) -> Voice:
        voice = self._sounding.pop(note_id)
        if self._by_channel_pitch.get((voice.channel, voice.pitch)) == note_id:
            del self._by_channel_pitch[(voice.channel, voice.pitch)]
        if self.profile != "mono" and voice.channel in self.pool:
            self._free[voice.channel] = None  # released now: goes to the back of the queue
        return voice

    def note_on(self, note_id: int, pitch: int, voice: str = "melody") -> NoteOnPlan:
        """Allocate a channel for a new note of ``voice``; the plan lists voices to end (note-off) before its
        note-on."""
        if note_id in self._sounding:
            raise ParameterError(f"note id {note_id} is already sounding")
        if not isinstance(pitch, int) or not 0 <= pitch <= 127:
            raise ParameterError(f"pitch must be in 0..127, got {pitch!r}")
        ended: list[Voice] = []
        stolen = retriggered = False
        shared_channel = self.voice_channels.get(voice)
        if shared_channel is None and self.profile == "mono":
            shared_channel = self.channels[0]
        if shared_channel is not None:
            channel = shared_channel
            previous = self._by_channel_pitch.get((channel, pitch))
            if previous is not None:
                ended.append(self._end(previous))
                retriggered = True
                self.retriggers += 1
            shared = any(v.channel == channel for v in self._sounding.values())
        else:
            if not self._free:  # the oldest note on the pool's channels (a voice's own channel frees none)
                oldest = next(k for k, v in self._sounding.items() if v.channel in self.pool)
                ended.append(self._end(oldest))
                stolen = True
                self.steals += 1
            channel, _ = self._free.popitem(last=False)
            shared = False
        voice = Voice(note_id, channel, pitch)
        self._sounding[note_id] = voice
        self._by_channel_pitch[(channel, pitch)] = note_id
        return NoteOnPlan(
            channel=channel, ended=tuple(ended), stolen=stolen, retriggered=retriggered, channel_shared=shared
        )

    def note_off(self, note_id: int) -> Voice | None:
        """End ``note_id``; ``None`` (counted) when it is not sounding (stolen, retriggered or unknown)."""
        if note_id not in self._sounding:
            self.unknown_note_offs += 1
            return None
        return self._end(note_id)

    def end_all(self) -> list[Voice]:
        """End every sounding note (oldest first) and return them, for a panic."""
        voices = list(self._sounding.values())
        for voice in voices:
            self._end(voice.note_id)
        return voices
