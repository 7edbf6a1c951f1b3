"""The garbage collector's policy for a process that carries calls' media (docs/PERFORMANCE.md).

A collection holds the interpreter lock for its whole length, so while it runs no call's audio moves. Young
collections are short; a full one walks every object the collector tracks, and a call keeps about 150 of them for
as long as it lasts (locks, events, queues, sockets, timers), so its pause grows with the calls: about 6-9 ms at
200 calls on the development machine, the one thing that still made frames late there. Two settings:

* ``gc.freeze()`` once the process is up: what it loaded (modules, settings, prompts) lives as long as the
  process and is never walked again.
* A full collection after ``FULL_EVERY`` young-generation-1 collections instead of CPython's 10: at 200 calls
  that is about once a minute instead of every 6 s. The pause is no shorter, only ten times rarer; what waits
  longer to be freed is a few ended calls' cyclic garbage (about 150 objects each), not a growing amount.
"""

from __future__ import annotations

import gc
from typing import Final

FULL_EVERY: Final = 100  # generation-1 collections between two full ones (CPython's default: 10)


def settle(full_every: int = FULL_EVERY) -> None:
    """Call once start-up is done, before the first call: freeze what is loaded and space out full collections
    (``full_every``: generation-1 collections between two full ones)."""
    if full_every < 1:
        raise ValueError(f"full_every must be 1 or more, not {full_every}")
    gc.collect()
    gc.freeze()
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, full_every)
