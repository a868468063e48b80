"""The library's one after-fork hook: a forked child resets each layer's state in a fixed order.

``os.register_at_fork`` runs hooks in the order modules happen to be imported,
and the spool and OAuth modules are imported lazily. So each module registers
its reset here under a named stage, and this module, imported before any of
them, registers with the interpreter once and runs the stages bottom-up:

1. ``message_ids`` -- forget the parent's pool of random messageId bytes
   (the child would repeat the parent's ids).
2. ``oauth`` -- forget the parent's token sources' threads and locks.
3. ``spools`` -- let go of the parent's disk spools without touching their
   files or locks.
4. ``pipelines`` -- rebuild each client's queue, locks and counters, and start
   delivering what a durable queue recovered. Late, because it may start
   worker threads that use everything reset above.
5. ``async_pipelines`` -- empty each ``AsyncClient``'s queue and counters and
   forget the parent's loop; the child's first call in a loop starts its tasks.
"""

from __future__ import annotations

import os
from typing import Callable

__all__ = ["STAGES", "on_fork_in_child"]

STAGES = ("message_ids", "oauth", "spools", "pipelines", "async_pipelines")

_RESETS: dict[str, Callable[[], None]] = {}


def on_fork_in_child(stage: str, reset: Callable[[], None]) -> None:
    """Run ``reset`` in every forked child, at ``stage`` (one of ``STAGES``); one reset per stage."""
    if stage not in STAGES:
        raise KeyError(f"unknown after-fork stage {stage!r}; one of {', '.join(STAGES)}")
    _RESETS[stage] = reset


def _run_in_child() -> None:
    for stage in STAGES:
        reset = _RESETS.get(stage)
        if reset is not None:
            reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_in_child)
