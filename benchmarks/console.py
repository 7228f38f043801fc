"""What the console costs a running stack: CPU and reaction latency with and without it, interleaved in one run.

Each round plays the same rendered piano clip (looped) through the whole stack for ``--seconds`` of listening, with
the console off or on; with it on, a page stand-in (a WebSocket client in its own process: it takes every frame,
~20 a second, and reports the notes it would draw, as the page does) is connected the whole time. Measured per round
over the listening time: the CPU of the stack's own processes (the driver, which runs the console, and the four
actors; the client's process is not counted: a browser runs elsewhere or beside), the reaction p95 (onset → the first
note chosen with its influence) and the pipeline p99, from midi_out's series. Rounds alternate off/on so the machine's
load falls on both alike.

    python benchmarks/console.py --rounds 2 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import emit, goal, strip_no_save  # noqa: E402
from fixtures import random_piano_clip  # noqa: E402

from shared.config import MusicHalConfig  # noqa: E402
from shared.jack_server import start_dummy_jack, stop_jack  # noqa: E402

#: the page stand-in: reads every frame and answers with the ids of the notes it has not reported yet
CLIENT = r"""
import asyncio, json, sys
import aiohttp
async def main(url):
    seen = set()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            async for message in ws:
                frame = json.loads(message.data)
                if frame.get("type") != "frame":
                    continue
                new = [n["id"] for n in frame["played"] if n["id"] not in seen]
                seen.update(new)
                if new:
                    await ws.send_str(json.dumps({"type": "drawn", "ids": new}))
asyncio.run(main(sys.argv[1]))
"""


def _cpu_s(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def one_round(clip: Path, *, console: bool, seconds: float, tmp: Path, client: bool = True) -> dict:
    import ray

    from services.stack import LiveStack

    config = MusicHalConfig().with_overrides(
        {
            "midi.api": "jack",
            "midi.profile": "gm-safe",
            "generation.seed": 1,
            "console.enabled": console,
            "console.port": 0,
            "console.token_file": str(tmp / "token"),
        }
    )
    stack = LiveStack(config, input_file=str(clip), loop=True)
    page = None
    try:
        stack.start()
        pids = [os.getpid()] + [
            int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
            for actor in stack.actors.values()
        ]
        if console and client:
            url = stack.console.url.replace("http://", "ws://").replace("/?token=", "/ws?token=")
            page = subprocess.Popen([sys.executable, "-c", CLIENT, url])
        cpu0, t0 = _cpu_s(pids), time.monotonic()
        pause = threading.Event()
        while time.monotonic() - t0 < seconds:
            pause.wait(1.0)
            stack.stats(timeout_s=0.5)  # as the command line's status line does, once a second
        cpu1, t1 = _cpu_s(pids), time.monotonic()
        frames = None
        if console:
            frames = stack.console.server.counters["frames_sent"]
        final = stack.stop(graceful=True)
    finally:
        if page is not None:
            page.terminate()
            page.wait(timeout=10)
        stack.stop(graceful=False)
    latency = final.get("midi_out", {}).get("latency_ms", {})
    return {
        "console": console,
        "cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 4),
        "reaction_p95_ms": (latency.get("onset_to_note") or {}).get("p95"),
        "pipeline_p99_ms": (latency.get("pipeline") or {}).get("p99"),
        "notes": (final.get("midi_out", {}).get("counters") or {}).get("notes_received"),
        "frames_sent": frames,
        "load_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (default 2)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of listening per round (default 20)")
    parser.add_argument(
        "--no-page", action="store_true", help="no page connected: the feed and the oracle's view alone (no frames)"
    )
    args = parser.parse_args(strip_no_save(argv))
    import ray

    jack = start_dummy_jack()
    tmp = Path(tempfile.mkdtemp(prefix="musichal_console_bench_"))
    clip = random_piano_clip(
        tmp / "clip.wav",
        seed=3,
        count=100,
        pitches=[55, 57, 60, 62, 64, 67, 69, 72],
        start_s=0.1,
        step_s=0.2,
        duration_s=0.17,
    )
    rounds = []
    try:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )
        for _ in range(args.rounds):
            for console in (False, True):
                rounds.append(one_round(clip, console=console, seconds=args.seconds, tmp=tmp, client=not args.no_page))
    finally:
        ray.shutdown()
        stop_jack(jack)

    def mean(key: str, on: bool) -> float | None:
        values = [r[key] for r in rounds if r["console"] is on and r[key] is not None]
        return round(sum(values) / len(values), 4) if values else None

    off_cpu, on_cpu = mean("cpu_cores", False), mean("cpu_cores", True)
    figures = {
        "rounds": rounds,
        "cpu_cores_without": off_cpu,
        "cpu_cores_with": on_cpu,
        "added_cpu_percent_of_one_core": None if off_cpu is None else round(100 * (on_cpu - off_cpu), 2),
        "reaction_p95_ms_without": mean("reaction_p95_ms", False),
        "reaction_p95_ms_with": mean("reaction_p95_ms", True),
        "pipeline_p99_ms_without": mean("pipeline_p99_ms", False),
        "pipeline_p99_ms_with": mean("pipeline_p99_ms", True),
        "frames_per_s": None
        if mean("frames_sent", True) is None
        else round(mean("frames_sent", True) / args.seconds, 1),
    }
    goals = [
        goal(
            "CPU the console adds (one page connected)",
            figures["added_cpu_percent_of_one_core"],
            "<=",
            5,
            unit="% of a core",
        ),
        goal("reaction p95 with the console", figures["reaction_p95_ms_with"], "report", unit="ms"),
        goal("reaction p95 without it", figures["reaction_p95_ms_without"], "report", unit="ms"),
    ]
    figures["page_connected"] = not args.no_page
    return emit("console_no_page" if args.no_page else "console", figures, goals)


if __name__ == "__main__":
    sys.exit(main())
