"""The oracle's warm-up: its numba kernels compiled (or loaded from numba's cache) and one walk on throwaway data.

The oracle actor runs :func:`warm_up` before it says it is ready, so no live event pays a first call. The kernels
are compiled with ``cache=True``: the first process on a machine compiles them (~7 s on a 2-core machine, on the
start-up's critical path: the oracle is the last actor ready), every later one loads them from the cache (< 1 s).
``scripts/setup.sh`` runs ``python -m services.oracle.warm`` once after installing, so a musician's first
``musichal`` after ``make setup`` (or ``make demo``) starts as fast as every later one; after a ``pip install``
the same command does it (README). ``NUMBA_CACHE_DIR`` moves numba's cache, as for any numba program.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

from shared.config import MusicHalConfig

__all__ = ["kernel_cache_stats", "warm_up"]

#: the modules that hold the oracle's ``cache=True`` kernels
KERNEL_MODULES = (
    "services.oracle.memory.kernels",
    "services.oracle.memory.audio_oracle",
    "services.oracle.memory.factor_oracle",
    "services.oracle.memory.information_rate",
)


def warm_up(config: MusicHalConfig) -> None:
    """Learn and walk 8 throwaway events on a scratch oracle: compiles (or loads) the kernels and fills the
    first-call caches of the decision path."""
    import numpy as np

    from services.oracle.memory.store import OracleMemory
    from services.oracle.player.live import LiveOracle
    from shared.messages import EventDescriptors, Percept

    scratch = LiveOracle(config, OracleMemory(config, background=False))
    rng = np.random.default_rng(0)
    for i in range(8):
        descriptors = EventDescriptors(
            onset_s=i * 0.5,
            duration_s=0.5,
            rms=0.1,
            velocity=64,
            f0_hz=220.0 * (1 + i % 3),
            f0_confidence=0.9,
            chroma_peaks=(i % 12,),
        )
        scratch.on_percept(
            Percept(
                event_id=i,
                token=i % 3,
                features=rng.standard_normal(22).astype(np.float32),
                descriptors=descriptors,
            ),
            float(i),
        )
        scratch.learn_queued()
        scratch.tick(float(i) + 0.5)


def kernel_cache_stats() -> dict[str, int]:
    """How many kernel signatures this process compiled and how many it loaded from numba's cache (the cached
    kernels of :data:`KERNEL_MODULES` that were used)."""
    from numba.core.dispatcher import Dispatcher

    compiled = loaded = 0
    for name in KERNEL_MODULES:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, Dispatcher) and value.stats.cache_path:  # cache=True kernels only
                compiled += sum(value.stats.cache_misses.values())
                loaded += sum(value.stats.cache_hits.values())
    return {"compiled": compiled, "from_cache": loaded}


def main(argv: list[str] | None = None) -> int:
    """``python -m services.oracle.warm``: compile the kernels into numba's cache; one JSON line on stdout."""
    del argv
    t0 = time.perf_counter()
    warm_up(MusicHalConfig())
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 3), **kernel_cache_stats()}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
