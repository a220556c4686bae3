"""Threads released at one barrier, for tests of writers that race on one lake."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


def at_once(call: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """`call(item)` for each item, each on a thread of its own, all started together: what
    each returned, or the exception it raised, in the order of `items`."""
    start = threading.Barrier(len(items))
    outcomes: list[Any] = [None] * len(items)

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = call(items[index])
        except Exception as exc:  # handed to the test, which asserts on it
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(items))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
