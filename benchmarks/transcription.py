"""What a slice holds, measured: note transcription against ground truth, chords inside slices, echo-aware listening.

On Bach chorales from the music21 corpus rendered with fluidsynth (FluidR3 GM piano, first 24 s at 80 bpm):

* **file F1** — :func:`services.encoder.transcription.transcribe_audio` on the whole recording, note-level F1
  (``mir_eval.transcription``, onset tolerance 50 ms, offsets ignored);
* **slice F1** — the trainer's own path (:func:`services.encoder.analysis.analyze_file`: segmenter events, each
  500 ms window transcribed by the function the live encoder calls), stitched back with
  :func:`~services.encoder.transcription.stitch_slices`: what the memory holds;
* **chords in slices** — share of the score's chords whose pitch classes are all among the transcribed pitch classes
  of the slice starting within 50 ms of the chord (the slice that holds it);
* **ms per event** — one 500 ms window through transcription + expression, as the live encoder does it (p50/p95);
* **echo-aware listening** — a legato own melody with a musician's line two octaves lower mixed in (4 seeds): share of
  the musician's onsets kept and of echo onsets kept, echo-aware (:class:`~services.oracle.player.echo.EchoGate` content
  mode) beside the time gate, through the segmenter and the slices' transcription.

Run: ``python benchmarks/transcription.py`` (``--quick``: two chorales, two echo seeds).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, goal, strip_no_save  # noqa: E402

from shared.pitch import midi_to_hz  # noqa: E402


def _f1(reference, estimated) -> dict:
    import mir_eval

    ref_i = np.array([[s, s + max(d, 0.01)] for _, s, d, _ in reference])
    ref_p = midi_to_hz([p for p, *_ in reference])
    if not estimated:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    est_i = np.array([[n.onset_s, n.onset_s + max(n.duration_s, 0.01)] for n in estimated])
    est_p = midi_to_hz([n.pitch for n in estimated])
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, offset_ratio=None
    )
    return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4)}


def chords_in_slices(reference, events, descriptors) -> tuple[int, int, list]:
    """(chords held, chords with a slice, misses): a chord is held when its pitch classes ⊂ its slice's."""
    chords: dict[float, set[int]] = {}
    for pitch, start, _, _ in reference:
        chords.setdefault(round(start, 4), set()).add(pitch % 12)
    onsets = np.array([e.onset_s for e in events])
    held = found = 0
    misses = []
    for start, classes in sorted(chords.items()):
        if onsets.size == 0:
            break
        k = int(np.argmin(np.abs(onsets - start)))
        if abs(onsets[k] - start) > 0.05:
            continue
        found += 1
        slice_classes = {n[0] % 12 for n in descriptors[k].notes}
        if classes <= slice_classes:
            held += 1
        else:
            misses.append({"t": start, "chord": sorted(classes), "slice": sorted(slice_classes)})
    return held, found, misses


def measure_pieces(names, root: Path) -> dict:
    import soundfile as sf

    from services.encoder.analysis import analyze_file
    from services.encoder.transcription import SliceNote, stitch_slices, transcribe_audio
    from services.encoder.views import HybridPerceptionModule
    from shared.config import MusicHalConfig
    from testkit.audio import chorale_opening, render_midi_notes

    config = MusicHalConfig()
    perception = HybridPerceptionModule(slice_notes=True)
    window_s = config.segmenter.window_ms / 1000.0
    pieces = {}
    for name in names:
        reference = chorale_opening(name)
        path = render_midi_notes(reference, root / f"{name.replace('/', '_')}.wav")
        audio, sr = sf.read(str(path), dtype="float32")
        audio = audio.mean(axis=1) if audio.ndim > 1 else audio
        whole = transcribe_audio(audio, sample_rate_hz=sr)
        events, analyses = analyze_file(path, config, perception)
        descriptors = [d for d, _ in analyses]
        slices = [tuple(SliceNote(*n) for n in d.notes) for d in descriptors]
        stitched = stitch_slices(
            [d.onset_s for d in descriptors], [d.duration_s for d in descriptors], slices, window_s=window_s
        )
        held, found, misses = chords_in_slices(reference, events, descriptors)
        pieces[name] = {
            "notes": len(reference),
            "events": len(events),
            "file": _f1(reference, whole),
            "slices": _f1(reference, stitched),
            "chords_found": found,
            "chords_held": held,
            "mean_notes_per_slice": round(float(np.mean([len(d.notes) for d in descriptors])), 2),
            "chord_misses": misses[:5],
        }
    return pieces


