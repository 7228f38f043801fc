"""The trainer's Ray fan-out: file analysis as tasks over batches of files (wav2vec: a pool of model-holding actors;
on CPUs each decodes, segments and encodes its batch, with GPUs CPU tasks decode and segment and the actors encode
the windows), sampling and tokenisation as tasks over groups of shards.

Only scheduling lives here; the work is :mod:`services.trainer.pipeline` and its step modules. Workers write each
file's features as
a safetensors shard into the run's cache folder (one path every node shares on a cluster) and return small
summaries, so nothing proportional to the corpus passes through the driver. Results are gathered as they
finish but put back in corpus order, so the model does not depend on the number of workers or nodes.

Faults (:func:`services.trainer.schedule.run_units`): a unit running past ``trainer.task_timeout_s`` is
cancelled and resubmitted; a unit whose worker, actor or node was lost is resubmitted (tasks also carry Ray's
own ``max_retries``; encoder actors restart, ``max_restarts=-1``, and Ray reruns their lost calls,
``max_task_retries=3``; a hung call's actor is killed with ``no_restart=False`` so Ray restarts it and reruns it);
after ``trainer.max_attempts`` the run fails
naming the files. Shards are written atomically under content keys, so a unit that ran twice writes the
same bytes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import ray
import ray.exceptions as rex

from services.ray_support import current_node_id
from services.trainer.analysis import (
    analyze_batch,
    encode_pending,
    feature_settings,
    make_perception,
    segment_batch,
    segmentation_config,
)
from services.trainer.schedule import Retry, run_units
from services.trainer.shards import FileOutcome
from shared.config import MusicHalConfig
from shared.errors import ParameterError

__all__ = ["ensure_ray", "cluster_cpus", "ray_analyze_many", "ray_map"]

#: Encoder actors are named ``<prefix><run>-<i>`` (operators and tests can find them with
# ``ray.util.list_named_actors``).
ENCODER_NAME_PREFIX = "musichal-train-encoder-"
_PERCEPTIONS: dict[str, Any] = {}  # per worker process: the perception for a config (cheap for traditional)
#: A unit's worker, actor or node went away: run the unit again.
_LOST = (
    rex.RayActorError,
    rex.WorkerCrashedError,
    rex.NodeDiedError,
    rex.ObjectLostError,
    rex.OwnerDiedError,
    rex.TaskCancelledError,
    rex.LocalRayletDiedError,
    rex.ObjectReconstructionFailedError,
    rex.ActorUnavailableError,
)


def ensure_ray(*, address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start (or join) Ray unless it is already up; returns True when this call started it (shut it down later)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        from shared.cluster_security import require_token_auth

        require_token_auth(address)
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        from services.ray_support import start_local_ray

        start_local_ray(num_cpus or os.cpu_count() or 1)  # 127.0.0.1 only, without Ray's unused processes
    return True


#: The thread-pool settings of numpy's BLAS, OpenMP, numba and torch: a worker uses exactly the CPUs Ray gave it.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def thread_env(threads: int) -> dict[str, str]:
    """``runtime_env`` variables that pin a worker process' native thread pools to ``threads`` (set before numpy,
    numba or torch load there)."""
    return {name: str(max(1, int(threads))) for name in THREAD_VARIABLES}


def pin_threads(threads: int) -> None:
    """Pin this worker's thread pools to ``threads`` (also those already loaded: BLAS/OpenMP via threadpoolctl,
    torch's intra-op pool), so N workers keep N cores busy and no more."""
    threads = max(1, int(threads))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # scikit-learn's dependency; without it the environment variables above still apply
        pass
    import sys

    torch = sys.modules.get("torch")  # torch is only loaded (and only pinned) where the work needs it
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


_ONE_CPU = {"env_vars": thread_env(1)}


