"""Two Ray nodes on this machine: the encoder placed on node 2 by a custom resource, and the encoder killed mid-run.

Both nodes share /dev/shm here, so the encoder decides local vs remote by node id (not by whether it can attach the
rings); on node 2 it must receive windows by value from the oracle and stamp its Percepts with node 2's id.
"""

from __future__ import annotations

import os

import pytest

from shared.config import MusicHalConfig
from testkit.audio import random_note_clip
from testkit.midi import ReceiverModel, TimedJackReader, hung_note_problems, scheduled_notes, stop_stats_problems
from testkit.waiting import actor_pid, restarted_pid, stage_counter, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """~10 s of short piano notes every 150 ms over a few pitches (played in a loop by the tests)."""
    path = tmp_path_factory.mktemp("cluster_clip") / "clip.wav"
    return random_note_clip(path, seed=7, pitches=[55, 60, 62, 64, 67, 69, 72], count=64, ioi_s=0.15, note_s=0.12)


@pytest.fixture(scope="module")
def two_nodes():
    """Head (2 CPUs) + node 2 (1 CPU, resource ``encoder``) as separate raylets on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        node2 = cluster.add_node(num_cpus=1, resources={"encoder": 1})
        cluster.wait_for_nodes()
        yield cluster, cluster.head_node.node_id, node2.node_id
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def make_stack(cluster, clip, port: str, *, remote: bool, session_log):
    from services.stack import LiveStack

    overrides = {
        "cluster.address": cluster.address,
        "midi.api": "jack",
        "midi.port": port,
        "midi.profile": "gm-safe",
        "generation.density": 4.0,
        "generation.seed": 5,
    }
    if remote:
        overrides["cluster.encoder_resource"] = "encoder"
    return LiveStack(
        MusicHalConfig().with_overrides(overrides), input_file=str(clip), loop=True, session_log=str(session_log)
    )


def encoder_lost(stack) -> bool:
    """The oracle's view (False while the oracle does not answer stats in time)."""
    return stack.stats().get("oracle", {}).get("encoder_lost") is True


def note_on_count(reader: TimedJackReader) -> int:
    return ReceiverModel().feed_all(reader.wait_for(0, timeout_s=0)).note_ons


def test_encoder_on_node_two_percepts_stamped_notes_out_clean_stop(jack_server, two_nodes, clip, tmp_path):
    import ray

    cluster, head_id, node2_id = two_nodes
    reader = TimedJackReader()
    session = tmp_path / "session.jsonl"
    stack = make_stack(cluster, clip, reader.open_virtual("in"), remote=True, session_log=session)
    rings = []
    try:
        stack.start()
        rings = [ring.name for ring in stack.rings.values()]
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert {head_id, node2_id} <= alive
        assert stack.driver_node == head_id
        assert stack.encoder_info["node_id"] == node2_id and stack.encoder_info["local"] is False
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "percepts") >= 10, timeout_s=40), stack.stats()
        assert reader.wait_for(1, timeout_s=30), "no MIDI from the stack"
        stats = stack.stats()
        # Percepts carry the node that computed them: node 2, not the driver's node
        assert stats["oracle"]["encoder_node"] == node2_id
        assert stats["encoder"]["node_id"] == node2_id and stats["encoder"]["local"] is False
        assert stage_counter(stats, "encoder", "remote_calls") >= stage_counter(stats, "oracle", "percepts") > 0
        assert stats["capture"]["node_id"] == stats["oracle"]["node_id"] == stats["midi_out"]["node_id"] == head_id
        assert [stats[name].get("error") for name in ("capture", "encoder", "oracle", "midi_out")] == [None] * 4
        final = stack.stop(graceful=True, drain_s=5.0)
    finally:
        stack.stop(graceful=False)
        messages = reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()
    model = ReceiverModel().feed_all(messages)
    assert model.note_ons > 0
    # every note ended by its own note-off during play, none longer than scheduled (+ 2 s), and the drained stop left
    # none for the panic (whether its panic arrives is not judged here: under load RtMidi's JACK close can drop it,
    # see docs/architecture.md "MIDI ports")
    assert hung_note_problems(timed, scheduled=scheduled_notes(session), require_stop_panic=False) == []
    assert stop_stats_problems(final) == []
    assert stage_counter(final, "midi_out", "notes_received") >= model.note_ons
    assert not [name for name in rings if os.path.exists(f"/dev/shm/{name}")]
    assert not stack.actors and not ray.is_initialized()


