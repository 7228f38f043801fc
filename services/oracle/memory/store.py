"""The memory (pure logic, no Ray): learns live percepts into the oracles the player walks.

Memory: the continuous :class:`AudioOracle` over the percepts' feature rows (PCA-reduced upstream) is
the oracle that plays; a :class:`FactorOracle` over the same events' tokens serves imitate-matching and
the symbolic mode. State ``i`` of both is event ``i`` (1-based), so indices are shared.

Threshold: ``config.oracle.threshold`` when set, else the trained model's; with neither, the live oracle
starts at threshold 0 (a plain chain) and every ``oracle.rebuild_every_events`` events the threshold is
re-estimated by Information Rate over the last ``IR_WINDOW_EVENTS`` events and, if it changed by more than
5 %, the Audio Oracle is rebuilt for the new threshold. Both happen **in the background** (``background=True``,
the default): a worker thread reads a snapshot of the frames (rows already written never change, so no copy
is needed), sweeps the threshold and builds the new links (the numba kernels release the GIL); the next
:meth:`OracleMemory.learn` call (or :meth:`OracleMemory.join`) adopts them, re-adding the events learned
meanwhile, so the result is exactly the oracle of all events at the new threshold. States and indices are
unchanged, so the player keeps its place. While a rebuild runs, a due re-estimation is skipped (counted
in ``rebuilds_skipped``). ``background=False`` runs the same work synchronously (deterministic, for tests;
the result is adopted at the same point, the next ``learn`` call). ``deterministic=True`` (logged sessions and
their replay) runs the work in the background but adopts it exactly ``ADOPT_AFTER_EVENTS`` learned events after it
started (waiting for it then if it is not finished), so decisions depend only on the inputs and learning never
stalls the live loop.
What plays the memory is :class:`services.oracle.player.live.LiveOracle` (the player and its voices); the memory
only learns, rebuilds, and saves.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.oracle.memory.audio_oracle import AudioOracle
from services.oracle.memory.factor_oracle import FactorOracle
from services.oracle.memory.information_rate import select_threshold
from shared.config import MusicHalConfig
from shared.errors import ModelFormatError, ParameterError
from shared.memory import fix_malloc_thresholds
from shared.messages import Percept
from shared.model_io import load_model

__all__ = ["OracleMemory", "STAGE_SCHEMA", "IR_WINDOW_EVENTS"]

STAGE_SCHEMA = "musichal-oracle-stage/1"
IR_WINDOW_EVENTS = 1024
ADOPT_AFTER_EVENTS = 8
_AUDIO_PREFIX = "oracle.audio."
_TOKENS_PREFIX = "oracle.tokens."


class _RebuildJob:
    """Threshold re-estimation + rebuild over a frozen prefix of the live oracle's frames."""

    def __init__(self, frames: np.ndarray, n_states: int, old_threshold: float) -> None:
        self.frames = frames  # the live oracle's frame buffer; rows 1..n_states-1 are never written again
        self.n_states = n_states
        self.old_threshold = old_threshold
        self.threshold: float | None = None
        self.result: AudioOracle | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.adopt_at = 0  # deterministic stages adopt the result when this many events have been learned

    def run(self) -> None:
        try:
            recent = self.frames[max(1, self.n_states - IR_WINDOW_EVENTS) : self.n_states]
            threshold, _ = select_threshold(recent)
            self.threshold = threshold
            old = self.old_threshold
            if old == 0.0 or abs(threshold - old) > 0.05 * old:
                self.result = AudioOracle.links_for(self.frames[1 : self.n_states], threshold)
        except Exception as error:  # surfaced by OracleMemory._collect
            self.error = error
        finally:
            self.done.set()


