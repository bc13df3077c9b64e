"""The sweep loop: submit runs to a backend, retry failures, record every change, show progress.

The same on either backend (`backends.Backend`). A failed attempt goes to the back of the queue,
so one bad run delays no other, and after `retries` more attempts it is reported and left; the
sweep goes on.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from storm_wm.sweep.backends import Backend
from storm_wm.sweep.execute import run_is_finished
from storm_wm.sweep.plan import RunSpec
from storm_wm.sweep.progress import ProgressDisplay, RunTracker
from storm_wm.sweep.state import SweepState

REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class SweepResult:
    finished: list[RunTracker]
    failed: list[RunTracker]
    seconds: float


def run_sweep(
    runs: tuple[RunSpec, ...],
    state: SweepState,
    backend: Backend,
    display: ProgressDisplay,
    retries: int,
) -> SweepResult:
    """Bring every run to finished or failed. Ctrl-C stops the runs, records them, re-raises.

    The run directories, not sweep.json, decide what is finished: a run whose eval.json exists
    is skipped whatever its record says, and any other run is (re)submitted.
    """
    started = time.monotonic()
    trackers = {run.name: RunTracker(run, state.runs[run.name]) for run in runs}
    queue: deque[RunSpec] = deque()
    for run in runs:
        record = trackers[run.name].record
        if run_is_finished(run.run_dir):
            record.status, record.error, record.log = "finished", None, None
            trackers[run.name].finished_earlier = True
        else:
            record.status = "queued"
            queue.append(run)
    state.save()
    display.refresh(list(trackers.values()), time.time())
    tries: dict[str, int] = {}
    in_flight: set[str] = set()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < backend.capacity:
                run = queue.popleft()
                tracker = trackers[run.name]
                tracker.record.attempts += 1
                tracker.record.status = "running"
                tracker.start_attempt(time.time())
                tries[run.name] = tries.get(run.name, 0) + 1
                backend.submit(run, tracker.record.attempts)
                in_flight.add(run.name)
                state.save()
            for run, outcome in backend.wait(REFRESH_SECONDS):
                in_flight.discard(run.name)
                record = trackers[run.name].record
                if outcome.finished:
                    record.status, record.error, record.log = "finished", None, None
                else:
                    record.error, record.log = outcome.error, outcome.log
                    record.status = "retrying" if tries[run.name] <= retries else "failed"
                    if record.status == "retrying":
                        queue.append(run)
                state.save()
            now = time.time()
            for name in in_flight:
                trackers[name].observe(now)
            display.refresh(list(trackers.values()), now)
    except BaseException:  # Ctrl-C, SIGTERM, or a bug: stop the runs rather than orphan them
        backend.cancel()
        for name in in_flight:  # a run may have written eval.json before its outcome came back
            finished = run_is_finished(trackers[name].run.run_dir)
            trackers[name].record.status = "finished" if finished else "interrupted"
        for run in queue:
            trackers[run.name].record.status = "queued"
        state.save()
        display.refresh(list(trackers.values()), time.time())
        display.close()
        raise
    display.close()
    ended = list(trackers.values())
    return SweepResult(
        finished=[tracker for tracker in ended if tracker.record.status == "finished"],
        failed=[tracker for tracker in ended if tracker.record.status == "failed"],
        seconds=time.monotonic() - started,
    )
