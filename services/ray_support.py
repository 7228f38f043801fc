"""Small helpers shared by the actor modules (the only place besides actor.py files and launch.py that imports Ray)."""
from __future__ import annotations

import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["current_node_id", "pin_to_node", "set_torch_threads", "ACTOR_ENV_VARS"]

# Set in every MusicHal actor's process (Ray merges them with the job's env_vars). glibc gives each thread that
# allocates its own malloc arena (up to 8 per core); in an actor, Ray's threads, the actor's loop and the oracle's
# rebuild threads each keep freed memory resident in theirs, and RSS creeps up for hours. Two arenas keep it flat.
ACTOR_ENV_VARS = {"MALLOC_ARENA_MAX": "2"}


def current_node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def pin_to_node(node_id: str) -> dict[str, Any]:
    """Actor options that place an actor on ``node_id`` (hard affinity), with the actors' environment."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            "runtime_env": {"env_vars": dict(ACTOR_ENV_VARS)}}


def set_torch_threads(n: int) -> None:
    """Pin torch's intra-op threads inside an actor (each actor is its own process)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(max(1, n))
    except Exception:  # torch missing or already initialised with another count: harmless
        pass
