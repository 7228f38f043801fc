"""Two Ray nodes on this machine: the encoder placed on node 2 by a custom resource, and the encoder killed mid-run.

Both nodes share /dev/shm here, so the encoder decides local vs remote by node id (not by whether it can attach the
rings); on node 2 it must receive windows by value from the oracle and stamp its Percepts with node 2's id.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from shared.config import MusicHalConfig
from tests.audio_fixtures import render_midi_notes
from tests.midi_out.helpers import JackReader, ReceiverModel
from tests.waiting import actor_pid, restarted_pid, stage_counter, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.jack, pytest.mark.slow]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """~10 s of short piano notes every 150 ms over a few pitches (played in a loop by the tests)."""
    rng = np.random.default_rng(7)
    notes = [(int(rng.choice([55, 60, 62, 64, 67, 69, 72])), 0.1 + i * 0.15, 0.12, 95) for i in range(64)]
    return render_midi_notes(notes, tmp_path_factory.mktemp("cluster_clip") / "clip.wav")


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


def make_stack(cluster, clip, port: str, *, remote: bool):
    from launch import LiveStack

    overrides = {"cluster.address": cluster.address, "midi.api": "jack", "midi.port": port,
                 "midi.profile": "gm-safe", "generation.density": 4.0, "generation.seed": 5}
    if remote:
        overrides["cluster.encoder_resource"] = "encoder"
    return LiveStack(MusicHalConfig().with_overrides(overrides), input_file=str(clip), loop=True)


def note_on_count(reader: JackReader) -> int:
    return ReceiverModel().feed_all(reader.wait_for(0, timeout_s=0)).note_ons


def test_encoder_on_node_two_percepts_stamped_notes_out_clean_stop(jack_server, two_nodes, clip):
    import ray

    cluster, head_id, node2_id = two_nodes
    reader = JackReader()
    stack = make_stack(cluster, clip, reader.open_virtual("in"), remote=True)
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
        messages = reader.wait_for(0, timeout_s=0)
        reader.close()
    model = ReceiverModel().feed_all(messages)
    assert model.note_ons > 0
    assert model.on == set(), f"notes left sounding after stop: {model.on}"
    assert stage_counter(final, "midi_out", "notes_received") >= model.note_ons
    assert not [name for name in rings if os.path.exists(f"/dev/shm/{name}")]
    assert not stack.actors and not ray.is_initialized()


@pytest.mark.parametrize("remote", [True, False], ids=["remote-encoder", "local-encoder"])
def test_killed_encoder_stack_plays_on_restarts_and_listens_again(jack_server, two_nodes, clip, remote):
    import ray

    cluster, head_id, node2_id = two_nodes
    reader = JackReader()
    stack = make_stack(cluster, clip, reader.open_virtual("in"), remote=remote)
    try:
        stack.start()
        assert stack.encoder_info["node_id"] == (node2_id if remote else head_id)
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "percepts") >= 5, timeout_s=40), stack.stats()
        encoder = stack.actors["encoder"]
        pid_before = actor_pid(encoder, timeout_s=10)

        ray.kill(encoder, no_restart=False)
        # the loss is noticed by event deadlines, and events are answered without the encoder
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "encoder_misses") > 0, timeout_s=30), stack.stats()
        down = stack.stats()
        notes_at_loss = note_on_count(reader)
        assert stage_counter(down, "oracle", "fallback_local") + stage_counter(down, "oracle", "fallback_autonomous") > 0
        # MIDI keeps flowing: more note-ons arrive at the JACK port after the loss was noticed
        assert wait_until(lambda: note_on_count(reader) > notes_at_loss, timeout_s=30), "MIDI stopped with the encoder"

        # the encoder comes back (a new process) and listening resumes: percepts from the encoder again
        pid_after = restarted_pid(encoder, pid_before)
        assert pid_after != pid_before
        percepts_back = stage_counter(stack.stats(), "oracle", "percepts")
        assert wait_until(lambda: stage_counter(stack.stats(), "oracle", "percepts") > percepts_back + 3, timeout_s=40), \
            stack.stats()
        stats = stack.stats()
        assert stats["encoder"]["node_id"] == (node2_id if remote else head_id)
        assert stats["encoder"]["local"] is (not remote)
        assert stage_counter(stats, "encoder", "encoded") > 0  # counted by the restarted process
        assert wait_until(lambda: not stack.stats()["oracle"]["encoder_lost"], timeout_s=20)
        assert stage_counter(stack.stats(), "oracle", "notes_while_lost") > 0  # notes were played while it was down
        assert stack.stats()["oracle"]["error"] is None
        stack.stop(graceful=True, drain_s=3.0)
    finally:
        stack.stop(graceful=False)
        messages = reader.wait_for(0, timeout_s=0)
        reader.close()
    model = ReceiverModel().feed_all(messages)
    assert model.on == set(), f"hung notes after the fault and stop: {model.on}"