class OracleMemory:
    """The live memory: the Audio Oracle and the token oracle over the same events, learning and rebuilding.

    Parameters
    ----------
    config : MusicHalConfig
    model : str, Path or (meta, arrays), optional
        A model written by :meth:`checkpoint` / the trainer (``meta["oracle"]`` + ``oracle.*`` arrays).
    background : bool
        Run live threshold re-estimation and oracle rebuilds in a worker thread (default) or synchronously.
    deterministic : bool
        Adopt a background rebuild at a fixed event count (replayable) instead of as soon as it is done.
    """

    def __init__(
        self, config: MusicHalConfig, model: Any = None, *, background: bool = True, deterministic: bool = False
    ) -> None:
        if not isinstance(config, MusicHalConfig):
            raise ParameterError("config must be a shared.config.MusicHalConfig")
        self.config = config
        fix_malloc_thresholds()  # multi-MB oracle arrays are swapped and freed for hours: keep them off the heap
        self.learning = True
        self.playing = "audio"
        self.counters = {
            "events": 0,
            "learned": 0,
            "rebuilds": 0,
            "checkpoints": 0,
            "dim_mismatch": 0,
            "reestimates": 0,
            "rebuilds_skipped": 0,
            "rebuild_errors": 0,
        }
        self.background = bool(background)
        self.deterministic = bool(deterministic)
        self.last_rebuild_error: str | None = None
        self._job: _RebuildJob | None = None
        self.audio: AudioOracle | None = None
        self.tokens = FactorOracle()
        self.threshold_source = "config" if config.oracle.threshold is not None else "provisional"
        self.trained = False
        if model is not None:
            meta, arrays = load_model(model) if isinstance(model, (str, Path)) else model
            self._load_parts(meta, arrays)

    # ------------------------------------------------------------------ plumbing
    def _load_parts(self, meta: Any, arrays: dict[str, np.ndarray]) -> None:
        info = meta.get("oracle") if isinstance(meta, dict) else None
        if not isinstance(info, dict) or info.get("schema") != STAGE_SCHEMA:
            raise ModelFormatError(f"model has no oracle section of schema {STAGE_SCHEMA!r}")
        playing = info.get("playing")
        if playing not in ("audio", "tokens"):
            raise ModelFormatError(f"oracle 'playing' must be 'audio' or 'tokens', got {playing!r}")
        self.playing = playing
        self.tokens = FactorOracle.from_model_parts(info.get("tokens"), arrays, prefix=_TOKENS_PREFIX)
        if info.get("audio") is not None:
            self.audio = AudioOracle.from_model_parts(info["audio"], arrays, prefix=_AUDIO_PREFIX)
            if self.audio.n_states != self.tokens.n_states:
                raise ModelFormatError("audio and token oracles have different numbers of states")
        self.threshold_source = str(info.get("threshold_source", "trained"))
        self.trained = bool(info.get("trained", True))
        self.learning = bool(info.get("learning", True))

    def to_model_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``: ``meta["oracle"]`` documents which oracle plays; arrays are ``oracle.*``."""
        token_meta, arrays = self.tokens.to_model_parts(prefix=_TOKENS_PREFIX)
        audio_meta = None
        if self.audio is not None:
            audio_meta, audio_arrays = self.audio.to_model_parts(prefix=_AUDIO_PREFIX)
            arrays.update(audio_arrays)
        meta = {
            "oracle": {
                "schema": STAGE_SCHEMA,
                "playing": self.playing,
                "memory_note": "continuous Audio Oracle on (PCA-reduced) features plays by default; the token factor "
                "oracle serves imitate-matching and the symbolic mode; state i of both is event i",
                "threshold_source": self.threshold_source,
                "trained": self.trained,
                "learning": self.learning,
                "tokens": token_meta,
                "audio": audio_meta,
            }
        }
        return meta, arrays

    @classmethod
    def from_model_parts(
        cls, config: MusicHalConfig, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> OracleMemory:
        return cls(config, model=(meta, arrays))

    @classmethod
    def from_memory(
        cls,
        config: MusicHalConfig,
        audio: AudioOracle | None,
        tokens: FactorOracle,
        *,
        threshold_source: str = "trained",
    ) -> OracleMemory:
        """A trained stage around oracles built elsewhere (the trainer): state ``i`` of both is event ``i``."""
        if not isinstance(tokens, FactorOracle) or (audio is not None and not isinstance(audio, AudioOracle)):
            raise ParameterError("from_memory takes an AudioOracle (or None) and a FactorOracle")
        if audio is not None and audio.n_states != tokens.n_states:
            raise ParameterError(f"audio ({audio.n_states}) and token ({tokens.n_states}) oracles differ in states")
        stage = cls(config)
        stage.audio, stage.tokens = audio, tokens
        stage.threshold_source, stage.trained = str(threshold_source), True
        return stage

    def checkpoint(self, path: str | Path, *, perception: Any = None) -> None:
        """Save the live memory as a MusicHal model file (atomic; call every ``oracle.checkpoint_seconds``).

        ``perception`` is the fitted PerceptionModel the stack listens with (None when tokens are learned live);
        it is recorded so ``musichal --model path`` rebuilds that perception. The file also records the live
        config's perception sections. A rebuild still running in the background is not waited for: the saved
        oracle is the one playing.
        """
        import dataclasses

        from services.model_file import save_musichal_model

        config = {
            name: dataclasses.asdict(getattr(self.config, name))
            for name in ("audio", "segmenter", "features", "wav2vec", "quantizer", "oracle")
        }
        config["wav2vec"].pop("use_gpu", None)
        save_musichal_model(
            path,
            oracle_parts=self.to_model_parts(),
            perception=perception,
            config=config,
            training={"live_learned": True, "events": int(self.tokens.n_states - 1)},
        )
        self.counters["checkpoints"] += 1

    # ------------------------------------------------------------------ settings
    def set_playing(self, which: str) -> None:
        """``'audio'`` (default) or ``'tokens'`` (symbolic mode)."""
        if which not in ("audio", "tokens"):
            raise ParameterError(f"playing must be 'audio' or 'tokens', got {which!r}")
        if which == "audio" and self.audio is None:
            raise ParameterError("no audio oracle yet (no features learned)")
        self.playing = which

    def memory_bytes(self) -> dict[str, int]:
        """Bytes the memory's own data holds (allocated capacity of the oracles' arrays and the per-state metadata
        columns) and a rebuild in flight; what a soak subtracts from RSS growth to see everything else."""
        audio = self.audio
        arrays = self.tokens.nbytes
        if audio is not None:
            arrays += sum(a.nbytes for a in (audio._frames, audio._st, audio._edges, audio._better))
            arrays += audio.states.nbytes
        job = self._job
        rebuild = 0
        if job is not None and job.result is not None:
            other = job.result
            rebuild = sum(a.nbytes for a in (other._frames, other._st, other._edges, other._better))
        return {"oracle_arrays": int(arrays), "rebuild_in_flight": int(rebuild)}

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["states"] = self.tokens.n_states - 1
        return out

    # ------------------------------------------------------------------ learning
    def _threshold(self) -> float:
        if self.config.oracle.threshold is not None:
            return float(self.config.oracle.threshold)
        return 0.0

    def _learn(self, percept: Percept, features: np.ndarray) -> None:
        if self.audio is None:
            self.audio = AudioOracle(self._threshold(), features.size)
        source = ""
        states = self.audio.states
        prev = self.audio.n_states - 1
        if prev >= 1 and percept.descriptors is not None and states.sources[states.source_index[prev]] == source:
            gap = float(percept.descriptors.onset_s) - float(states.onset_s[prev])
            if 0.0 < gap < float(states.duration_s[prev]):
                states.duration_s[prev] = gap  # learned time: the real IOI replaces the window length
        self.audio.add(
            features, token=percept.token, descriptors=percept.descriptors, event_id=percept.event_id, source=source
        )
        self.tokens.add(percept.token)
        self.counters["learned"] += 1
        every = self.config.oracle.rebuild_every_events
        if (
            self.config.oracle.threshold is None
            and not self.trained
            and self.counters["learned"] % every == 0
            and self.audio.n_states > 2
        ):
            self._reestimate()

    def _reestimate(self) -> None:
        if self._job is not None:
            self.counters["rebuilds_skipped"] += 1
            return
        job = _RebuildJob(self.audio._frames, self.audio.n_states, self.audio.threshold)
        job.adopt_at = self.counters["learned"] + ADOPT_AFTER_EVENTS
        self._job = job
        if self.background:
            threading.Thread(target=job.run, name="oracle-rebuild", daemon=True).start()
        else:
            job.run()  # adopted at the start of the next learn() (or join()), like a background rebuild

    def _collect(self) -> None:
        """Adopt a finished rebuild (re-adding the events learned meanwhile); cheap when none is ready."""
        job = self._job
        if job is None:
            return
        if self.deterministic:  # adopted at a fixed event count, whatever the machine's speed
            if self.counters["learned"] < job.adopt_at:
                return
            job.done.wait()
        elif not job.done.is_set():
            return
        self._job = None
        self.counters["reestimates"] += 1
        if job.error is not None:
            self.counters["rebuild_errors"] += 1
            self.last_rebuild_error = f"{type(job.error).__name__}: {job.error}"
            return
        if job.result is not None:
            self.audio.adopt_links(job.result)
            self.counters["rebuilds"] += 1
        self.threshold_source = "ir-live"

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for a running rebuild and adopt it; returns False if it did not finish within ``timeout_s``."""
        job = self._job
        if job is None:
            return True
        if not job.done.wait(timeout_s):
            return False
        self._collect()
        return True

    # ------------------------------------------------------------------ the player's view of the memory
    @property
    def walk(self) -> Any:
        """The oracle the player walks (the Audio Oracle, or the token oracle in the symbolic mode)."""
        return self.audio if (self.playing == "audio" and self.audio is not None) else self.tokens

    @property
    def store(self) -> Any:
        """The events' descriptors (state ``i`` = event ``i``), or None before any feature row was learned."""
        return None if self.audio is None else self.audio.states

    def learn(self, percept: Percept) -> np.ndarray | None:
        """Learn ``percept`` when learning is on; returns its feature row (None on a dimension mismatch).

        The previous live state gets its real inter-onset interval now: its duration becomes at most the time
        to this onset (until then it is the analysis window length).
        """
        if not isinstance(percept, Percept):
            raise ParameterError("learn() takes a shared.messages.Percept")
        if self._job is not None:
            self._collect()
        self.counters["events"] += 1
        features = np.asarray(percept.features, dtype=np.float64).ravel()
        if features.size == 0 or not np.isfinite(features).all():
            raise ParameterError("percept features must be a non-empty finite vector")
        if self.audio is not None and features.size != self.audio.dim:
            self.counters["dim_mismatch"] += 1
            features = None
        if self.learning and features is not None:
            self._learn(percept, features)
        return features
