"""The agent's one worker thread and the queue other threads hand it work through.

os-ken's event handlers, the control socket and signal handlers never touch
a switch: they queue work here.  One thread does it all, one piece at a
time, so two changes to the same switch never interleave and no lock is
needed around the agent's state.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from os_ken.lib import hub

from controller.waiting import Signal

LOG = logging.getLogger("brtun.agent")


@dataclass
class _Job:
    work: Callable[[], Any]
    done: Signal = field(default_factory=Signal)
    result: Any = None
    error: BaseException | None = None


class Worker:
    """Runs queued jobs, then one round of the agent's own work, whenever woken or every `poll_interval`."""

    def __init__(self, round_: Callable[[], None], poll_interval: float) -> None:
        self._round = round_
        self._poll_interval = poll_interval  # the database replica is looked at at least this often
        self._jobs: collections.deque[_Job] = collections.deque()
        self._wake = Signal()
        self._running = False

    def start(self) -> None:
        self._running = True
        hub.spawn(self._loop)

    def stop(self) -> None:
        self._running = False
        self._wake.set()

    def wake(self) -> None:
        """Run a round now rather than at the next poll (any thread may call it)."""
        self._wake.set()

    def call(self, work: Callable[[], Any], timeout: float = 120) -> Any:
        """Run `work` on the worker (between two rounds) and return its result."""
        job = _Job(work)
        self._jobs.append(job)
        self._wake.set()
        if not job.done.wait(timeout=timeout):
            raise TimeoutError(f"the agent's worker did not get to the request in {timeout:.0f} s")
        if job.error is not None:
            raise job.error
        return job.result

    def post(self, work: Callable[[], Any]) -> None:
        """Queue `work` without waiting (signal handlers use this: they must not block)."""
        self._jobs.append(_Job(work))
        self._wake.set()

    def _loop(self) -> None:
        while self._running:
            self._wake.wait(timeout=self._poll_interval)
            self._wake.clear()
            if not self._running:
                return
            try:
                self._run_jobs()
                self._round()
            except Exception:  # keep the agent alive; the next round retries
                LOG.exception("worker round failed; retrying")
                hub.sleep(1)

    def _run_jobs(self) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            try:
                job.result = job.work()
            except Exception as error:
                job.error = error
            job.done.set()
