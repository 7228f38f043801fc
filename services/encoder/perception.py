"""What the analysis and the perception model need of a perception module: its interface, apart from its code.

:class:`PerceptionViews` is implemented by :class:`services.encoder.views.HybridPerceptionModule`;
:mod:`services.encoder.analysis` and :mod:`services.encoder.perception_model` are written against this interface, so
neither depends on the module that builds the views (which depends on both).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["PerceptionViews"]


class PerceptionViews(Protocol):
    """The views a perception computes per event and the models behind them."""

    wav2vec: Any | None  # the wav2vec encoder (``extract_batch(windows, rate)``), None without that view
    transcriber: Any | None  # the slice-note transcriber (``transcribe_windows``), None when off

    @property
    def views(self) -> tuple[str, ...]:
        """The views computed, e.g. ``("traditional", "wav2vec")``."""
        ...

    def describe(self) -> dict[str, Any]:
        """Views, their settings and dimensions (what a model is checked against)."""
        ...
