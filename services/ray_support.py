"""Small helpers shared by the actor modules (the only place besides actor.py files and launch.py that imports Ray)."""
from __future__ import annotations

import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["current_node_id", "pin_to_node", "set_torch_threads"]


def current_node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def pin_to_node(node_id: str) -> dict[str, Any]:
    """Actor options that place an actor on ``node_id`` (hard affinity)."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}


def set_torch_threads(n: int) -> None:
    """Pin torch's intra-op threads inside an actor (each actor is its own process)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(max(1, n))
    except Exception:  # torch missing or already initialised with another count: harmless
        pass
