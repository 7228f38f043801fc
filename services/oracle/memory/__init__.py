"""The memory: what MusicHal has learned, and nothing about how it plays.

The factor oracle / Audio Oracle built online (``factor_oracle``, ``audio_oracle``, their shared numba kernels in
``kernels``), the per-state store (``states``), the Information Rate threshold (``information_rate``), the memory a
stack learns into and saves (``store.OracleMemory``) and corpus merging (``corpus``). The player
(:mod:`services.oracle.player`) reads it; it never imports the player.
"""

from services.oracle.memory.audio_oracle import AudioOracle
from services.oracle.memory.corpus import load_corpora
from services.oracle.memory.factor_oracle import FactorOracle
from services.oracle.memory.information_rate import select_threshold
from services.oracle.memory.states import StateInfo, StateStore
from services.oracle.memory.store import OracleMemory

__all__ = ["AudioOracle", "FactorOracle", "OracleMemory", "StateInfo", "StateStore", "load_corpora", "select_threshold"]