@ray.remote(num_cpus=1, max_retries=3, runtime_env=_ONE_CPU)
def _analyze_task(items: list[tuple[Any, ...]], config: MusicHalConfig, cache_dir: str | None) -> list[FileOutcome]:
    pin_threads(1)
    key = repr(config)
    perception = _PERCEPTIONS.get(key)
    if perception is None:
        perception = _PERCEPTIONS[key] = make_perception(config, torch_threads=1)
    return analyze_batch(items, config=config, perception=perception, cache_dir=cache_dir, node=current_node_id())


@ray.remote(num_cpus=1, max_retries=3, runtime_env=_ONE_CPU)
def _map_task(fn: Callable[..., Any], arguments: tuple) -> Any:
    pin_threads(1)
    return fn(*arguments)


@ray.remote(num_cpus=1, max_retries=3, num_returns=2, runtime_env=_ONE_CPU)
def _segment_task(
    items: list[tuple[Any, ...]], config: MusicHalConfig, settings: dict[str, Any], cache_dir: str
) -> tuple[list[FileOutcome], list[dict]]:
    """The wav2vec path's CPU stage: decode, segment, descriptors, traditional view; windows to the encoders."""
    pin_threads(1)
    stage_config = segmentation_config(config)
    key = repr(stage_config)
    perception = _PERCEPTIONS.get(key)
    if perception is None:
        perception = _PERCEPTIONS[key] = make_perception(stage_config, torch_threads=1)
    return segment_batch(
        items,
        config=stage_config,
        perception=perception,
        settings=settings,
        cache_dir=cache_dir,
        node=current_node_id(),
    )


@ray.remote(max_restarts=-1, max_task_retries=3)  # Ray reruns a lost call on the restarted actor
class _EncoderWorker:
    """Keeps one wav2vec model loaded. With GPUs it encodes the windows the CPU stage cut (``encode``: its node's
    CPUs decode in parallel tasks); on CPUs it runs both stages for a batch (``analyze``)."""

    def __init__(self, config: MusicHalConfig, torch_threads: int) -> None:
        pin_threads(torch_threads)
        self.config = config
        self.perception = make_perception(config, torch_threads=torch_threads)
        self.settings = feature_settings(config, self.perception)
        self.node = current_node_id()
        self.threads = torch_threads
        self.segmenting: Any = None  # the CPU stage's perception, built on the first fused call

    def feature_settings(self) -> dict[str, Any]:
        return self.settings

    def encode(self, summaries: list[FileOutcome], payloads: list[dict], cache_dir: str) -> list[FileOutcome]:
        return encode_pending(
            summaries,
            payloads,
            perception=self.perception,
            settings=self.settings,
            cache_dir=cache_dir,
            sample_rate_hz=self.config.audio.sample_rate_hz,
            node=self.node,
        )

    def analyze(self, items: list[tuple[Any, ...]], cache_dir: str) -> list[FileOutcome]:
        """Both stages in this process (encoders on CPUs: the worker's core decodes, segments and encodes, and
        the windows never leave the process): the same two functions as the split path, so the same bytes."""
        stage_config = segmentation_config(self.config)
        if self.segmenting is None:
            self.segmenting = make_perception(stage_config, torch_threads=self.threads)
        summaries, payloads = segment_batch(
            items,
            config=stage_config,
            perception=self.segmenting,
            settings=self.settings,
            cache_dir=cache_dir,
            node=self.node,
        )
        pending = [o for o in summaries if o.pending]
        done = {o.index: o for o in self.encode(pending, payloads, cache_dir)} if pending else {}
        return [done.get(o.index, o) if o.pending else o for o in summaries]