def measure_cost(root: Path, repeats: int = 30) -> dict:
    import soundfile as sf

    from services.encoder.expression import slice_expression
    from services.encoder.transcription import default_transcriber

    audio, sr = sf.read(str(next(root.glob("*.wav"))), dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    transcriber = default_transcriber()
    windows = [audio[int(t * sr) : int(t * sr) + sr // 2] for t in np.linspace(0.0, audio.size / sr - 0.6, repeats)]
    transcriber.transcribe_windows(windows[:1], sample_rate_hz=sr)
    notes_ms, expression_ms = [], []
    for window in windows:
        t0 = time.perf_counter()
        transcriber.transcribe_windows([window], sample_rate_hz=sr)
        t1 = time.perf_counter()
        slice_expression(window, sample_rate_hz=sr)
        t2 = time.perf_counter()
        notes_ms.append((t1 - t0) * 1e3)
        expression_ms.append((t2 - t1) * 1e3)
    total = np.array(notes_ms) + np.array(expression_ms)
    return {
        "transcription_ms_p50": round(float(np.percentile(notes_ms, 50)), 2),
        "expression_ms_p50": round(float(np.percentile(expression_ms, 50)), 2),
        "per_event_ms_p50": round(float(np.percentile(total, 50)), 2),
        "per_event_ms_p95": round(float(np.percentile(total, 95)), 2),
        "windows": len(windows),
    }


def echo_scene(seed: int, root: Path) -> dict:
    """Keep rates of the musician's and of echo onsets, content mode and time mode, for one rendered scene."""
    from shared.config import SegmenterConfig
    from testkit.echo_scene import kept_onsets, scene_mix, scene_slices

    own, musician, mix = scene_mix(seed, root)
    config = SegmenterConfig()
    events, slices = scene_slices(mix, config)
    kept_by_mode = kept_onsets(own, musician, events, slices, window_s=config.window_ms / 1000.0)
    return {
        mode: {
            "musician_onsets": len(kept["musician"]),
            "musician_kept": int(sum(kept["musician"])),
            "echo_onsets": len(kept["echo"]),
            "echo_kept": int(sum(kept["echo"])),
        }
        for mode, kept in kept_by_mode.items()
    }


def main(argv=None) -> int:
    args = strip_no_save(argv)
    quick = "--quick" in args
    from testkit.audio import CHORALES

    names = CHORALES[:2] if quick else CHORALES
    seeds = (0, 1) if quick else (0, 1, 2, 3)
    with tempfile.TemporaryDirectory(prefix="musichal_transcription_") as tmp:
        root = Path(tmp)
        pieces = measure_pieces(names, root)
        cost = measure_cost(root)
        scenes = {str(seed): echo_scene(seed, root) for seed in seeds}
    file_f1 = float(np.mean([p["file"]["f1"] for p in pieces.values()]))
    slice_f1 = float(np.mean([p["slices"]["f1"] for p in pieces.values()]))
    chords_found = sum(p["chords_found"] for p in pieces.values())
    chords_held = sum(p["chords_held"] for p in pieces.values())

    def share(mode: str, who: str) -> float:
        kept = sum(s[mode][f"{who}_kept"] for s in scenes.values())
        total = sum(s[mode][f"{who}_onsets"] for s in scenes.values())
        return round(kept / total, 4) if total else float("nan")

    figures = {
        "pieces": pieces,
        "mean_file_f1": round(file_f1, 4),
        "mean_slice_f1": round(slice_f1, 4),
        "chords_held_share": round(chords_held / chords_found, 4) if chords_found else None,
        "chords_found": chords_found,
        "cost": cost,
        "mean_notes_per_slice": round(float(np.mean([p["mean_notes_per_slice"] for p in pieces.values()])), 2),
        "echo_scenes": scenes,
        "echo_aware": {"musician_kept": share("content", "musician"), "echo_kept": share("content", "echo")},
        "time_gate": {"musician_kept": share("time", "musician"), "echo_kept": share("time", "echo")},
    }
    goals = [
        goal("note F1 (50 ms onsets) on piano chorales, whole files", round(file_f1, 4), ">=", 0.8),
        goal("note F1 of what the memory holds (slices stitched)", round(slice_f1, 4), ">=", 0.8),
        goal("chords whose pitch classes are in their slice's notes", figures["chords_held_share"], ">=", 0.95),
        goal("musician onsets kept during own notes, echo-aware", figures["echo_aware"]["musician_kept"], ">=", 0.9),
        goal("echo onsets kept, echo-aware", figures["echo_aware"]["echo_kept"], "<=", 0.1),
        goal("musician onsets kept, time gate (same scenes)", figures["time_gate"]["musician_kept"], "report"),
        goal("notes per slice (chorales: four voices)", figures["mean_notes_per_slice"], "report"),
        goal(
            "slice notes + expression per 500 ms event, p95",
            cost["per_event_ms_p95"],
            "<=",
            100.0,
            unit="ms",
            note="the live encoder must keep up with an event every ~100 ms",
        ),
    ]
    return emit("transcription", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
