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

Goals: 16 kHz transport p50 below 48 kHz; kill → first fallback answer and reaction ≤ one event deadline (``cluster.encoder_deadline_ms``, 250 ms);
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

from shared.config import MusicHalConfig  # noqa: E402
from shared.stats import percentiles_ms  # noqa: E402
from _common import emit, goal, strip_no_save  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

CLOCK_OFFSET_S = 1_000_000
RAY_BIN = Path(sys.executable).with_name("ray")
RAY_CLI = [str(RAY_BIN)] if RAY_BIN.is_file() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=check)


def _wait(predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


class Namespace:
    """A network namespace with one veth pair and private 10.232.N.0/24 addresses; removed on exit."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        self.name, self.host_veth, self.ns_veth = f"mhb{tag}", f"mhb{tag}h", f"mhb{tag}n"
        subnet = 1 + os.getpid() % 250
        self.host_ip, self.ns_ip = f"10.232.{subnet}.1", f"10.232.{subnet}.2"

    def shape(self, rate: str) -> None:
        """Limit both directions of the link to ``rate`` (tc token bucket)."""
        for prefix in ([], ["netns", "exec", self.name, "ip"]):
            device = self.host_veth if not prefix else self.ns_veth
            cmd = ["tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"]
            if prefix:
                cmd = ["ip", "netns", "exec", self.name, *cmd]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=15)

    def __enter__(self) -> "Namespace":
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", self.ns_veth)
            _ip("link", "set", self.ns_veth, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_veth)
            _ip("link", "set", self.host_veth, "up")
            _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_veth)
            _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_veth, "up")
            _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for text in _ip("netns", "pids", self.name, check=False).stdout.split():  # only what we started in it
            if text.isdigit():
                try:
                    os.kill(int(text), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _ip("link", "del", self.host_veth, check=False)
        _ip("netns", "del", self.name, check=False)


def _auth_token() -> str:
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = Path.home() / ".ray" / "auth_token"
    return token or (path.read_text().strip() if path.is_file() else "")


def start_worker(ns: Namespace, gcs_address: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_auth_token())
    return subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "unshare", "--time", "--monotonic", str(CLOCK_OFFSET_S), "--fork",
         *RAY_CLI, "start", f"--address={gcs_address}", f"--node-ip-address={ns.ns_ip}",
         "--resources=" + json.dumps({"encoder": 1}), "--num-cpus=1", "--block", "--disable-usage-stats"],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            return
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


def tiny_wav2vec(directory: Path) -> Path:
    """A tiny random Wav2Vec2 saved with save_pretrained (safetensors): the hop, not the model, dominates."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).eval().save_pretrained(directory, safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(directory)
    return directory


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
        event = Event(event_id=i, onset_sample=i * 24_000, window_start=i * 24_000, window_end=(i + 1) * 24_000,
                      sample_rate_hz=48_000, t_detected=time.monotonic())
        t0 = time.monotonic()
        if rate == 16_000:  # what the oracle does before sending
            window = soxr.resample(window, 48_000, 16_000, quality="HQ").astype(np.float32)
        percept = ray.get(actor.encode.remote(event, window, lag_s=0.0, window_rate_hz=None if rate == 48_000 else rate),
                          timeout=30)
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
        out[f"{rate // 1000}kHz"] = {"bytes_per_event": s["bytes"], "round_trip_ms": percentiles_ms(s["round_trip"]),
                                     "encode_ms": percentiles_ms(s["encode"]), "transport_ms": percentiles_ms(s["transport"])}
    return out


def death_benchmark(ray, kills: int, workdir: Path) -> dict:
    from services.stack import LiveStack
    from tests.audio_fixtures import render_midi_notes

    rng = np.random.default_rng(3)
    clip = render_midi_notes([(int(rng.choice([57, 60, 64, 67, 69])), 0.1 + i * 0.15, 0.12, 95) for i in range(64)],
                             workdir / "clip.wav")
    config = MusicHalConfig().with_overrides({"cluster.encoder_resource": "encoder", "midi.api": "jack",
                                              "generation.seed": 1})
    stack = LiveStack(config, input_file=str(clip), loop=True).start()
    samples = []
    try:
        def remote() -> dict:
            return stack.stats(timeout_s=2.0).get("oracle", {}).get("remote_encoder") or {}

        for k in range(kills):
            finished = remote().get("finished", 0)
            assert _wait(lambda: remote().get("up") and remote().get("finished", 0) >= finished + 10, 120), \
                (remote(), stack.stats(timeout_s=2.0).get("encoder"))
            pid = ray.get(stack.actors["encoder"].ready.remote(), timeout=60)["pid"]
            ups = remote().get("ups", 0)
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            assert _wait(lambda: any(t >= t_kill for t, _, _ in remote().get("recent_fallbacks", [])), 60), remote()
            t_answer, t_detected, how = min((f for f in remote()["recent_fallbacks"] if f[0] >= t_kill), key=lambda f: f[0])
            samples.append({"kill_to_first_fallback_ms": round((t_answer - t_kill) * 1000, 2),
                            "reaction_ms": round((t_answer - max(t_kill, t_detected)) * 1000, 2), "answered": how})
            assert _wait(lambda: remote().get("ups", 0) > ups, 120), (remote(), stack.stats(timeout_s=2.0).get("encoder"))
        final = stack.stats(timeout_s=2.0)
    finally:
        stack.stop(graceful=False)
    reactions = [s["reaction_ms"] for s in samples]
    return {"kills": samples, "reaction_ms_max": max(reactions), "reaction_ms_median": float(np.median(reactions)),
            "misses": final["oracle"]["counters"]["encoder_misses"], "answered_while_down": final["oracle"]["counters"]["answered_while_down"],
            "deadline_ceiling_ms": config.cluster.encoder_deadline_ms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="remote_encoder", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="encode calls per payload rate")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", default="100mbit", help="shape the veth link to this rate (tc tbf); 0: unshaped")
    parser.add_argument("--output", default=None, help="also write the JSON here (it is always saved to "
                        "benchmarks/results/remote_encoder.json unless --no-save)")
    args = parser.parse_args(strip_no_save(argv))
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        print("remote_encoder: error: needs root, iproute2 `ip` and util-linux `unshare` (network + time namespaces)",
              file=sys.stderr)
        return 2
    import ray

    result: dict = {"clock_offset_s": CLOCK_OFFSET_S, "link_rate": args.rate or "unshaped veth",
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="musichal_remote_bench_") as tmp, Namespace() as ns:
        workdir = Path(tmp)
        worker = None
        if args.rate not in ("", "0"):
            ns.shape(args.rate)
        try:
            ray.init(address="local", _node_ip_address=ns.host_ip, num_cpus=2, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            worker = start_worker(ns, ray.get_runtime_context().gcs_address, workdir / "worker.log")
            if not _wait(lambda: any(n["Alive"] and n["NodeManagerAddress"] == ns.ns_ip for n in ray.nodes()), 120, 0.5):
                print(f"remote_encoder: error: worker did not join: {(workdir / 'worker.log').read_text()[-500:]}",
                      file=sys.stderr)
                return 2
            result["payload"] = payload_benchmark(ray, tiny_wav2vec(workdir / "tiny_w2v"), args.calls)
            result["death"] = death_benchmark(ray, args.kills, workdir)
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if worker is not None:
                stop_worker(worker)
    payload, death = result["payload"], result["death"]
    p48, p16 = payload["48kHz"]["transport_ms"]["p50"], payload["16kHz"]["transport_ms"]["p50"]
    reaction, ceiling = death["reaction_ms_max"], death["deadline_ceiling_ms"]
    result["stretch_reaction_ms_max_le"] = 20.0
    result["stretch_met"] = bool(reaction <= 20.0)
    goals = []
    for rate in ("48kHz", "16kHz"):
        rt = payload[rate]["round_trip_ms"]
        goals += [goal(f"round trip, {rate} payload, p50", rt["p50"], "report", unit="ms",
                       note=f"{args.calls} calls, link {result['link_rate']}"),
                  goal(f"round trip, {rate} payload, p99", rt["p99"], "report", unit="ms"),
                  goal(f"bytes per event, {rate} payload", payload[rate]["bytes_per_event"], "report", unit="B")]
    goals += [
        goal("transport p50 (round trip − encode), 16 kHz over 48 kHz", p16 / p48 if p48 else None, "<", 1.0, unit="x",
             note=f"{p16:.3f} vs {p48:.3f} ms"),
        goal("encoder killed → first fallback answer, max", max(k["kill_to_first_fallback_ms"] for k in death["kills"]),
             "<=", ceiling, unit="ms", note=f"{len(death['kills'])} kills; includes waiting for the next onset"),
        goal("encoder killed → first fallback answer, the stack's own reaction, max", reaction, "<=", ceiling,
             unit="ms", note="one event deadline (cluster.encoder_deadline_ms)"),
        goal("the same reaction against the stretch target ≤ 20 ms", reaction, "report", unit="ms",
             note="stretch " + ("met" if result["stretch_met"] else "not met")),
        goal("events answered while the encoder was down", death["answered_while_down"], "report"),
    ]
    notes = ("A Ray worker node in its own network namespace (veth, shaped with tc tbf to the link rate) and its own "
             f"time namespace (CLOCK_MONOTONIC + {CLOCK_OFFSET_S:,} s), so every figure is taken on the head's clock. "
             "Payload: the same tiny random wav2vec encoder fed the same 500 ms windows, 48 kHz and 16 kHz calls "
             "interleaved (the 16 kHz round trip includes the head's resampling). Death: a live stack whose encoder "
             "process is SIGKILLed; reaction = from the later of the kill and the event's detection to its fallback "
             "answer (the stack's own time); kill → first fallback also includes waiting for the next onset "
             "(notes every 150 ms).")
    code = emit("remote_encoder", result, goals, notes=notes)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=str))
    return code

if __name__ == "__main__":
    sys.exit(main())
