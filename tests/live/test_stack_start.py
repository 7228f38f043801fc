"""LiveStack's start-up wiring without Ray: every actor's ``ready`` is waited for together, with one deadline."""

from __future__ import annotations

import pytest

from services.stack import LiveStack
from shared.config import MusicHalConfig
from shared.errors import MusicHalError


class FakeRay:
    """``ray.wait``/``ray.get`` over refs that are ready in a given order (or never)."""

    def __init__(self, order: list[str], values: dict[str, object]) -> None:
        self.order = list(order)
        self.values = values
        self.timeouts: list[float] = []

    def wait(self, refs, num_returns, timeout):
        self.timeouts.append(timeout)
        ready = [ref for ref in self.order if ref in refs][:num_returns]
        for ref in ready:
            self.order.remove(ref)
        return ready, [ref for ref in refs if ref not in ready]

    def get(self, ref):
        value = self.values[ref]
        if isinstance(value, BaseException):
            raise value
        return value


def _stack() -> LiveStack:
    stack = LiveStack(MusicHalConfig())
    stack._phase_t = 0.0
    return stack


def test_all_actors_waited_for_together_in_the_order_they_become_ready() -> None:
    stack = _stack()
    info = {"local": True, "node_id": "n1"}
    fake = FakeRay(
        ["capture", "encoder", "oracle", "midi_out"],
        {"capture": "n1", "encoder": info, "oracle": "n1", "midi_out": "n1"},
    )
    stack._wait_ready(fake, {"midi_out": "midi_out", "encoder": "encoder", "oracle": "oracle", "capture": "capture"})
    assert stack.encoder_info == info
    assert [k for k in stack.startup if k.startswith("ready_")] == [
        "ready_capture",
        "ready_encoder",
        "ready_oracle",
        "ready_midi_out",
    ]
    assert "actors" in stack.startup
    # one deadline for all of them: the encoder's (it loads a model), never a sum of per-actor waits
    assert fake.timeouts[0] == pytest.approx(LiveStack.READY_TIMEOUT_S["encoder"], abs=1.0)


def test_an_actor_that_never_becomes_ready_is_named_in_one_line() -> None:
    stack = _stack()
    fake = FakeRay(["capture"], {"capture": "n1"})
    with pytest.raises(MusicHalError, match=r"not ready after 60 s: midi_out, oracle$"):
        stack._wait_ready(fake, {"midi_out": "midi_out", "oracle": "oracle", "capture": "capture"})


def test_an_actor_that_died_while_starting_raises_its_error() -> None:
    stack = _stack()
    fake = FakeRay(["encoder"], {"encoder": RuntimeError("checkpoint missing")})
    with pytest.raises(RuntimeError, match="checkpoint missing"):
        stack._wait_ready(fake, {"encoder": "encoder"})
