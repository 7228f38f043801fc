"""The trainer's Ray fan-out: file analysis as tasks over batches of files, wav2vec in a pool of model-holding actors.

Only scheduling lives here; the work is :func:`services.trainer.pipeline.analyze_batch`. Results are gathered
as they finish but merged in corpus order (the driver sorts by file index), so the model does not depend on
the number of workers or nodes. A worker writes the features to the cache folder it sees and returns them;
the driver writes them to its own cache when that entry is missing (a cluster without a shared disk) and
keeps only the small per-file summary, so a large corpus streams to disk.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional

import ray

from shared.config import MusicHalConfig
from shared.errors import ParameterError
from services.ray_support import current_node_id, set_torch_threads
from services.trainer.pipeline import FeatureCache, FileOutcome, analyze_batch, make_perception

__all__ = ["ensure_ray", "cluster_cpus", "ray_analyze_many"]

_PERCEPTIONS: dict[str, Any] = {}  # per worker process: the perception for a config (cheap for traditional)


def ensure_ray(*, address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Start (or join) Ray unless it is already up; returns True when this call started it (shut it down later)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        from shared.cluster_security import require_token_auth

        require_token_auth(address)
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        from services.ray_support import loopback_only

        with loopback_only():  # listen on 127.0.0.1 only (see services.ray_support.loopback_only)
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    return True


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@ray.remote(num_cpus=1)
def _analyze_task(items: list[tuple[int, str, str]], config: MusicHalConfig, cache_dir: Optional[str]) -> list[FileOutcome]:
    set_torch_threads(1)
    key = repr(config)
    perception = _PERCEPTIONS.get(key)
    if perception is None:
        perception = _PERCEPTIONS[key] = make_perception(config, torch_threads=1)
    return analyze_batch(items, config=config, perception=perception, cache_dir=cache_dir, node=current_node_id())


@ray.remote
class _EncoderWorker:
    """Keeps one wav2vec model loaded and analyses whole files (decode, segment, batched windows)."""

    def __init__(self, config: MusicHalConfig, torch_threads: int) -> None:
        set_torch_threads(torch_threads)
        self.config = config
        self.perception = make_perception(config, torch_threads=torch_threads)
        self.node = current_node_id()

    def analyze(self, items: list[tuple[int, str, str]], cache_dir: Optional[str]) -> list[FileOutcome]:
        return analyze_batch(items, config=self.config, perception=self.perception, cache_dir=cache_dir, node=self.node)


def _batches(items: list[tuple[int, str, str]], workers: int, batch_files: Optional[int]) -> list[list[tuple[int, str, str]]]:
    size = batch_files or max(1, min(8, math.ceil(len(items) / (4 * workers))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def ray_analyze_many(items: list[tuple[int, str, str]], *, config: MusicHalConfig, cache_dir: Optional[str],
                     progress: Callable[[FileOutcome], None], workers: Optional[int] = None, gpu: bool = False,
                     batch_files: Optional[int] = None) -> list[FileOutcome]:
    """Analyse ``items`` on the running Ray cluster with at most ``workers`` batches in flight.

    With ``config.features.kind == "wav2vec"`` a pool of ``workers`` encoder actors (one per GPU with ``gpu``)
    does the work; otherwise stateless tasks spread over the nodes.
    """
    if not ray.is_initialized():
        raise ParameterError("Ray is not running (call ensure_ray first)")
    workers = int(workers or cluster_cpus())
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    cache = FeatureCache(cache_dir) if cache_dir else None
    batches = _batches(items, workers, batch_files)
    outcomes: list[FileOutcome] = []

    def take(result: list[FileOutcome]) -> None:
        for outcome in result:
            if cache is not None and outcome.ok and outcome.views and outcome.key not in cache:
                cache.store(outcome)
            progress(outcome)
            outcomes.append(outcome.without_arrays() if cache is not None and outcome.ok else outcome)

    if config.features.kind == "wav2vec":
        if gpu:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            count, options = (max(1, gpus), {"num_gpus": 1, "num_cpus": 1}) if gpus else (workers, {"num_cpus": 1})
        else:
            count, options = workers, {"num_cpus": 1}
        count = min(count, len(batches))
        threads = 1 if not gpu else 2
        actors = [_EncoderWorker.options(**options, scheduling_strategy="SPREAD").remote(config, threads)
                  for _ in range(count)]
        try:
            queue = list(batches)
            pending: dict[Any, Any] = {}
            for actor in actors:
                if queue:
                    pending[actor.analyze.remote(queue.pop(0), cache_dir)] = actor
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(done[0])
                take(ray.get(done[0]))
                if queue:
                    pending[actor.analyze.remote(queue.pop(0), cache_dir)] = actor
        finally:
            for actor in actors:
                ray.kill(actor)
        return outcomes

    queue = list(batches)
    running: list[Any] = []
    while queue or running:
        while queue and len(running) < workers:
            running.append(_analyze_task.options(scheduling_strategy="SPREAD").remote(queue.pop(0), config, cache_dir))
        done, running = ray.wait(running, num_returns=1)
        take(ray.get(done[0]))
    return outcomes