@pytest.mark.parametrize("remote", [True, False], ids=["remote-encoder", "local-encoder"])
def test_killed_encoder_stack_plays_on_restarts_and_listens_again(jack_server, two_nodes, clip, remote, tmp_path):
    """The encoder's process is frozen (SIGSTOP: a stalled node) for as long as the test needs to see the stack play on
    without it, then SIGKILLed: Ray restarts it and listening resumes. Freezing first makes "played while the encoder
    was down" something the test causes, not a race against how fast Ray restarts the actor."""
    import signal

    cluster, head_id, node2_id = two_nodes
    reader = TimedJackReader()
    session = tmp_path / "session.jsonl"
    stack = make_stack(cluster, clip, reader.open_virtual("in"), remote=remote, session_log=session)
    frozen = None
    try:
        stack.start()
        assert stack.encoder_info["node_id"] == (node2_id if remote else head_id)
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "percepts") >= 5, timeout_s=40), stack.stats()
        encoder = stack.actors["encoder"]
        pid_before = actor_pid(encoder, timeout_s=10)

        os.kill(pid_before, signal.SIGSTOP)
        frozen = pid_before
        # the loss is noticed by event deadlines, and events are answered without the encoder
        assert wait_until(lambda: encoder_lost(stack), timeout_s=60), stack.stats()
        down = stack.stats()
        notes_at_loss = note_on_count(reader)
        lost_at_loss = stage_counter(down, "oracle", "notes_while_lost")
        assert stage_counter(down, "oracle", "encoder_misses") > 0
        assert (
            stage_counter(down, "oracle", "fallback_local") + stage_counter(down, "oracle", "fallback_autonomous") > 0
        )
        # the stack plays on while the encoder stays down: new notes decided while it was lost, and new note-ons
        # at the JACK port (the encoder is still frozen, so both happen while it is down)
        assert wait_until(
            lambda: stage_counter(stack.stats(), "oracle", "notes_while_lost") > lost_at_loss, timeout_s=90
        ), stack.stats()
        assert wait_until(lambda: note_on_count(reader) > notes_at_loss, timeout_s=60), "MIDI stopped with the encoder"
        assert wait_until(lambda: encoder_lost(stack), timeout_s=30), "the frozen encoder cannot have answered"

        # killed: Ray restarts it (a new process) and listening resumes: percepts from the encoder again
        os.kill(pid_before, signal.SIGKILL)
        frozen = None
        pid_after = restarted_pid(encoder, pid_before)
        assert pid_after != pid_before
        percepts_back = stage_counter(stack.stats(), "oracle", "percepts")
        assert wait_until(
            lambda: stage_counter(stack.stats(), "oracle", "percepts") > percepts_back + 3, timeout_s=60
        ), stack.stats()
        stats = stack.stats()
        assert stats["encoder"]["node_id"] == (node2_id if remote else head_id)
        assert stats["encoder"]["local"] is (not remote)
        assert stage_counter(stats, "encoder", "encoded") > 0  # counted by the restarted process
        assert wait_until(lambda: stack.stats().get("oracle", {}).get("encoder_lost") is False, timeout_s=30), (
            stack.stats()
        )
        assert stack.stats()["oracle"]["error"] is None
        final = stack.stop(graceful=True, drain_s=3.0)
    finally:
        if frozen is not None:
            try:
                os.kill(frozen, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stack.stop(graceful=False)
        messages = reader.wait_for_stop_panic(timeout_s=20)
        timed = reader.snapshot()
        reader.close()
    assert ReceiverModel().feed_all(messages).note_ons > 0
    # no hung note during play, through the fault: each ended by its own note-off within its scheduled duration (+ 2 s)
    assert hung_note_problems(timed, scheduled=scheduled_notes(session), require_stop_panic=False) == []
    assert stop_stats_problems(final) == []
