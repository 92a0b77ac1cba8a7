"""Asynchronous jobs whose state is a pure function of the sim clock, shared by videos, fal and RunPod.

A job is queued for ``queue_ms`` after submission, runs for ``run_ms``, then ends as its scripted outcome
(directives ``outcome``, ``error_code``, ``error_message``). Outcome ``timeout`` never ends by itself; an
execution timeout (RunPod's policy) ends a run that goes on too long as ``timed_out``, and a client's cancel
ends it as ``cancelled``: whichever comes first wins. Each protocol renders these canonical states
(queued, running, completed, failed, cancelled, timed_out) in its own vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sim import clock
from sim.http import Directives

QUEUED, RUNNING, COMPLETED, EXPIRED = "queued", "running", "completed", "expired"


@dataclass(kw_only=True)
class Job:
    id: str
    script: Directives
    submitted_ms: int = field(default_factory=clock.now_ms)
    cancelled_ms: int | None = None
    execution_timeout_ms: int | None = None
    expires_ms: int | None = None

    @property
    def started_ms(self) -> int:
        return self.submitted_ms + self.script.queue_ms

    def end(self) -> tuple[int, str] | None:
        """When and how the job ends, or None while nothing will end it."""
        ends = []
        if self.script.outcome != "timeout":
            ends.append((self.started_ms + self.script.run_ms, self.script.outcome))
        if self.execution_timeout_ms is not None:
            ends.append((self.started_ms + self.execution_timeout_ms, "timed_out"))
        if self.cancelled_ms is not None:
            ends.append((self.cancelled_ms, "cancelled"))
        if self.expires_ms is not None:
            ends.append((self.expires_ms, EXPIRED))
        return min(ends) if ends else None

    def state(self, now: int) -> str:
        end = self.end()
        if end and now >= end[0]:
            return end[1]
        return QUEUED if now < self.started_ms else RUNNING

    def ended_ms(self, now: int) -> int | None:
        end = self.end()
        return end[0] if end and now >= end[0] else None

    def queued_for(self, now: int) -> int:
        """Milliseconds spent in the queue so far (RunPod's delayTime)."""
        return min(self._stop(now), self.started_ms) - self.submitted_ms

    def ran_for(self, now: int) -> int:
        """Milliseconds spent running so far (RunPod's executionTime)."""
        return max(self._stop(now) - self.started_ms, 0)

    def progress(self, now: int) -> int:
        """Percent done: rises with run time, 100 only once completed."""
        if self.state(now) == COMPLETED:
            return 100
        done = self.ran_for(now) * 100 // self.script.run_ms if self.script.run_ms else 100
        return min(done, 99)

    def cancel(self, now: int) -> None:
        if self.ended_ms(now) is None:
            self.cancelled_ms = now

    def rerun(self, now: int) -> None:
        """Queue the job again from now; the retry succeeds (a script fails a job once)."""
        self.submitted_ms, self.cancelled_ms = now, None
        self.script = replace(self.script, outcome=COMPLETED)

    def webhook_due(self) -> int | None:
        """When the completion webhook is due: at the end, or as the run starts for ``webhook=early``;
        never for a job that never ends or is deleted unfinished."""
        end = self.end()
        if end is None or end[1] == EXPIRED:
            return None
        return min(self.started_ms, end[0]) if self.script.webhook == "early" else end[0]

    def _stop(self, now: int) -> int:
        ended = self.ended_ms(now)
        return now if ended is None else ended
