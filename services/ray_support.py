"""Small helpers shared by the actor modules (the only place besides actor.py files and services/stack.py that imports
Ray)."""

from __future__ import annotations

import os
import sys
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = [
    "current_node_id",
    "pin_to_node",
    "set_torch_threads",
    "ACTOR_ENV_VARS",
    "loopback_only",
    "inherited_env",
    "lean_head",
    "prompt_node_wait",
    "start_local_ray",
]

# Set in every MusicHal actor's process (Ray merges them with the job's env_vars). glibc gives each thread that
# allocates its own malloc arena (up to 8 per core); in an actor, Ray's threads, the actor's loop and the oracle's
# rebuild threads each keep freed memory resident in theirs, and RSS creeps up for hours. Two arenas keep it flat.
ACTOR_ENV_VARS = {"MALLOC_ARENA_MAX": "2"}


def current_node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def pin_to_node(node_id: str, *, env: bool = True) -> dict[str, Any]:
    """Actor options that place an actor on ``node_id`` (hard affinity), with the actors' environment.

    ``env=False``: no ``runtime_env`` — for a Ray whose processes inherited :data:`ACTOR_ENV_VARS` already
    (:class:`inherited_env` around ``ray.init``). An actor with a runtime_env of its own cannot use the workers Ray
    starts ahead and waits for the runtime-env agent: measured here, 4 actors ready in 2.6-4.4 s without, 8.8-10.6 s
    with (3 runs each, interleaved, load 9-11 on 2 cores).
    """
    options: dict[str, Any] = {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}
    if env:
        options["runtime_env"] = {"env_vars": dict(ACTOR_ENV_VARS)}
    return options


