"""A two-node Ray cluster trains the same bytes as one machine and records which node did each file."""
from __future__ import annotations

import json

import pytest

from shared.config import MusicHalConfig
from services.trainer.cli import main
from services.trainer.pipeline import discover_audio_files, stats_path_for, train


@pytest.mark.ray
def test_two_node_cluster_uses_both_nodes_and_writes_the_same_bytes(corpus_dir, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        output = tmp_path / "cluster" / "model.json"
        assert main(["--dir", str(corpus_dir), "--output", str(output), "--vocabulary-size", "8", "--quiet",
                     "--ray-address", cluster.address, "--workers", "2"]) == 0
        assert not ray.is_initialized()  # the CLI joined the cluster and left it again
    finally:
        cluster.shutdown()
    stats = json.loads(stats_path_for(output).read_text())
    paths = discover_audio_files(dirs=[corpus_dir])
    nodes = [f["node"] for f in stats["files"]]
    assert len(nodes) == len(paths) and all(nodes)
    assert len(set(nodes)) == 2 and sum(stats["files_per_node"].values()) == len(paths)
    single = tmp_path / "single" / "model.json"
    train(paths, config=MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 8}), output=single)
    assert output.read_bytes() == single.read_bytes()
    assert output.with_suffix(".safetensors").read_bytes() == single.with_suffix(".safetensors").read_bytes()
