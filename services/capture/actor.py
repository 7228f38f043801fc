"""The capture actor: a thin Ray wrapper around :class:`services.capture.stage.CaptureStage`.

It attaches to the audio ring and the events ring (created by the live stack, services/stack.py), opens the input source
(:mod:`services.capture.sources`: the ``--input-file`` player or a PyAudio device in callback mode) and starts a
segmenter thread that turns ring audio into events. The source starts with the actor, or — ``start=False``, as the
live stack does — on :meth:`CaptureActor.listen`, once every other actor is ready: no input is lost to start-up.
An actor restarted by Ray (after a crash) listens at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import ray

from services.capture.sources import InputSource, open_input_source
from services.capture.stage import CaptureStage
from services.ray_support import current_node_id
from shared.config import MusicHalConfig
from shared.message_ring import MessageRing
from shared.ring import AudioRing

__all__ = ["CaptureActor"]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CaptureActor:
    def __init__(
        self,
        config: MusicHalConfig,
        audio_ring_name: str,
        events_ring_name: str,
        *,
        input_file: str | None = None,
        input_device: Any = None,
        loop: bool = False,
        speed: float = 1.0,
        start: bool = True,
    ) -> None:
        self.config = config
        self.ring = AudioRing.attach(audio_ring_name)
        self.events = MessageRing.attach(events_ring_name)
        self.node_id = current_node_id()
        self.error: str | None = None
        self._stop = threading.Event()
        holder: dict[str, CaptureStage] = {}

        def push(block, *, last: bool = False) -> int:
            return holder["stage"].push(block, last=last)

        self.source: InputSource = open_input_source(
            push,
            block_frames=config.audio.block_samples,
            input_file=input_file,
            input_device=input_device,
            loop=loop,
            speed=speed,
        )
        self.stage = CaptureStage(
            config,
            self.ring,
            input_rate_hz=self.source.sample_rate_hz,
            channels=self.source.channels,
            source=self.source.name,
        )
        holder["stage"] = self.stage
        self._thread = threading.Thread(target=self._segment_loop, name="musichal-segmenter", daemon=True)
        self._thread.start()
        self.listening_since: float | None = None  # monotonic time the source started
        if start or ray.get_runtime_context().was_current_actor_reconstructed:  # a restart listens at once
            self.listen()

    def listen(self) -> float:
        """Start the input source (idempotent); returns the monotonic time it started."""
        if self.listening_since is None:
            self.source.start()
            self.listening_since = time.monotonic()
        return self.listening_since

    def _segment_loop(self) -> None:
        block_s = self.config.audio.block_samples / self.config.audio.sample_rate_hz
        try:
            while not self._stop.is_set():
                for event in self.stage.segment(timeout_s=4 * block_s):
                    self.events.send_message(replace(event, t_sent=time.monotonic()))
                if self.stage.exhausted:
                    return
                if self.source.error is not None:
                    self.error = f"{self.source.kind} failed: {self.source.error}"
                    return
        except BaseException as error:  # reported through stats()
            self.error = f"segmenter failed: {type(error).__name__}: {error}"

    def ready(self) -> str:
        return self.node_id

    def finished(self) -> bool:
        """True once a non-looping input file has been played and fully segmented."""
        return self.stage.exhausted or self.error is not None

    def stats(self) -> dict[str, Any]:
        if getattr(self, "_final_stats", None) is not None:
            return self._final_stats
        counters = dict(self.stage.counters)
        counters["ring_samples"] = self.ring.write_counter
        counters["nonfinite_samples"] = self.stage.front_end.nonfinite_samples
        counters.update(self.source.counters())
        return {
            "stage": "capture",
            "node_id": self.node_id,
            "counters": counters,
            "error": self.error,
            "finished": self.finished(),
            "listening_since": self.listening_since,
            "first_onset_s": self.stage.first_onset_s,
            "last_onset_s": self.stage.last_onset_s,
        }

    def stop(self) -> None:
        self._stop.set()
        self.source.close()
        self._thread.join(timeout=2.0)
        self._final_stats = self.stats()
        self.ring.close()
        self.events.close()
