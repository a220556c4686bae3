"""`FlowTasks`: a `concurrent.futures.Executor` whose calls run as Prefect tasks of the
running flow, on its task runner (threads, or Dask worker processes).

The library spreads work over any `Executor` (bucket tasks of a view, the preparing of inbox
files) and coordinates the commits itself; inside a flow this executor makes each call a task
run, so it is retried, logged and shown like any other, and lands where the flow's runner
puts it. Each call becomes `task.submit(fn, spec, label)`: `task` takes the function, its one
argument and a run name, and calls the function (see `bucket_task`, `prepare_file_task`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["FlowTasks"]


class FlowTasks(Executor):
    """An `Executor` whose calls are runs of `task` on the running flow's task runner,
    named by `label(spec, number)`."""

    def __init__(self, task: Any, label: Callable[[Any, int], str]) -> None:
        self._task = task
        self._label = label
        self._count = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._count += 1
        spec = args[0]
        running = self._task.submit(fn, spec, self._label(spec, self._count))
        future: Future[Any] = Future()
        # Running from the start: the task run cannot be called back, so a caller that
        # cancels waits for it instead of believing it never ran.
        future.set_running_or_notify_cancel()

        def settle() -> None:
            try:
                future.set_result(running.result())
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=settle, name="eventlake-flow-task-wait", daemon=True).start()
        return future
