"""Listening while playing, through the real stack: echo-aware gate beside the time gate, same material, one run.

The whole live stack (``LiveStack``: capture from a JACK audio input, encoder, oracle, midi_out to a JACK MIDI port)
runs on a JACK dummy server. A musician's line in C2..B2 (rendered with fluidsynth, onsets known) is played into the
capture's input by a JACK client; MusicHal (imitate, melody C4..C6, bass C3..C4) plays along, and its MIDI out drives
a live ``fluidsynth -a jack -m jack`` whose audio goes back into the same capture input: the echo is MusicHal's own
notes as they sound. Every input onset the stack detected (the oracle's session log) is named musician / echo / both
/ other by time against ground truth (musician: its known onsets; echo: MusicHal's note-ons as received on JACK; each
source's constant latency measured from the data), and counted learned when its full-window percept was not gated
(see ``testkit/echo_loop.py``). Both gate modes (``control.gate_mode`` ``content`` = echo-aware, the default, and
``time`` = the old blanket gate) hear the same musician, one after the other in this run.

Two players: ``imitate`` (the default: MusicHal answers the musician) carries the goals; ``lead`` (its own denser
phrases, more of its attacks fall with the musician's) is reported beside it. Each take's onsets are also judged by
the other gate mode replayed offline on the same session (``same_onsets_*``): the same onsets, both verdicts.

Run: ``python benchmarks/echo_stack.py`` (``--quick``: one musician, imitate only; the full run: two musicians, both
players, both gate modes: 8 takes of 20 s; ``--keep DIR``: keep the takes' session logs and ground truth in DIR).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["JACK_DEFAULT_SERVER"] = f"musichal-echo-bench-{os.getpid()}"  # our own server, never a running one
os.environ["JACK_NO_START_SERVER"] = "1"

from _common import emit, goal, strip_no_save  # noqa: E402

NOTES = (
    "Through the real stack on a JACK dummy server: the musician (C2..B2, rendered) and MusicHal's own MIDI "
    "rendered live by fluidsynth are mixed into the capture's JACK input. Onsets are named musician / echo / both / "
    "other against ground truth (musician: its known onsets, stamped by the JACK cycle that played them; echo: "
    "-20..+150 ms of a note-on MusicHal sent); 'musician' shares include 'both' (the musician's onsets at one of "
    "MusicHal's attacks). The time-gate takes hear the same musician, but MusicHal, deaf to it, plays another, "
    "denser part; the 'same onsets' figures replay the other gate mode over a take's own session log. On a "
    "loaded machine the --sync JACK graph stalls and falls behind the wall clock: echoes are then detected late, "
    "past the gate's 120 ms attack window, and learned (see the timing rows and the per-take figures in the JSON)."
)


def _sum(takes: list[dict], *keys: str, field: str = "counts") -> dict:
    onsets = sum(t[field].get(k, {}).get("onsets", 0) for t in takes for k in keys)
    learned = sum(t[field].get(k, {}).get("learned", 0) for t in takes for k in keys)
    return {"onsets": onsets, "learned": learned, "share": round(learned / onsets, 4) if onsets else None}


def _replayed(run: dict, notes: list, mode: str) -> dict:
    """The ``mode`` gate replayed on this take's own onsets and notes: counts per class, as ``learned_shares``."""
    from testkit.echo_loop import classify, cycle_time, gate_verdicts

    full = [p for p in run["percepts"] if not p["early"] and p["onset_t"] is not None]
    labels = classify(
        [p["onset_t"] for p in full],
        [cycle_time(run["cycles"], round(n[1] * 48000)) for n in notes],
        [t for t, _ in run["received"]],
    )["labels"]
    verdicts = gate_verdicts(run["session"], mode)
    counts: dict = {}
    for label, blocked in zip(labels, verdicts):
        c = counts.setdefault(label, {"onsets": 0, "learned": 0})
        c["onsets"] += 1
        c["learned"] += int(not blocked)
    return counts


