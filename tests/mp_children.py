"""A program whose multiprocessing children track and end without flushing, run by test_process_models.

Run as ``python tests/mp_children.py START_METHOD [COUNT]`` with ``MP_HOST`` set to the
collector's URL (or ``... terminated START_METHOD SPOOL_DIR COUNT``: see ``terminated``). It is written as users write such programs: ``segment_lite`` is imported
and configured at the top of the main module (so spawn and forkserver children import it
too), the parent tracks before it starts children, and no child calls ``flush()``. For each
of Process, Pool (closed and joined) and ProcessPoolExecutor it runs children that use a
``Client`` of their own and children that use the module API; each event is named
``<kind>/<api>`` so the test can count what each combination delivered.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys

import segment_lite
import segment_lite as analytics

analytics.write_key = "mp-key"
analytics.host = os.environ["MP_HOST"]

KINDS = ("process", "pool", "executor")
APIS = ("client", "module")
#: Children (or pool tasks) per combination.
TASKS = 2


def tracked(kind: str, api: str, task: int, count: int) -> int:
    """Track ``count`` events the way ``api`` says, and return without flushing."""
    event = f"{kind}/{api}"
    if api == "client":
        client = segment_lite.Client("mp-key", host=os.environ["MP_HOST"], shutdown_timeout=10.0)
        for i in range(count):
            client.track(f"user-{task}", event, {"task": task, "i": i, "pid": os.getpid()})
    else:
        for i in range(count):
            analytics.track(f"user-{task}", event, {"task": task, "i": i, "pid": os.getpid()})
    return count


def _task(args: tuple[str, str, int, int]) -> int:
    return tracked(*args)


def spooled(spool_dir: str, count: int) -> int:
    """Track ``count`` events through a spooling client, and return without flushing."""
    client = segment_lite.Client("mp-key", host=os.environ["MP_HOST"], spool_dir=spool_dir)
    accepted = sum(client.track("user-t", "terminated", {"i": i})[0] for i in range(count))
    return accepted


def terminated(method: str, spool_dir: str, count: int) -> None:
    """A pool worker tracks, then ``with Pool()`` exits: terminate() kills the worker with SIGTERM."""
    with multiprocessing.get_context(method).Pool(1) as pool:
        assert pool.apply(spooled, (spool_dir, count)) == count


def main() -> None:
    if sys.argv[1] == "terminated":
        terminated(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    method = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    context = multiprocessing.get_context(method)
    # The parent uses the library first, so its default client has a queue and a thread
    # when the children are made (what a forked child inherits).
    analytics.track("parent", "parent", {"pid": os.getpid()})
    for api in APIS:
        children = [
            context.Process(target=tracked, args=("process", api, task, count)) for task in range(TASKS)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join()
            assert child.exitcode == 0, child.exitcode
        pool = context.Pool(2)
        assert sum(pool.map(_task, [("pool", api, task, count) for task in range(TASKS)])) == TASKS * count
        pool.close()
        pool.join()
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
            tasks = [("executor", api, task, count) for task in range(TASKS)]
            assert sum(executor.map(_task, tasks)) == TASKS * count


if __name__ == "__main__":
    main()
