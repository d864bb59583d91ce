"""Run work at a fixed rate: the next run is due one interval after the last one was due.

A loop that sleeps a whole interval after each run drifts by the run's own duration (a
checkpoint that takes 0.2 s to sign under load would come every 1.2 s, not every second). Here
a run that overran its slot starts the next one at once, and slots missed are not made up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_every(
    interval: float,
    stop: threading.Event,
    action: Callable[[], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call ``action`` every ``interval`` seconds until ``stop`` is set (first after one)."""
    if interval <= 0:
        raise ValueError(f"an interval must be positive, not {interval}")
    due = clock() + interval
    while not stop.wait(max(0.0, due - clock())):
        action()
        due += interval
        now = clock()
        if due < now:  # overran: start again from now, do not make up missed slots
            due = now