def main(argv=None) -> int:
    args = strip_no_save(argv)
    quick = "--quick" in args
    keep = Path(args[args.index("--keep") + 1]) if "--keep" in args else None
    import json

    import ray

    from services.trainer.pipeline import train
    from shared.config import MusicHalConfig
    from shared.jack_server import start_dummy_jack, stop_jack
    from testkit.audio import render_midi_notes
    from testkit.echo_loop import learned_shares, musician_line, run_loop, training_line

    seeds = (11,) if quick else (11, 12)
    players = ("imitate",) if quick else ("imitate", "lead")
    seconds = 20.0
    jack = start_dummy_jack(sync=True)
    takes: dict[str, dict[str, list[dict]]] = {p: {"content": [], "time": []} for p in players}
    try:
        ray.init(
            address="local",
            num_cpus=max(2, os.cpu_count() or 2),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )
        with tempfile.TemporaryDirectory(prefix="musichal_echo_stack_") as tmp:
            root = Path(tmp) if keep is None else keep
            root.mkdir(parents=True, exist_ok=True)
            model = root / "model.json"
            train(
                [render_midi_notes(training_line(21), root / "train.wav")],
                config=MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 16}),
                output=model,
                cache_dir=root / "cache",
            )
            for seed in seeds:
                notes = musician_line(seed, seconds)
                wav = render_midi_notes(notes, root / f"musician{seed}.wav")
                for player in players:
                    for mode in ("content", "time"):
                        run = run_loop(
                            model=model,
                            musician_wav=wav,
                            mode=mode,
                            workdir=root,
                            overrides={"generation.mode": player},
                        )
                        figures = learned_shares(run, notes)
                        other = "time" if mode == "content" else "content"
                        figures[f"replayed_{other}"] = _replayed(run, notes, other)
                        counters = run["final"].get("oracle", {}).get("counters", {})
                        figures.update(
                            {
                                "seed": seed,
                                "player": player,
                                "gate_mode": mode,
                                "oracle": {
                                    k: counters.get(k)
                                    for k in ("stage_percepts", "stage_gated", "stage_learned", "gate_blocked")
                                },
                            }
                        )
                        print(
                            f"{player} {mode} seed {seed}: musician {figures['musician_learned']} echo "
                            f"{figures['echo_learned']} {figures['counts']}",
                            file=sys.stderr,
                        )
                        takes[player][mode].append(figures)
                        if keep is not None:  # the take as measured, for a look afterwards (sessions stay beside it)
                            (keep / f"take_{player}_{mode}_{seed}.json").write_text(
                                json.dumps({"run": {k: v for k, v in run.items() if k != "final"}, "notes": notes})
                            )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        stop_jack(jack)

    summary = {}
    for player, by_mode in takes.items():
        for mode, t in by_mode.items():
            other = "time" if mode == "content" else "content"
            summary[f"{player}/{mode}"] = {
                "musician": _sum(t, "musician", "both"),
                "echo": _sum(t, "echo"),
                "both": _sum(t, "both"),
                "other": _sum(t, "other"),
                "jack_graph_behind_s": [x["timing"]["jack_graph_behind_s"] for x in t],
                "echo_delay_ms_p50": [x["timing"]["echo_delay_ms_p50"] for x in t],
                "echo_delay_ms_p90": [x["timing"]["echo_delay_ms_p90"] for x in t],
                f"same_onsets_{other}_gate": {
                    "musician": _sum(t, "musician", "both", field=f"replayed_{other}"),
                    "echo": _sum(t, "echo", field=f"replayed_{other}"),
                },
            }
    figures = {
        "takes": takes,
        "summary": summary,
        "seconds_per_take": seconds,
        "seeds": list(seeds),
        "players": list(players),
    }
    c, t = summary["imitate/content"], summary["imitate/time"]
    goals = [
        goal("musician onsets learned, echo-aware gate (imitate, the default)", c["musician"]["share"], ">=", 0.9),
        goal("echo onsets learned, echo-aware gate (imitate)", c["echo"]["share"], "<=", 0.1),
        goal("musician onsets learned, time gate (imitate, same musician)", t["musician"]["share"], "report"),
        goal("echo onsets learned, time gate (imitate)", t["echo"]["share"], "report"),
        goal(
            "musician / echo onsets detected, echo-aware takes (imitate)",
            f"{c['musician']['onsets']} / {c['echo']['onsets']}",
            "report",
        ),
        goal(
            "musician / echo onsets detected, time-gate takes (imitate)",
            f"{t['musician']['onsets']} / {t['echo']['onsets']}",
            "report",
        ),
        goal(
            "musician onsets the time gate would learn on the echo-aware takes' own onsets (replayed)",
            c["same_onsets_time_gate"]["musician"]["share"],
            "report",
        ),
        goal(
            "JACK graph behind the wall clock after each 20 s take, echo-aware imitate (a loaded machine)",
            ", ".join(f"{x:.1f}" for x in c["jack_graph_behind_s"]),
            "report",
            unit="s",
            note="a --sync dummy server waits for every client; on a loaded machine its cycles stall",
        ),
        goal(
            "echo detected after its note-on, p50 / p90 per take, echo-aware imitate",
            ", ".join(f"{a} / {b}" for a, b in zip(c["echo_delay_ms_p50"], c["echo_delay_ms_p90"])),
            "report",
            unit="ms",
            note="the gate's attack window is -15..+120 ms",
        ),
    ]
    if "lead" in players:
        lc, lt = summary["lead/content"], summary["lead/time"]
        goals += [
            goal(
                "musician onsets learned, echo-aware gate (lead: its own dense phrases)",
                lc["musician"]["share"],
                "report",
            ),
            goal("echo onsets learned, echo-aware gate (lead)", lc["echo"]["share"], "report"),
            goal("musician onsets learned, time gate (lead)", lt["musician"]["share"], "report"),
        ]
    return emit("echo_stack", figures, goals, notes=NOTES)


if __name__ == "__main__":
    sys.exit(main())
