"""Remote-encoder benchmark over a real network hop: a Ray worker node in its own network namespace (veth) and its
own time namespace (CLOCK_MONOTONIC + 10^6 s), joined with the head's token. Needs root, ``ip`` and ``unshare``.
Prints ONE JSON object (``benchmarks/_common.emit``) and saves it to benchmarks/results/remote_encoder.json.

- ``--rate``: the veth link is shaped to this bandwidth both ways (``tc tbf``; default 100mbit, a venue's wired LAN;
  ``0`` = unshaped veth, memory speed, where payload size hardly matters).
- ``payload``: the same wav2vec encoder (a tiny random checkpoint, so the hop dominates) fed the same 500 ms windows,
  interleaved call by call: sent at 48 kHz (the encoder resamples) vs resampled to 16 kHz on the head (what the
  stack does for a wav2vec-only encoder). Per call: round trip send → result on the head's clock (the head's
  resampling included for 16 kHz), the encoder's own encode time (a duration on its clock) and transport =
  round trip − encode; p50/p99 and bytes per event.
- ``death``: a live stack (``--encoder-resource``; traditional features, learning live) whose encoder process is
  SIGKILLed ``--kills`` times (each time after it was heard again). Per kill: ``kill_to_first_fallback_ms`` (kill →
  the first event answered without the encoder; includes waiting for the next onset) and ``reaction_ms`` (from the
  later of the kill and that event's detection → its answer: the time the stack itself took). All on the head's clock.

Goals: 16 kHz transport p50 below 48 kHz; kill → first fallback answer and reaction ≤ one event deadline
(``cluster.encoder_deadline_ms``, 250 ms);
stretch: reaction ≤ 20 ms (shown as a figure with its verdict; it does not decide ``met``).

    sudo .venv/bin/python benchmarks/remote_encoder.py [--calls 200] [--kills 5] [--rate 100mbit] [--no-save]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("JACK_NO_START_SERVER", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)
from fixtures import random_piano_clip  # noqa: E402

from shared.config import MusicHalConfig  # noqa: E402
from shared.stats import percentiles_ms  # noqa: E402
from testkit.netns import RAY_CLI, Namespace, auth_token, stop_process_group  # noqa: E402
from testkit.waiting import wait_until  # noqa: E402
from testkit.wav2vec import save_tiny_wav2vec  # noqa: E402

CLOCK_OFFSET_S = 1_000_000


def start_worker(ns: Namespace, gcs_address: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token())
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns.name,
            "unshare",
            "--time",
            "--monotonic",
            str(CLOCK_OFFSET_S),
            "--fork",
            *RAY_CLI,
            "start",
            f"--address={gcs_address}",
            f"--node-ip-address={ns.ns_ip}",
            "--resources=" + json.dumps({"encoder": 1}),
            "--num-cpus=1",
            "--block",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def payload_benchmark(ray, checkpoint: Path, calls: int) -> dict:
    import soxr

    from services.encoder.actor import EncoderActor
    from shared.messages import Event

    config = MusicHalConfig().with_overrides({"features.kind": "wav2vec", "wav2vec.model": str(checkpoint)})
    actor = EncoderActor.options(resources={"encoder": 1}).remote(config)
    info = ray.get(actor.ready.remote(), timeout=300)
    rng = np.random.default_rng(1)
    series = {rate: {"round_trip": [], "encode": [], "transport": [], "bytes": 0} for rate in (48_000, 16_000)}
    for i in range(calls * 2 + 10):
        rate = 48_000 if i % 2 == 0 else 16_000
        window = (rng.standard_normal(24_000) * 0.1).astype(np.float32)
        event = Event(
            event_id=i,
            onset_sample=i * 24_000,
            window_start=i * 24_000,
            window_end=(i + 1) * 24_000,
            sample_rate_hz=48_000,
            t_detected=time.monotonic(),
        )
        t0 = time.monotonic()
        if rate == 16_000:  # what the oracle does before sending
            window = soxr.resample(window, 48_000, 16_000, quality="HQ").astype(np.float32)
        percept = ray.get(
            actor.encode.remote(event, window, lag_s=0.0, window_rate_hz=None if rate == 48_000 else rate), timeout=30
        )
        rtt = time.monotonic() - t0
        if i < 10:
            continue  # warm-up
        s = series[rate]
        s["round_trip"].append(rtt)
        s["encode"].append(percept.stamps["encode_s"])
        s["transport"].append(rtt - percept.stamps["encode_s"])
        s["bytes"] = int(window.nbytes)
    ray.kill(actor, no_restart=True)
    out = {"encoder_node_ip": info["node_ip"], "device": info["device"]}
    for rate, s in series.items():
        out[f"{rate // 1000}kHz"] = {
            "bytes_per_event": s["bytes"],
            "round_trip_ms": percentiles_ms(s["round_trip"]),
            "encode_ms": percentiles_ms(s["encode"]),
            "transport_ms": percentiles_ms(s["transport"]),
        }
    return out


def death_benchmark(ray, kills: int, workdir: Path) -> dict:

    clip = random_piano_clip(
        workdir / "clip.wav",
        seed=3,
        count=64,
        pitches=[57, 60, 64, 67, 69],
        start_s=0.1,
        step_s=0.15,
        duration_s=0.12,
        velocity=95,
    )
    config = MusicHalConfig().with_overrides(
        {"cluster.encoder_resource": "encoder", "midi.api": "jack", "generation.seed": 1}
    )
    from shared.jack_server import start_dummy_jack, stop_jack

    jack = start_dummy_jack(sync=True)  # the stack's MIDI goes to JACK (None: a server of that name already runs)
    try:
        return _death_runs(ray, kills, config, clip)
    finally:
        stop_jack(jack)


def _death_runs(ray, kills: int, config: MusicHalConfig, clip) -> dict:
    from services.stack import LiveStack

    stack = LiveStack(config, input_file=str(clip), loop=True).start()
    samples = []
    try:

        def remote() -> dict:
            return stack.stats(timeout_s=2.0).get("oracle", {}).get("remote_encoder") or {}

        for _k in range(kills):
            finished = remote().get("finished", 0)
            assert wait_until(
                lambda: remote().get("up") and remote().get("finished", 0) >= finished + 10, 120, poll_s=0.05
            ), (remote(), stack.stats(timeout_s=2.0).get("encoder"))
            pid = ray.get(stack.actors["encoder"].ready.remote(), timeout=60)["pid"]
            ups = remote().get("ups", 0)
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            assert wait_until(
                lambda: any(t >= t_kill for t, _, _ in remote().get("recent_fallbacks", [])), 60, poll_s=0.05
            ), remote()
            t_answer, t_detected, how = min(
                (f for f in remote()["recent_fallbacks"] if f[0] >= t_kill), key=lambda f: f[0]
            )
            samples.append(
                {
                    "kill_to_first_fallback_ms": round((t_answer - t_kill) * 1000, 2),
                    "reaction_ms": round((t_answer - max(t_kill, t_detected)) * 1000, 2),
                    "answered": how,
                }
            )
            assert wait_until(lambda: remote().get("ups", 0) > ups, 120, poll_s=0.05), (
                remote(),
                stack.stats(timeout_s=2.0).get("encoder"),
            )
        final = stack.stats(timeout_s=2.0)
    finally:
        stack.stop(graceful=False)
    reactions = [s["reaction_ms"] for s in samples]
    return {
        "kills": samples,
        "reaction_ms_max": max(reactions),
        "reaction_ms_median": float(np.median(reactions)),
        "misses": final["oracle"]["counters"]["encoder_misses"],
        "answered_while_down": final["oracle"]["counters"]["answered_while_down"],
        "deadline_ceiling_ms": config.cluster.encoder_deadline_ms,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="remote_encoder", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="encode calls per payload rate")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", default="100mbit", help="shape the veth link to this rate (tc tbf); 0: unshaped")
    parser.add_argument(
        "--output",
        default=None,
        help="also write the JSON here (it is always saved to benchmarks/results/remote_encoder.json unless --no-save)",
    )
    args = parser.parse_args(strip_no_save(argv))
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        print(
            "remote_encoder: error: needs root, iproute2 `ip` and util-linux `unshare` (network + time namespaces)",
            file=sys.stderr,
        )
        return 2
    import ray

    result: dict = {
        "clock_offset_s": CLOCK_OFFSET_S,
        "link_rate": args.rate or "unshaped veth",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="musichal_remote_bench_") as tmp, Namespace("mhb", 232) as ns:
        workdir = Path(tmp)
        worker = None
        if args.rate not in ("", "0"):
            ns.shape(args.rate)
        try:
            ray.init(
                address="local",
                _node_ip_address=ns.host_ip,
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            worker = start_worker(ns, ray.get_runtime_context().gcs_address, workdir / "worker.log")
            if not wait_until(
                lambda: any(n["Alive"] and n["NodeManagerAddress"] == ns.ns_ip for n in ray.nodes()), 120, 0.5
            ):
                print(
                    f"remote_encoder: error: worker did not join: {(workdir / 'worker.log').read_text()[-500:]}",
                    file=sys.stderr,
                )
                return 2
            result["payload"] = payload_benchmark(ray, save_tiny_wav2vec(workdir / "tiny_w2v"), args.calls)
            result["death"] = death_benchmark(ray, args.kills, workdir)
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if worker is not None:
                stop_process_group(worker)
    payload, death = result["payload"], result["death"]
    p48, p16 = payload["48kHz"]["transport_ms"]["p50"], payload["16kHz"]["transport_ms"]["p50"]
    reaction, ceiling = death["reaction_ms_max"], death["deadline_ceiling_ms"]
    result["stretch_reaction_ms_max_le"] = 20.0
    result["stretch_met"] = bool(reaction <= 20.0)
    goals = []
    for rate in ("48kHz", "16kHz"):
        rt = payload[rate]["round_trip_ms"]
        goals += [
            goal(
                f"round trip, {rate} payload, p50",
                rt["p50"],
                "report",
                unit="ms",
                note=f"{args.calls} calls, link {result['link_rate']}",
            ),
            goal(f"round trip, {rate} payload, p99", rt["p99"], "report", unit="ms"),
            goal(f"bytes per event, {rate} payload", payload[rate]["bytes_per_event"], "report", unit="B"),
        ]
    goals += [
        goal(
            "transport p50 (round trip − encode), 16 kHz over 48 kHz",
            p16 / p48 if p48 else None,
            "<",
            1.0,
            unit="x",
            note=f"{p16:.3f} vs {p48:.3f} ms",
        ),
        goal(
            "encoder killed → first fallback answer, max",
            max(k["kill_to_first_fallback_ms"] for k in death["kills"]),
            "<=",
            ceiling,
            unit="ms",
            note=f"{len(death['kills'])} kills; includes waiting for the next onset",
        ),
        goal(
            "encoder killed → first fallback answer, the stack's own reaction, max",
            reaction,
            "<=",
            ceiling,
            unit="ms",
            note="one event deadline (cluster.encoder_deadline_ms)",
        ),
        goal(
            "the same reaction against the stretch target ≤ 20 ms",
            reaction,
            "report",
            unit="ms",
            note="stretch " + ("met" if result["stretch_met"] else "not met"),
        ),
        goal("events answered while the encoder was down", death["answered_while_down"], "report"),
    ]
    notes = (
        "A Ray worker node in its own network namespace (veth, shaped with tc tbf to the link rate) and its own "
        f"time namespace (CLOCK_MONOTONIC + {CLOCK_OFFSET_S:,} s), so every figure is taken on the head's clock. "
        "Payload: the same tiny random wav2vec encoder fed the same 500 ms windows, 48 kHz and 16 kHz calls "
        "interleaved (the 16 kHz round trip includes the head's resampling). Death: a live stack whose encoder "
        "process is SIGKILLed; reaction = from the later of the kill and the event's detection to its fallback "
        "answer (the stack's own time); kill → first fallback also includes waiting for the next onset "
        "(notes every 150 ms)."
    )
    code = emit("remote_encoder", result, goals, notes=notes)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
