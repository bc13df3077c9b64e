"""The local backend: runs as subprocesses on this machine, as many at once as it has room for.

One slot per concurrent run, each with its CPU threads and its GPUs fixed up front, so two runs
never share a GPU by accident. A thread per slot waits on its run's subprocess; the threads do
no work themselves, the subprocesses do.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from storm_wm.errors import StormError
from storm_wm.sweep.execute import Outcome, execute_run, stop
from storm_wm.sweep.plan import RunSpec


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask), not the machine's total."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """CUDA device ids this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    if not Path("/proc/driver/nvidia").exists() and shutil.which("nvidia-smi") is None:
        return []  # no NVIDIA driver: skip importing torch (seconds) just to count zero GPUs
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip()][:count]
    return [str(index) for index in range(count)]


def run_environment(cpus_per_run: int, devices: str | None) -> dict[str, str]:
    """What a run adds to its environment: as many math-library threads as CPUs it asked for,
    so runs don't contend, and the GPUs it may see (`""`: none; None: those Ray granted)."""
    threads = str(cpus_per_run)
    environment = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if devices is not None:
        environment["CUDA_VISIBLE_DEVICES"] = devices
    return environment


def plan_slots(
    cpus_per_run: int, gpus_per_run: float, max_concurrent: int | None, gpus: list[str]
) -> list[dict[str, str]]:
    """The environment of each concurrent slot: threads, and CUDA_VISIBLE_DEVICES.

    A fractional `gpus_per_run` (0.5, 0.25) packs 1 / gpus_per_run runs on each GPU; zero hides
    every GPU from the runs.
    """
    if gpus_per_run > 0 and not gpus:
        raise StormError(
            f"--gpus-per-run {gpus_per_run:g} but this machine has no GPU; pass --gpus-per-run 0"
        )
    slots = max(1, cpu_count() // cpus_per_run)
    if max_concurrent is not None:
        slots = min(slots, max_concurrent)
    if gpus_per_run >= 1:
        per_run = int(gpus_per_run)
        firsts = range(0, len(gpus) - per_run + 1, per_run)
        devices = [",".join(gpus[first : first + per_run]) for first in firsts]
        if not devices:
            raise StormError(
                f"--gpus-per-run {gpus_per_run:g} but this machine has {len(gpus)} GPUs; "
                f"pass --gpus-per-run {len(gpus)} or less"
            )
    elif gpus_per_run > 0:
        devices = [gpu for gpu in gpus for _ in range(int(1 / gpus_per_run))]
    else:
        devices = [""] * slots
    return [run_environment(cpus_per_run, group) for group in devices[:slots]]


class LocalBackend:
    """Runs on this machine, `capacity` at a time."""

    def __init__(self, cpus_per_run: int, gpus_per_run: float | None, max_concurrent: int | None):
        gpus = visible_gpus()
        if gpus_per_run is None:
            gpus_per_run = 1.0 if gpus else 0.0
        environments = plan_slots(cpus_per_run, gpus_per_run, max_concurrent, gpus)
        self.capacity = len(environments)
        self.description = (
            f"local backend: {self.capacity} runs at a time, {cpus_per_run} CPU and "
            f"{gpus_per_run:g} GPU each ({cpu_count()} CPUs, {len(gpus)} GPUs here)"
        )
        self._free_slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.capacity):
            self._free_slots.put(slot)
        self._environments = environments
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="storm-wm-sweep")
        self._futures: dict[Future, RunSpec] = {}
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def _track(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes = {known for known in self._processes if known.poll() is None}
            self._processes.add(process)
            if self._stopping:  # started while cancel() was stopping the others
                process.terminate()

    def _execute(self, run: RunSpec, attempt: int) -> Outcome:
        slot = self._free_slots.get()
        try:
            return execute_run(
                run, attempt, f"local slot {slot}", self._environments[slot], on_start=self._track
            )
        except OSError as error:  # e.g. the run directory cannot be created
            return Outcome(finished=False, error=f"{type(error).__name__}: {error}")
        finally:
            self._free_slots.put(slot)

    def submit(self, run: RunSpec, attempt: int) -> None:
        self._futures[self._pool.submit(self._execute, run, attempt)] = run

    def wait(self, timeout: float) -> list[tuple[RunSpec, Outcome]]:
        """The runs that ended within `timeout` seconds, with their outcomes."""
        done, _ = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(self._futures.pop(future), future.result()) for future in done]

    def cancel(self) -> None:
        """Stop every running run; each gets the time to write a last checkpoint."""
        for future in self._futures:
            future.cancel()
        with self._lock:
            self._stopping = True
            processes = list(self._processes)
        stop(processes)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