def _batches(items: list[tuple[Any, ...]], workers: int, batch_files: int | None) -> list[list[tuple[Any, ...]]]:
    # small units (at most 4 files, about 8 per worker): the last round leaves a worker idle for at most one
    # small unit, and a task's overhead (a few ms) stays far below a file's analysis
    size = batch_files or max(1, min(4, math.ceil(len(items) / (8 * workers))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _ready(handles: list[Any], wait_s: float) -> list[Any]:
    done, _ = ray.wait(handles, num_returns=1, timeout=wait_s)
    return done


def _get(handle: Any) -> Any:
    try:
        return ray.get(handle)
    except _LOST as error:
        raise Retry(str(error).splitlines()[0] if str(error) else type(error).__name__) from None


def _cancel(handle: Any) -> None:
    try:
        ray.cancel(handle, force=True)
    except Exception:  # already finished or its worker is gone: nothing to stop
        pass


def _describe_batch(batch: list[tuple[Any, ...]]) -> str:
    names = [item[2] for item in batch]
    return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")


def ray_analyze_many(
    items: list[tuple[Any, ...]],
    *,
    config: MusicHalConfig,
    cache_dir: str | None,
    progress: Callable[[FileOutcome], None],
    workers: int | None = None,
    gpu: bool = False,
    batch_files: int | None = None,
    split_stages: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[FileOutcome]:
    """Analyse ``items`` on the running Ray cluster with at most ``workers`` batches in flight.

    With ``config.features.kind == "wav2vec"`` a pool of ``workers`` encoder actors (one per GPU with ``gpu``)
    does the work; otherwise stateless tasks spread over the nodes. Returns the small outcomes (the features
    are in shards under ``cache_dir``). ``split_stages`` (default: when the encoders hold GPUs): CPU tasks
    decode and segment, the actors only encode; otherwise each actor runs both stages on its own core for a
    batch (no windows through the object store, one unit per batch). Both give the same bytes.
    """
    if not ray.is_initialized():
        raise ParameterError("Ray is not running (call ensure_ray first)")
    workers = int(workers or cluster_cpus())
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    batches = _batches(items, workers, batch_files)
    outcomes: list[FileOutcome] = []

    def take(_: int, result: list[FileOutcome]) -> None:
        for outcome in result:
            progress(outcome)
            outcomes.append(outcome)

    common = {
        "ready": _ready,
        "on_result": take,
        "clock": clock,
        "timeout_s": config.trainer.task_timeout_s,
        "max_attempts": config.trainer.max_attempts,
        "describe": _describe_batch,
    }
    config_ref = ray.put(config)
    if config.features.kind != "wav2vec":

        def submit(batch: list[tuple[Any, ...]]) -> Any:
            return _analyze_task.options(scheduling_strategy="SPREAD").remote(batch, config_ref, cache_dir)

        def restart(handle: Any, batch: list[tuple[Any, ...]]) -> Any:
            _cancel(handle)
            return submit(batch)

        run_units(batches, slots=workers, submit=submit, result=_get, restart=restart, **common)
        return outcomes

    if gpu and int(ray.cluster_resources().get("GPU", 0)):
        count, options = int(ray.cluster_resources()["GPU"]), {"num_gpus": 1, "num_cpus": 0}
    else:
        # num_cpus=0: the encoders must not starve the CPU stage of the slots Ray accounts; the two stages share
        # the same CPUs, so run_units bounds them together: ``workers`` units of either stage in flight (N workers
        # = N busy cores, one thread each)
        count, options = workers, {"num_cpus": 0}
    on_gpu = "num_gpus" in options
    count = max(1, min(count, len(batches)))
    threads = 2 if on_gpu else 1
    options["runtime_env"] = {"env_vars": thread_env(threads)}
    run = f"{os.getpid()}-{time.monotonic_ns()}"
    actors = [
        _EncoderWorker.options(**options, scheduling_strategy="SPREAD", name=f"{ENCODER_NAME_PREFIX}{run}-{i}").remote(
            config, threads
        )
        for i in range(count)
    ]
    free = list(actors)
    owner: dict[Any, Any] = {}
    payload_of: dict[Any, Any] = {}

    split = on_gpu if split_stages is None else bool(split_stages)

    def stage(unit: tuple) -> str:
        return unit[0]

    def submit_unit(unit: tuple, actor: Any = None) -> Any:
        if unit[0] == "both":
            actor = actor if actor is not None else free.pop()
            handle = actor.analyze.remote(unit[1], cache_dir)
            owner[handle] = actor
            return handle
        if unit[0] == "cpu":
            summaries_ref, payloads_ref = _segment_task.options(scheduling_strategy="SPREAD").remote(
                unit[1], config_ref, settings_ref, cache_dir
            )
            payload_of[summaries_ref] = payloads_ref
            return summaries_ref
        actor = actor if actor is not None else free.pop()
        handle = actor.encode.remote(unit[1], unit[2], cache_dir)
        owner[handle] = actor
        return handle

    def result_unit(handle: Any) -> Any:
        if handle in owner:
            free.append(owner.pop(handle))
            return _get(handle)
        return _get(handle), payload_of.pop(handle)  # the CPU stage: summaries + the (unfetched) windows

    def restart_unit(handle: Any, unit: tuple) -> Any:
        if unit[0] == "cpu":
            _cancel(handle)
            payload_of.pop(handle, None)
            return submit_unit(unit)
        actor = owner.get(handle)
        if actor is None:  # lost even after Ray's own retries (result_unit freed its actor): submit it again
            return submit_unit(unit)
        try:
            ray.kill(actor, no_restart=False)  # a hung call: Ray restarts the actor and reruns the call
        except Exception:
            pass
        return handle

    def take_stage(index: int, value: Any) -> list | None:
        unit = units[index]
        if unit[0] in ("enc", "both"):
            take(index, value)
            return None
        summaries, payloads_ref = value
        pending = [o for o in summaries if o.pending]
        take(index, [o for o in summaries if not o.pending])
        return [("enc", pending, payloads_ref)] if pending else None

    units: list[tuple] = [("cpu" if split else "both", batch) for batch in batches]
    slots = {"cpu": workers, "enc": len(actors)} if split else {"both": len(actors)}

    try:
        settings = _get_settings(actors[0], config.trainer.task_timeout_s)
        settings_ref = ray.put(settings)
        run_units(
            units,
            slots=slots,
            total=None if on_gpu or not split else workers,
            pool=stage,
            submit=submit_unit,
            result=result_unit,
            restart=restart_unit,
            **{
                **common,
                "on_result": take_stage,
                "describe": lambda unit: (
                    _describe_batch(unit[1]) if unit[0] != "enc" else ", ".join(o.name for o in unit[1][:3])
                ),
            },
        )
    finally:
        for actor in actors:
            ray.kill(actor)
    return outcomes


def _get_settings(actor: Any, timeout_s: float) -> dict[str, Any]:
    try:
        return ray.get(actor.feature_settings.remote(), timeout=timeout_s)
    except rex.GetTimeoutError:
        raise ParameterError(f"the wav2vec encoder did not load within {timeout_s:g} s") from None


def ray_map(
    fn: Callable[..., Any],
    arguments: list[tuple],
    *,
    config: MusicHalConfig,
    workers: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Any]:
    """``[fn(*args) for args in arguments]`` as Ray tasks (at most ``workers`` in flight), results in order."""
    workers = int(workers or cluster_cpus())
    results: list[Any] = [None] * len(arguments)

    def submit(args: tuple) -> Any:
        return _map_task.options(scheduling_strategy="SPREAD").remote(fn, args)

    def restart(handle: Any, args: tuple) -> Any:
        _cancel(handle)
        return submit(args)

    def store(index: int, value: Any) -> None:
        results[index] = value

    run_units(
        arguments,
        slots=workers,
        submit=submit,
        ready=_ready,
        result=_get,
        restart=restart,
        on_result=store,
        clock=clock,
        timeout_s=config.trainer.task_timeout_s,
        max_attempts=config.trainer.max_attempts,
        describe=lambda args: f"{fn.__name__} over {len(args[1])} file(s)",
    )
    return results
