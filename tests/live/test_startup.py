"""Start-up: ``--duration`` counts from listening, the input starts when the stack listens, and the actors that do not
run torch never import it."""

from __future__ import annotations

import json
import sys

import psutil
import pytest

from testkit.audio import render_midi_notes

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]
SLOW_START_S = 8.0  # longer than --duration itself: a duration counted from the command would hear nothing


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    notes = [(60 + 4 * (i % 3), 0.1 + 0.25 * i, 0.2, 90) for i in range(40)]  # an onset every 0.25 s for 10 s
    return render_midi_notes(notes, tmp_path_factory.mktemp("clip") / "clip.wav")


def test_duration_counts_from_listening_and_no_input_is_lost_to_start_up(
    jack_server, ray_local, clip, tmp_path, monkeypatch, capsys
):
    import launch
    from services.stack import LiveStack

    original = LiveStack._start_controls

    def slow_start_up(self):  # a slow start-up after every actor exists and before the stack listens
        import threading

        threading.Event().wait(SLOW_START_S)
        return original(self)

    monkeypatch.setattr(LiveStack, "_start_controls", slow_start_up)
    stats_file = tmp_path / "stats.json"
    code = launch.main(
        ["--input-file", str(clip), "--duration", "5", "--midi-api", "jack", "--stats", "--stats-file", str(stats_file)]
    )
    output = capsys.readouterr().out
    assert code == 0, output
    assert "listening after" in output and "--duration 5 s counts from now" in output
    final = json.loads(stats_file.read_text())
    capture = final["capture"]
    # the input started when the stack listened: its first onset (0.1 s into the file) is heard …
    assert capture["first_onset_s"] is not None and capture["first_onset_s"] <= 0.5
    # … and at least 4 of the 5 seconds asked for were heard, however long the start-up took
    assert capture["last_onset_s"] - capture["first_onset_s"] >= 3.5 and capture["last_onset_s"] >= 4.0
    assert capture["counters"]["events"] >= 15  # an onset every 0.25 s: not one event and out
    assert final["startup"]["phases_s"]["controls"] >= SLOW_START_S  # the start-up was slow indeed
    assert final["startup"]["phases_s"]["total"] >= SLOW_START_S


def test_actors_without_torch_never_import_torch_and_inherit_their_environment(jack_server, clip):
    import os

    import ray

    from services.ray_support import ACTOR_ENV_VARS
    from services.stack import LiveStack
    from shared.config import MusicHalConfig

    heavy = ("torch", "transformers", "onnxruntime")
    before = {name: os.environ.get(name) for name in ACTOR_ENV_VARS}
    stack = LiveStack(MusicHalConfig().with_overrides({"midi.api": "jack"}), input_file=str(clip))
    try:
        stack.start()  # starts its own Ray, as the command does
        assert stack.started_ray and stack.env_inherited
        tree = [p.cmdline() for p in psutil.Process().children(recursive=True) if p.is_running()]
        seen = {
            name: ray.get(
                actor.__ray_call__.remote(
                    lambda self: (
                        [m for m in heavy if m in sys.modules],
                        {k: os.environ.get(k) for k in ACTOR_ENV_VARS},
                    )
                ),
                timeout=30,
            )
            for name, actor in stack.actors.items()
        }
    finally:
        stack.stop(graceful=False)
    # traditional features with slice notes (the defaults): no actor needs torch or transformers, and only the encoder
    # loads the transcription model (the oracle's own local analyser does not transcribe: it is on the reaction path)
    assert {name: loaded for name, (loaded, _env) in seen.items()} == {
        "capture": [],
        "encoder": ["onnxruntime"],
        "oracle": [],
        "midi_out": [],
    }, seen
    # a lean Ray head: none of the processes the stack never uses (each costs ~1 s of CPU while the stack starts)
    lines = [" ".join(cmd) for cmd in tree]
    assert any("gcs_server" in line for line in lines) and any("raylet" in line for line in lines), lines
    unused = ("autoscaler/_private/monitor.py", "_private/log_monitor.py", "dashboard/dashboard.py")
    assert [line for line in lines if any(name in line for name in unused)] == []
    from ray._private.parameter import RayParams

    assert RayParams.__init__.__qualname__ == "RayParams.__init__"  # Ray's own again after the init
    # every actor has the actors' environment without a runtime_env of its own; the driver's is unchanged
    assert all(env == ACTOR_ENV_VARS for _loaded, env in seen.values()), seen
    assert {name: os.environ.get(name) for name in ACTOR_ENV_VARS} == before


def test_a_local_ray_is_used_as_soon_as_its_raylet_registers():
    """Ray's own wait for its new node retries once a second; ``start_local_ray`` asks the GCS's node table first,
    so Ray's call finds the node at once. Checked on this Ray: the node was seen registered before Ray's call, and
    Ray's function is itself again afterwards."""
    import ray
    from ray._private import services as ray_services

    from services.ray_support import start_local_ray

    if ray.is_initialized():
        ray.shutdown()
    rays_own = ray_services.get_node
    adjusted = start_local_ray(1)
    try:
        assert adjusted == {"lean": True, "node_listed": True}
        assert ray_services.get_node is rays_own
        assert ray.get(ray.remote(lambda: 7).remote(), timeout=60) == 7  # the Ray it started works
    finally:
        ray.shutdown()
