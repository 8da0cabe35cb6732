"""The one Ray connection policy of facegen (``balance``, ``extract``, ``verify`` and ``train``).

Where to connect, in order:

1. an explicit address (``--address`` / ``--ray-address``: ``auto``, ``ray://head:10001``, ``IP:6379``);
2. ``$RAY_ADDRESS`` (set inside ``ray job submit`` jobs and on cluster nodes);
3. otherwise a new private local Ray sized to this machine (``address="local"``): a stray ``ray start``
   on the same machine is never joined by accident.

A session that is already initialised (a notebook, a test fixture, an earlier call) is used as it is.
The caller that *started* Ray owns it and shuts it down (the return value says whether that is you).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

#: The address ``ray.init`` takes for "start a new local instance, never join an existing one".
LOCAL = "local"


def ray_init_kwargs(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> dict[str, Any]:
    """The ``ray.init`` arguments of the policy above (pure; no Ray import).

    `quiet` keeps worker/actor output in Ray's log files instead of the terminal (the shard runners: a
    progress bar is the only output); ``quiet=False`` streams it to the driver (training, whose workers
    print metrics). `num_cpus` caps a local instance only (Ray refuses it when joining a cluster)."""
    target = address or os.environ.get("RAY_ADDRESS") or LOCAL
    kwargs: dict[str, Any] = {"address": target, "log_to_driver": not quiet}
    if quiet:
        kwargs["configure_logging"] = False
    if target == LOCAL:  # options of a new instance; a running cluster already has its own
        kwargs["include_dashboard"] = False
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
    return kwargs


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """SIGINT / SIGTERM received inside the block are recorded, not acted on (the list it yields), and
    ``ray.init`` may not install its own SIGTERM handler (``sys.exit`` in the middle of its start-up
    left half-started C++ state behind: exit 15/134, stack dumps). Main thread only; elsewhere a no-op."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        import ray._private.utils as ray_utils
    except ImportError:  # pragma: no cover - another Ray layout
        ray_utils = None
    original = getattr(ray_utils, "set_sigterm_handler", None)
    if original is not None:
        ray_utils.set_sigterm_handler = lambda handler: None  # type: ignore[union-attr]
    try:
        yield received
    finally:
        if original is not None:
            ray_utils.set_sigterm_handler = original  # type: ignore[union-attr]
        for sig, handler in previous.items():
            if sig == signal.SIGTERM and handler in (signal.SIG_DFL, None):
                handler = _exit_on_sigterm  # what ray.init would have installed
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class _DropAuthNotice:
    """Drops Ray's start-up notice "Token authentication is enabled for this Ray cluster" (quiet runs: the
    progress bar, or one `error:` line, is all a shard command prints); every other record passes."""

    def filter(self, record: Any) -> bool:
        return not str(record.getMessage()).startswith("Token authentication is enabled for this Ray cluster")


def _quiet_ray_notices() -> None:
    import logging

    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropAuthNotice) for f in logger.filters):
        logger.addFilter(_DropAuthNotice())


def ray_has_dashboard() -> bool:
    """False when this process started the connected Ray itself without a dashboard (facegen's private
    instances, a test fixture's); True otherwise (a cluster's Ray, or one this cannot tell about): the
    dashboard serves Ray's state API. (The dashboard's address in Ray's internal KV cannot tell: a
    dashboard-less instance registers one too.)"""
    try:
        import ray
        from ray._private import worker

        node = getattr(worker, "_global_node", None)
        if not ray.is_initialized() or node is None or not getattr(node, "head", False):
            return True
        return getattr(node._ray_params, "include_dashboard", None) is not False
    except (ImportError, AttributeError):  # pragma: no cover - another Ray layout
        return True


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(signum)


def connect_ray(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> bool:
    """Join or start Ray by the policy above; True if this call started it (then the caller shuts it down).

    Ctrl-C / SIGTERM during Ray's start-up are held until ``ray.init`` returns; then Ray is shut down
    again and ``KeyboardInterrupt`` raised (a clean stop instead of a crash inside Ray's C++ start-up)."""
    import ray

    if ray.is_initialized():
        return False
    if quiet:
        _quiet_ray_notices()
    with signals_deferred() as received:
        try:
            ray.init(**ray_init_kwargs(address, num_cpus=num_cpus, quiet=quiet))
        finally:
            if received and ray.is_initialized():
                ray.shutdown()
    if received:
        raise KeyboardInterrupt
    return True


__all__ = ["LOCAL", "connect_ray", "ray_has_dashboard", "ray_init_kwargs", "signals_deferred"]
