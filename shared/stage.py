"""The stage contract every pure-logic processor follows (madmom-style ``process`` + explicit streaming state)."""
from __future__ import annotations

from typing import Any, ClassVar, Iterable, Protocol, runtime_checkable

__all__ = ["Stage", "Chain"]


@runtime_checkable
class Stage(Protocol):
    """A processing stage: ``process(item, reset=False)`` returns the stage's output for one input item.

    ``is_online`` says whether the stage keeps streaming state between calls; ``reset()`` clears that
    state but keeps parameters.
    """

    is_online: ClassVar[bool]

    def process(self, item: Any, *, reset: bool = False) -> Any: ...

    def reset(self) -> None: ...


class Chain:
    """Run stages one after another; a stage returning a list fans out to the next stage item by item.

    >>> class Double:
    ...     is_online = False
    ...     def process(self, item, *, reset=False): return item * 2
    ...     def reset(self): pass
    >>> Chain([Double(), Double()]).process(3)
    [12]
    """

    is_online: ClassVar[bool] = True

    def __init__(self, stages: Iterable[Any]):
        self.stages = list(stages)

    def process(self, item: Any, *, reset: bool = False) -> list[Any]:
        if reset:
            self.reset()
        items = [item]
        for stage in self.stages:
            next_items: list[Any] = []
            for value in items:
                out = stage.process(value) if hasattr(stage, "process") else stage(value)
                if out is None:
                    continue
                if isinstance(out, list):
                    next_items.extend(out)
                else:
                    next_items.append(out)
            items = next_items
        return items

    def reset(self) -> None:
        for stage in self.stages:
            if hasattr(stage, "reset"):
                stage.reset()
