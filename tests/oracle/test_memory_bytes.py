"""OracleMemory.memory_bytes: the memory's own data, which a soak separates from any other RSS growth."""

from __future__ import annotations

import numpy as np

from services.oracle.memory.store import OracleMemory
from shared.config import MusicHalConfig
from shared.messages import Percept


def _feed(stage: OracleMemory, start: int, count: int) -> None:
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        stage.learn(Percept(event_id=i, token=i % 7, features=rng.standard_normal(16).astype(np.float32)))


def test_memory_bytes_follow_the_learned_states() -> None:
    stage = OracleMemory(MusicHalConfig(), background=False)
    assert stage.memory_bytes()["oracle_arrays"] == stage.tokens.nbytes  # no audio oracle before the first percept
    _feed(stage, 0, 100)
    small = stage.memory_bytes()
    audio = stage.audio
    arrays = sum(a.nbytes for a in (audio._frames, audio._st, audio._edges, audio._better))
    assert small["oracle_arrays"] == stage.tokens.nbytes + arrays + audio.states.nbytes
    _feed(stage, 100, 3000)
    stage.join()
    large = stage.memory_bytes()
    assert large["oracle_arrays"] > 4 * small["oracle_arrays"]  # 31x the states; arrays start with spare capacity
    assert large["rebuild_in_flight"] == 0  # adopted by join()
    stage.learning = False
    _feed(stage, 3100, 500)  # not learning: the data does not grow
    assert stage.memory_bytes()["oracle_arrays"] == large["oracle_arrays"]