class inherited_env:
    """Set :data:`ACTOR_ENV_VARS` while a local ``ray.init`` starts its processes (they and every worker inherit
    them), restored in this process afterwards."""

    def __enter__(self) -> inherited_env:
        self._saved = {name: os.environ.get(name) for name in ACTOR_ENV_VARS}
        os.environ.update(ACTOR_ENV_VARS)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def set_torch_threads(n: int) -> None:
    """Pin torch's intra-op threads inside an actor (each actor is its own process).

    Never imports torch (seconds of start-up in an actor that may not need it): torch reads ``OMP_NUM_THREADS``
    when it is first imported; if it is imported already, its thread count is set now.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        torch.set_num_threads(max(1, n))
    except Exception:  # already initialised with another count: harmless
        pass


class loopback_only:
    """Make a local Ray listen on 127.0.0.1 only (all of its gRPC servers and agents).

    Ray 2.60 on Linux ignores ``_node_ip_address="127.0.0.1"`` for a new local cluster (it resolves "localhost" to
    the host's external address) and its gRPC servers then listen on every interface. With
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's own "no multi-node cluster" switch) the node address is the
    loopback and gcs_server, raylet, the runtime-env and dashboard agents and every worker bind to 127.0.0.1.
    The setting is inherited by the processes ``ray.init`` starts and restored in this process afterwards.
    """

    NAME = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

    def __enter__(self) -> loopback_only:
        from ray._private import ray_constants

        self._env = os.environ.get(self.NAME)
        self._constant = ray_constants.ENABLE_RAY_CLUSTER
        os.environ[self.NAME] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
        return self

    def __exit__(self, *exc: Any) -> None:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = self._constant
        if self._env is None:
            os.environ.pop(self.NAME, None)
        else:
            os.environ[self.NAME] = self._env


class lean_head:
    """Start a local Ray head without the processes a MusicHal stack or trainer never uses: the autoscaler monitor,
    the log monitor (``log_to_driver=False``: nobody reads what it forwards) and the API server (the dashboard's
    jobs/state endpoints; ``include_dashboard=False`` still starts it). Each is a Python process that spends about a
    second of CPU starting while the stack starts: measured here on an idle 2-core machine, ``ray.init`` + one actor
    took 5.0 s with them and 2.9 s without (3 interleaved runs each; ``benchmarks/startup.py`` has the figures).
    gcs_server, raylet, the workers and the two agents the raylet starts are untouched.

    Ray has no public switch for these (``ray start --no-monitor`` exists for the CLI only), so this sets the same
    fields of its ``RayParams`` for the duration of one ``ray.init`` and restores them after; on a Ray whose
    internals differ it does nothing (:attr:`applied` is False) and Ray starts as usual.
    """

    def __enter__(self) -> lean_head:
        import inspect

        self.applied = False
        try:
            from ray._private import node as ray_node
            from ray._private import parameter as ray_parameter

            self._params_cls, self._node_cls = ray_parameter.RayParams, ray_node.Node
            self._params_init = self._params_cls.__init__
            self._start_api_server = self._node_cls.start_api_server
            fields = inspect.signature(self._params_init).parameters
        except (ImportError, AttributeError, TypeError, ValueError):
            return self
        if not {"no_monitor", "include_log_monitor", "include_dashboard"} <= set(fields):
            return self
        params_init = self._params_init

        def lean_params(params: Any, *args: Any, **kwargs: Any) -> None:
            params_init(params, *args, **kwargs)
            params.no_monitor = True
            params.include_log_monitor = False

        def no_api_server(node: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("include_dashboard"):  # asked for the dashboard explicitly: Ray's own way
                self._start_api_server(node, *args, **kwargs)

        self._params_cls.__init__ = lean_params
        self._node_cls.start_api_server = no_api_server
        self.applied = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.applied:
            self._params_cls.__init__ = self._params_init
            self._node_cls.start_api_server = self._start_api_server


class prompt_node_wait:
    """Let ``ray.init`` notice its raylet as soon as it registers.

    Ray's driver waits for its new node with one call to the GCS that, while the node is not there yet, retries once a
    second; on this machine the raylet registers ~1.2 s into that call (it waits for its agents to start), so the
    driver sat idle for ~0.8 s of every start. For one ``ray.init`` this asks the GCS's node table (an immediate
    answer) every 20 ms first and makes Ray's own call once the node is listed, bounded by Ray's own 30 s; on a Ray
    whose internals differ it does nothing (:attr:`applied` is False).
    """

    POLL_S = 0.02
    TIMEOUT_S = 30.0

    def __enter__(self) -> prompt_node_wait:
        self.applied = False
        self.listed = False  # the node was in the GCS's table before Ray's own call (which then needs no retry)
        try:
            from ray._private import services as ray_services
            from ray._private import state as ray_state

            self._services, self._original = ray_services, ray_services.get_node
            make_options, global_state = ray_services._get_gcs_client_options, ray_state.GlobalState
        except (ImportError, AttributeError):
            return self
        original, poll_s, timeout_s = self._original, self.POLL_S, self.TIMEOUT_S

        def get_node(gcs_address: str, node_id: str) -> Any:
            import time

            try:
                state = global_state()
                state._initialize_global_state(make_options(gcs_address))
                deadline = time.monotonic() + timeout_s
                while not self.listed and time.monotonic() < deadline:
                    self.listed = any(n.get("NodeID") == node_id and n.get("Alive") for n in state.node_table())
                    if not self.listed:
                        time.sleep(poll_s)
            except Exception:  # anything unexpected: Ray's own wait decides
                pass
            return original(gcs_address, node_id)

        ray_services.get_node = get_node
        self.applied = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.applied:
            self._services.get_node = self._original


def start_local_ray(num_cpus: int, *, actor_env: bool = False) -> dict[str, bool]:
    """``ray.init`` of a new local Ray as MusicHal starts it: bound to 127.0.0.1 (:class:`loopback_only`), without
    the processes it never uses (:class:`lean_head`), the dashboard off and worker logs not forwarded, noticing its
    raylet as soon as it registers (:class:`prompt_node_wait`); with ``actor_env`` every process it starts inherits
    :data:`ACTOR_ENV_VARS` (:class:`inherited_env`). Returns which of Ray's internals were adjusted: ``lean`` and
    ``node_listed`` (the node was seen registered before Ray's own wait for it)."""
    import contextlib

    with contextlib.ExitStack() as stack:
        stack.enter_context(loopback_only())
        lean = stack.enter_context(lean_head())
        wait = stack.enter_context(prompt_node_wait())
        if actor_env:
            stack.enter_context(inherited_env())
        ray.init(
            address="local",
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            num_cpus=num_cpus,
            log_to_driver=False,
            configure_logging=False,
        )
    return {"lean": lean.applied, "node_listed": wait.applied and wait.listed}
