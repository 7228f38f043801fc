"""A two-node Ray cluster trains the same bytes as one machine and records which node did each file."""

from __future__ import annotations

import json

import pytest

from services.model_file import load_musichal_model
from services.trainer.cli import main
from services.trainer.discovery import discover_audio_files
from services.trainer.pipeline import stats_path_for, train
from shared.config import MusicHalConfig
from shared.errors import ParameterError


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
        assert (
            main(
                [
                    "--dir",
                    str(corpus_dir),
                    "--output",
                    str(output),
                    "--vocabulary-size",
                    "8",
                    "--quiet",
                    "--ray-address",
                    cluster.address,
                    "--workers",
                    "2",
                ]
            )
            == 0
        )
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


# ---------------------------------------------------------------------------------------------- faults
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

import soundfile as sf  # noqa: E402

from testkit.netns import auth_token, stop_process_group  # noqa: E402
from testkit.waiting import wait_until  # noqa: E402
from tests.trainer.conftest import SR, note_sequence  # noqa: E402

CONFIG = MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 8})


@pytest.fixture
def private_corpus(tmp_path):
    """Three files in the open and one in ``private/``, which the second node will not see."""
    root = tmp_path / "corpus"
    (root / "private").mkdir(parents=True)
    for index in range(3):
        sf.write(root / f"take{index}.wav", note_sequence(index, 3.0), SR)
    sf.write(root / "private" / "secret.wav", note_sequence(9, 3.0), SR)
    return root


