"""The capture actor: a thin Ray wrapper around :class:`services.capture.stage.CaptureStage`.

It attaches to the audio ring and the events ring (created by ``launch.py``), starts the input (``--input-file``
player or a PyAudio device in callback mode) and a segmenter thread that turns ring audio into events.
"""
from __future__ import annotations

import threading
from dataclasses import replace
import time
from typing import Any, Optional

import ray

from shared.config import MusicHalConfig
from shared.message_ring import MessageRing
from shared.ring import AudioRing
from services.capture.stage import CaptureStage, FilePlayer
from services.ray_support import current_node_id

__all__ = ["CaptureActor"]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CaptureActor:
    def __init__(self, config: MusicHalConfig, audio_ring_name: str, events_ring_name: str, *,
                 input_file: Optional[str] = None, input_device: Any = None, loop: bool = False,
                 speed: float = 1.0) -> None:
        self.config = config
        self.ring = AudioRing.attach(audio_ring_name)
        self.events = MessageRing.attach(events_ring_name)
        self.node_id = current_node_id()
        self.player: Optional[FilePlayer] = None
        self.stream = None
        self.error: Optional[str] = None
        self._stop = threading.Event()
        if input_file is not None:
            from shared.audio import probe_audio_file

            info = probe_audio_file(input_file)
            self.stage = CaptureStage(config, self.ring, input_rate_hz=info.sample_rate_hz, channels=info.channels,
                                      source=str(input_file))
            self.player = FilePlayer(input_file, self.stage.push, block_frames=config.audio.block_samples,
                                     loop=loop, speed=speed)
        else:
            from services.capture.devices import AudioInputStream

            holder: dict[str, CaptureStage] = {}
            self.stream = AudioInputStream(lambda block: holder["stage"].push(block), device=input_device,
                                           block_frames=config.audio.block_samples)
            self.stage = CaptureStage(config, self.ring, input_rate_hz=self.stream.sample_rate_hz,
                                      channels=self.stream.channels, source=str(self.stream.device["name"]))
            holder["stage"] = self.stage
        self._thread = threading.Thread(target=self._segment_loop, name="musichal-segmenter", daemon=True)
        self._thread.start()
        if self.player is not None:
            self.player.start()
        else:
            self.stream.start()

    def _segment_loop(self) -> None:
        block_s = self.config.audio.block_samples / self.config.audio.sample_rate_hz
        try:
            while not self._stop.is_set():
                for event in self.stage.segment(timeout_s=4 * block_s):
                    self.events.send_message(replace(event, t_sent=time.monotonic()))
                if self.stage.exhausted:
                    return
                if self.player is not None and self.player.error is not None:
                    self.error = f"input file failed: {self.player.error}"
                    return
                if self.stream is not None and self.stream.error is not None:
                    self.error = f"audio input failed: {self.stream.error}"
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
        if self.player is not None:
            counters["late_blocks"] = self.player.late_blocks
        if self.stream is not None:
            counters["input_overflows"] = self.stream.overflows
        return {"stage": "capture", "node_id": self.node_id, "counters": counters, "error": self.error,
                "finished": self.finished()}

    def stop(self) -> None:
        self._stop.set()
        if self.player is not None:
            self.player.stop()
        if self.stream is not None:
            self.stream.close()
        self._thread.join(timeout=2.0)
        self._final_stats = self.stats()
        self.ring.close()
        self.events.close()
