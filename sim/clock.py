"""The simulator's clock: wall time plus an offset that only moves forward.

Job states are computed from ``now_ms() - submitted``, so ``POST /_sim/clock {"advance_ms": N}`` drives every
job (and its webhooks) forward without anyone sleeping; without it, jobs progress in real time.
"""

from __future__ import annotations

import time

_offset_ms = 0


def now_ms() -> int:
    return int(time.time() * 1000) + _offset_ms


def advance(ms: int) -> int:
    """Move the clock ``ms`` forward (never back: a job's past must stay its past); the new time."""
    global _offset_ms
    if ms < 0:
        raise ValueError("the clock only moves forward")
    _offset_ms += ms
    return now_ms()
