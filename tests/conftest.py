"""Test-session fixtures: a real JACK dummy server, /dev/shm leak check, tiny wav2vec checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JACK_NO_START_SERVER", "1")  # clients must never auto-start a server behind our back
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The tests' own JACK server (started by the ``jack_server`` fixture, in --sync mode: see shared/jack_server.py), named
# per session so a machine's own server or a parallel run is never used or disturbed. Every JACK
# client of the run (this process, Ray workers, subprocesses) inherits the name. MUSICHAL_TEST_JACK_SERVER=NAME reuses
# a running server of that name instead.
os.environ["JACK_DEFAULT_SERVER"] = os.environ.get("MUSICHAL_TEST_JACK_SERVER") or f"musichal-test-{os.getpid()}"

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from testkit.wav2vec import save_tiny_wav2vec  # noqa: E402  (testkit/: dev support shared with benchmarks/)


# ---------------------------------------------------------------------------- no silent skips
# Required dev dependencies (pyproject's [dev] extra, apt packages from scripts/setup.sh): a missing one fails the
# session (the tests still run, so the output shows everything that depends on it), it never skips tests.
def _module_present(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _missing_dev_dependencies() -> list[str]:
    import shutil

    from testkit.audio import SOUNDFONT

    checks = {
        "vmo (pip: vmo)": lambda: _module_present("vmo"),
        "librosa (pip: librosa)": lambda: _module_present("librosa"),
        "JACK-Client (pip: JACK-Client)": lambda: _module_present("jack"),
        "hypothesis (pip: hypothesis)": lambda: _module_present("hypothesis"),
        "fluidsynth (apt: fluidsynth)": lambda: shutil.which("fluidsynth") is not None,
        f"{SOUNDFONT} (apt: fluid-soundfont-gm)": SOUNDFONT.is_file,
        "jackd (apt: jackd2)": lambda: shutil.which("jackd") is not None,
    }
    return [name for name, present in checks.items() if not present()]


# A skip is allowed only where the platform itself lacks the feature (the test says so with a marker):
# ``netns`` (needs root and ip netns) and ``platform_skip`` (e.g. a CPU-only check on a machine with a GPU).
ALLOWED_SKIP_MARKERS = ("netns", "platform_skip")
_forbidden_skips: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        if not any(item.get_closest_marker(name) for name in ALLOWED_SKIP_MARKERS):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            _forbidden_skips.append(f"{item.nodeid}: {reason}")


def pytest_collectreport(report):
    if report.skipped:  # a module-level skip (e.g. importorskip) would hide a whole file
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _forbidden_skips.append(f"{report.nodeid} (whole module): {reason}")


def pytest_terminal_summary(terminalreporter):
    missing = _missing_dev_dependencies()
    if missing:
        terminalreporter.section("missing required dev dependencies", sep="=", red=True)
        for name in missing:
            terminalreporter.line(f"missing: {name} — run `make test` (scripts/setup.sh installs it)", red=True)
    if _forbidden_skips:
        terminalreporter.section("required tests skipped (a failure)", sep="=", red=True)
        for line in _forbidden_skips:
            terminalreporter.line(f"SKIPPED {line}", red=True)


def pytest_sessionfinish(session, exitstatus):
    if (_forbidden_skips or _missing_dev_dependencies()) and session.exitstatus == 0:
        session.exitstatus = 1


class JackServer:
    """Handle on the session's JACK server (started here or already running)."""

    def __init__(self, process: subprocess.Popen | None) -> None:
        self.process = process
        self.sample_rate_hz = 48000
        self.period_frames = 256

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def ports(self) -> list[str]:
        out = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def jack_server():
    """The session's JACK dummy server (``JACK_DEFAULT_SERVER``): started here in --sync mode and stopped after,
    or reused when one of that name runs (MUSICHAL_TEST_JACK_SERVER)."""
    from shared.errors import DeviceError
    from shared.jack_server import start_dummy_jack, stop_jack

    log = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"musichal_jackd_{os.getpid()}.log")
    try:
        process = start_dummy_jack(log_path=log, sync=True)
    except DeviceError as error:
        pytest.fail(f"{error} (run `make test`, which installs jackd2)")
    try:
        yield JackServer(process)
    finally:
        stop_jack(process)
        if process is not None:  # jackd leaves its socket and semaphore files named after the server: ours, per session
            import glob

            name = os.environ["JACK_DEFAULT_SERVER"]
            for leftover in glob.glob(f"/dev/shm/jack_{name}_*") + glob.glob(f"/dev/shm/jack_sem.*_{name}_*"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass


def _creator_alive_elsewhere(name: str) -> bool:
    """True when the segment's creator (pid in its name) is another live process — e.g. a parallel test run."""
    parts = name[len("musichal_ring_") :].split("_")
    pid_text = parts[1] if parts and parts[0] == "msg" and len(parts) > 1 else parts[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _shm_entries() -> set[str]:
    try:
        return {name for name in os.listdir("/dev/shm") if name.startswith("musichal_")}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def no_shm_leak():
    """Fail the session if a test left a MusicHal shared-memory segment behind."""
    before = _shm_entries()
    yield
    leaked = {name for name in _shm_entries() - before if not _creator_alive_elsewhere(name)}
    for name in leaked:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass
    assert not leaked, f"tests leaked shared-memory segments: {sorted(leaked)}"


@pytest.fixture(scope="session")
def tiny_wav2vec_dir(tmp_path_factory) -> Path:
    """A tiny random Wav2Vec2 (group-norm feature encoder, like wav2vec2-base) saved with save_pretrained."""
    return save_tiny_wav2vec(tmp_path_factory.mktemp("tiny_w2v_group"), group_norm=True)


@pytest.fixture(scope="session")
def tiny_wav2vec_layer_norm_dir(tmp_path_factory) -> Path:
    """A tiny random Wav2Vec2 with layer-norm feature encoder (like wav2vec2-large-robust)."""
    return save_tiny_wav2vec(tmp_path_factory.mktemp("tiny_w2v_layer"), group_norm=False)


def _local_ray():
    """A local Ray instance (2 CPUs, no dashboard), shut down after."""
    import ray

    from services.ray_support import start_local_ray

    start_local_ray(2)  # as the stack and the trainer start theirs (127.0.0.1, without Ray's unused processes)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def ray_local():
    """A local Ray instance for one test (2 CPUs, no dashboard), shut down after."""
    yield from _local_ray()


@pytest.fixture(scope="module")
def ray_module():
    """One local Ray instance for a whole test module (the CLI and stacks in it reuse it)."""
    yield from _local_ray()
