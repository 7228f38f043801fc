"""A local run listens on loopback only: every socket of `musichal --input-file ... --console` and of the Ray processes
it started (gcs_server, raylets, agents, the four actors' workers, the console's server) is bound to 127.0.0.1 / ::1."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys

import psutil
import pytest

from testkit.audio import render_midi_notes
from testkit.waiting import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def stack_processes(root: psutil.Process) -> list[psutil.Process]:
    """The driver, its descendants, and every process that names the same Ray session directory."""
    procs = {root.pid: root}
    for child in root.children(recursive=True):
        procs[child.pid] = child
    sessions = set()
    for proc in list(procs.values()):
        try:
            for arg in proc.cmdline():
                if "/session_" in arg:
                    sessions.add(
                        arg[arg.index("/tmp/ray/session_") :].split("/")[3] if "/tmp/ray/session_" in arg else ""
                    )
        except (psutil.Error, ValueError, IndexError):
            pass
    sessions.discard("")
    for proc in psutil.process_iter():
        try:
            if any(s in " ".join(proc.cmdline()) for s in sessions):
                procs[proc.pid] = proc
        except psutil.Error:
            pass
    return list(procs.values())


def listening(procs: list[psutil.Process]) -> list[tuple[int, str, str, int]]:
    out = []
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                tcp_listen = conn.status == psutil.CONN_LISTEN
                udp_bound = conn.type == 2 and conn.laddr and not conn.raddr  # SOCK_DGRAM, unconnected
                if tcp_listen or udp_bound:
                    out.append((proc.pid, proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            pass
    return out


def test_local_run_listens_on_loopback_only(jack_server, tmp_path):
    clip = render_midi_notes([(60 + (i % 5), 0.1 + 0.2 * i, 0.15, 90) for i in range(40)], tmp_path / "clip.wav")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    config = tmp_path / "musichal.toml"
    config.write_text(f'[console]\nport = 0\ntoken_file = "{tmp_path / "token"}"\n')
    log = open(tmp_path / "musichal.log", "w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launch",
            "--input-file",
            str(clip),
            "--loop",
            "--duration",
            "120",
            "--midi-api",
            "jack",
            "--console",
            "--config",
            str(config),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def running() -> bool:
            log.seek(0)
            return "musichal: running" in log.read() or process.poll() is not None

        assert wait_until(running, timeout_s=180), "the stack did not report running"
        assert process.poll() is None, open(tmp_path / "musichal.log").read()[-2000:]
        procs = stack_processes(psutil.Process(process.pid))
        names = {p.name() for p in procs}
        sockets = listening(procs)
        assert any(n.startswith("gcs_server") for n in names) and any(n.startswith("raylet") for n in names), names
        assert len(sockets) >= 6, sockets  # gcs, raylet, agents, actor workers: the test really saw them
        exposed = [s for s in sockets if not _is_loopback(s[2])]
        assert exposed == [], f"listening beyond loopback: {exposed}"
        log.seek(0)
        printed = [line for line in log.read().splitlines() if line.startswith("musichal: console on http://")]
        assert len(printed) == 1 and "/?token=" in printed[0], printed
        console_port = int(printed[0].split("http://127.0.0.1:")[1].split("/")[0])
        assert [(ip, port) for pid, _, ip, port in sockets if pid == process.pid and port == console_port] == [
            ("127.0.0.1", console_port)
        ]  # the console: the driver's one new listener, on loopback
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()


def test_gpu_where_the_encoders_node_has_none_is_a_one_line_error_before_running(
    jack_server, tiny_wav2vec_dir, tmp_path
):
    clip = render_midi_notes([(60, 0.1, 0.3, 90)], tmp_path / "clip.wav")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", CUDA_VISIBLE_DEVICES="")  # no GPU for Ray to find
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch",
            "--input-file",
            str(clip),
            "--duration",
            "5",
            "--midi-api",
            "jack",
            "--wav2vec",
            "--wav2vec-model",
            str(tiny_wav2vec_dir),
            "--gpu",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("musichal: error:")]
    assert len(errors) == 1 and "--gpu" in errors[0] and "--gpu-fallback" in errors[0], result.stderr
    assert "musichal: running" not in result.stdout


def test_trainer_local_ray_listens_on_loopback_only():
    import ray

    from services.trainer.distributed import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    started = ensure_ray(num_cpus=1)
    try:
        assert started
        sockets = listening(stack_processes(psutil.Process()))
        assert len(sockets) >= 4, sockets
        exposed = [s for s in sockets if not _is_loopback(s[2])]
        assert exposed == [], f"listening beyond loopback: {exposed}"
        assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # restored in this process
    finally:
        ray.shutdown()
