"""Write the bundled demo piece (shared/data/demo_piece.mid): a 32-bar piano piece in A minor / C major.

A motif-based melody over i–VI–III–VII with a walking bass, so the Audio Oracle finds repeated contexts.
Deterministic: running it again writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import mido

OUT = Path(__file__).resolve().parent.parent / "shared" / "data" / "demo_piece.mid"
TPB = 480
BEAT = TPB
BPM = 104

CHORDS = [(57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62)]  # Am F C G
MOTIFS = [
    [(76, 1), (74, 0.5), (72, 0.5), (71, 1), (72, 1)],
    [(72, 0.5), (74, 0.5), (76, 1), (79, 1), (77, 1)],
    [(81, 1.5), (79, 0.5), (77, 1), (76, 1)],
    [(74, 1), (71, 1), (72, 0.5), (69, 1.5)],
]
FORM = [0, 1, 0, 2, 0, 1, 3, 3]  # motif per two bars


def build() -> mido.MidiFile:
    events: list[tuple[int, mido.Message]] = []

    def note(pitch: int, start_beats: float, dur_beats: float, velocity: int, channel: int) -> None:
        start = int(round(start_beats * BEAT))
        end = int(round((start_beats + dur_beats) * BEAT)) - 10
        events.append((start, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)))
        events.append((end, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))

    beat = 0.0
    for section, motif_index in enumerate(FORM):
        for bar in range(2):
            chord = CHORDS[(section * 2 + bar) % 4]
            bar_start = beat + bar * 4
            for i, pitch in enumerate(chord):  # arpeggiated left hand
                note(pitch, bar_start + i * 0.5, 1.5, 62, 0)
            note(chord[0] - 12, bar_start, 3.8, 70, 0)
        t = beat
        for pitch, dur in MOTIFS[motif_index]:
            note(pitch - 12 if section == 6 else pitch, t, dur * 0.95, 92, 0)
            t += dur
        for pitch, dur in MOTIFS[(motif_index + 1) % 4][:3]:
            note(pitch - 5 if section % 2 else pitch, t + 0.25, dur * 0.9, 84, 0)
            t += dur
        beat += 8
    events.sort(key=lambda item: (item[0], item[1].type == "note_on"))
    midi = mido.MidiFile(ticks_per_beat=TPB)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM), time=0))
    track.append(mido.Message("program_change", program=0, channel=0, time=0))
    now = 0
    for tick, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=TPB))
    return midi


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    build().save(OUT)
    print(f"wrote {OUT} ({build().length:.1f} s)")