@pytest.mark.ray
@pytest.mark.slow
def test_a_node_that_cannot_see_a_file_fails_the_run_unless_skip_unreadable(private_corpus, tmp_path, capsys):
    """Node 2 is ``ray start`` in its own mount namespace (``unshare --mount``) with a tmpfs over ``private/``:
    the file exists for the driver and the head but not on node 2. The head has no CPUs, so every file is
    analysed on node 2 (deterministically)."""
    import ray

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and util-linux unshare (a private mount namespace for node 2)")
    assert not ray.is_initialized()
    private = private_corpus / "private"
    log = open(tmp_path / "node2.log", "w")
    worker = None
    try:
        ray.init(
            address="local",
            num_cpus=0,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
        head = ray.get_runtime_context().get_node_id()
        env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token(), RAY_USAGE_STATS_ENABLED="0")
        script = (
            'mount -t tmpfs -o size=1m musichal-private "$0" && exec "$1" -m ray.scripts.scripts start '
            '--address="$2" --node-ip-address=127.0.0.1 --num-cpus=2 --block --disable-usage-stats'
        )
        worker = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                str(private),
                sys.executable,
                ray.get_runtime_context().gcs_address,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def node2():
            alive = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head]
            return alive[0] if alive else None

        assert wait_until(lambda: node2() is not None or worker.poll() is not None, timeout_s=120)
        assert node2() is not None, (tmp_path / "node2.log").read_text()[-2000:]
        node = node2()
        capsys.readouterr()  # Ray's own start-up notice
        output = tmp_path / "strict" / "model.json"
        assert (
            main(
                [
                    "--dir",
                    str(private_corpus),
                    "--output",
                    str(output),
                    "--vocabulary-size",
                    "8",
                    "--quiet",
                    "--workers",
                    "2",
                ]
            )
            == 1
        )
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "private/secret.wav: cannot be read on node " + node[:12] in err[0], err
        assert "--skip-unreadable" in err[0]
        assert not output.exists() and not output.with_suffix(".safetensors").exists()

        skipped = tmp_path / "skip" / "model.json"
        assert (
            main(
                [
                    "--dir",
                    str(private_corpus),
                    "--output",
                    str(skipped),
                    "--vocabulary-size",
                    "8",
                    "--quiet",
                    "--workers",
                    "2",
                    "--skip-unreadable",
                ]
            )
            == 0
        )
        stats = json.loads(stats_path_for(skipped).read_text())
        assert [(s["name"], s["node"]) for s in stats["unreadable_skipped"]] == [("private/secret.wav", node)]
        assert set(stats["files_per_node"]) == {node}
        training = load_musichal_model(skipped).meta["training"]
        assert [f["name"] for f in training["files"]] == ["take0.wav", "take1.wav", "take2.wav"]
        assert [s["name"] for s in training["skipped"]] == ["private/secret.wav"]
        assert training["skipped"][0]["reason"].startswith("unreadable (")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if worker is not None:
            stop_process_group(worker, term_wait_s=15)
        log.close()
    assert worker.poll() is not None


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_node_killed_mid_run_changes_no_byte(tmp_path):
    """The head has no CPUs; worker node A is killed (no graceful shutdown) as soon as it has finished its first
    file, with more of its work queued or running; node B joins afterwards and the run finishes there. The
    model is byte-identical to an undisturbed serial run."""
    import ray
    from ray.cluster_utils import Cluster

    from services.trainer.distributed import ray_analyze_many, ray_map

    root = tmp_path / "corpus"
    root.mkdir()
    for index in range(6):
        sf.write(root / f"take{index}.wav", note_sequence(20 + index, 3.0), SR)
    paths = discover_audio_files(dirs=[root])
    reference = tmp_path / "reference" / "model.json"
    train(paths, config=CONFIG, output=reference)

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    events: dict[str, Any] = {}
    try:
        victim = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        seen: list[str] = []

        def progress(outcome):
            seen.append(outcome.node)
            if outcome.node == victim.node_id and "killed_after" not in events:
                events["killed_after"] = len(seen)
                cluster.remove_node(victim, allow_graceful=False)
                events["replacement"] = cluster.add_node(num_cpus=1).node_id

        output = tmp_path / "disturbed" / "model.json"
        result = train(
            paths,
            config=CONFIG,
            output=output,
            progress=progress,
            analyze_many=partial(ray_analyze_many, workers=2, batch_files=1),
            map_groups=partial(ray_map, config=CONFIG, workers=2),
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert events["killed_after"] == 1  # killed mid-run: 5 files still to do
    per_node = result.stats["files_per_node"]
    assert set(per_node) == {victim.node_id, events["replacement"]} and per_node[events["replacement"]] >= 4
    assert output.read_bytes() == reference.read_bytes()
    assert output.with_suffix(".safetensors").read_bytes() == reference.with_suffix(".safetensors").read_bytes()


@pytest.mark.ray
@pytest.mark.slow
def test_a_hung_decoder_times_out_is_rescheduled_and_then_named(tmp_path, corpus_dir):
    """A named pipe with no writer blocks ``open`` forever, like a stalled network disk: each attempt runs past
    the timeout, is cancelled and rescheduled; after ``max_attempts`` the run fails naming the file, and the
    cluster is free for the next run."""
    import ray

    from services.trainer.distributed import ray_analyze_many, ray_map

    stalled = tmp_path / "stalled.wav"
    os.mkfifo(stalled)
    config = CONFIG.with_overrides({"trainer.task_timeout_s": 2.0, "trainer.max_attempts": 2})
    assert not ray.is_initialized()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        runner = {
            "analyze_many": partial(ray_analyze_many, workers=2, batch_files=1),
            "map_groups": partial(ray_map, config=config, workers=2),
        }
        with pytest.raises(ParameterError, match=r"^stalled.wav: ran past trainer.task_timeout_s \(2 s\) 2 time"):
            train([stalled], config=config, output=tmp_path / "hung" / "model.json", **runner)
        assert not (tmp_path / "hung" / "model.json").exists()
        paths = discover_audio_files(dirs=[corpus_dir])
        result = train(
            paths,
            config=config.with_overrides({"trainer.task_timeout_s": 900.0}),
            output=tmp_path / "after" / "model.json",
            **runner,
        )
        assert result.training["events"] > 0
    finally:
        ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("split", [None, True], ids=["stages-in-the-actor", "split-stages"])
def test_encoder_actors_killed_mid_run_restart_and_the_bytes_do_not_change(
    tmp_path, corpus_dir, tiny_wav2vec_dir, split
):
    import ray

    from services.trainer.distributed import ENCODER_NAME_PREFIX, ray_analyze_many, ray_map

    config = CONFIG.with_overrides(
        {"features.kind": "wav2vec", "features.hybrid": True, "wav2vec.model": str(tiny_wav2vec_dir)}
    )
    paths = discover_audio_files(dirs=[corpus_dir])
    assert not ray.is_initialized()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    killed: list[str] = []
    try:
        reference = tmp_path / "reference" / "model.json"  # undisturbed, same actors (one torch thread each)
        train(
            paths,
            config=config,
            output=reference,
            analyze_many=partial(ray_analyze_many, workers=2, batch_files=1, split_stages=split),
            map_groups=partial(ray_map, config=config, workers=2),
        )

        def progress(outcome):
            if not killed:  # after the first file: every encoder actor dies (Ray restarts them), work in flight is lost
                killed.extend(n for n in ray.util.list_named_actors() if n.startswith(ENCODER_NAME_PREFIX))
                for name in killed:
                    ray.kill(ray.get_actor(name), no_restart=False)

        output = tmp_path / "disturbed" / "model.json"
        train(
            paths,
            config=config,
            output=output,
            progress=progress,
            analyze_many=partial(ray_analyze_many, workers=2, batch_files=1, split_stages=split),
            map_groups=partial(ray_map, config=config, workers=2),
        )
    finally:
        ray.shutdown()
    assert len(killed) == 2
    assert output.read_bytes() == reference.read_bytes()
    assert output.with_suffix(".safetensors").read_bytes() == reference.with_suffix(".safetensors").read_bytes()
