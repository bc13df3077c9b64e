"""Where a sweep's runs execute: on this machine (`LocalBackend`) or as Ray tasks (`RayBackend`).

Both offer what the driver needs (`Backend`) and run each attempt as `execute.execute_run`: the
same subprocesses, the same logs.

Local: one slot per concurrent run, each with its CPU threads and its GPUs fixed up front, so two
runs never share a GPU by accident. A thread per slot waits on its run's subprocess; the threads
do no work themselves, the subprocesses do.

Ray: one task per run, on a local instance or a cluster. Ray places each task where its resource
request fits (num_cpus, num_gpus) and sets CUDA_VISIBLE_DEVICES to the GPUs it granted. Ray's own
task retries are off: a failed attempt comes back to the driver, which retries it the same way on
either backend and records it in sweep.json.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

from storm_wm.errors import StormError
from storm_wm.sweep.execute import STOP_SECONDS, Outcome, execute_run, stop
from storm_wm.sweep.plan import RunSpec


class Backend(Protocol):
    """What the driver needs of a backend: room for `capacity` runs at once, the runs that
    ended (with their outcomes) within `wait`'s timeout, and stopping them all."""

    capacity: int
    description: str

    def submit(self, run: RunSpec, attempt: int) -> None: ...
    def wait(self, timeout: float) -> list[tuple[RunSpec, Outcome]]: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...


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


def ray_task(run: RunSpec, attempt: int, environment: dict[str, str]) -> Outcome:
    """The body of each Ray task (module-level, so workers import it rather than unpickle it)."""
    return execute_run(run, attempt, "ray task", environment)


class RayBackend:
    """Submits runs as Ray tasks; `close` shuts down the Ray instance it started, if any."""

    def __init__(
        self,
        address: str | None,
        cpus_per_run: int,
        gpus_per_run: float | None,
        max_concurrent: int | None,
        run_count: int,
    ):
        try:  # Ray is an optional extra: say how to get it instead of failing with a traceback
            import ray
        except ImportError:
            raise StormError(
                "--backend ray needs Ray, which is not installed: pip install 'storm-wm[ray]'"
            ) from None
        self.ray = ray
        started_here = address is None
        if started_here:  # sized to the sweep when --max-concurrent bounds it, else to the machine
            num_cpus = min(cpu_count(), max_concurrent * cpus_per_run) if max_concurrent else None
            instance = {"address": "local", "num_cpus": num_cpus, "include_dashboard": False}
        else:
            instance = {"address": address}
        try:
            ray.init(**instance, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise StormError(
                f"cannot start or reach Ray at {address or 'a local instance'} ({reason}); "
                "start a cluster with `ray start --head` and pass --address auto"
            ) from None

        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if gpus_per_run is None:
            gpus_per_run = 1.0 if gpus else 0.0
        if started_here and (cpus_per_run > cpus or gpus_per_run > gpus):
            ray.shutdown()
            raise StormError(
                f"a run asks for {cpus_per_run} CPUs and {gpus_per_run:g} GPUs but this machine "
                f"has {cpus:g} and {gpus:g}; lower --cpus-per-run or --gpus-per-run"
            )
        # A run granted no GPU must not use one; Ray sets the GPUs of the others.
        self._environment = run_environment(cpus_per_run, "" if gpus_per_run == 0 else None)
        self._remote = ray.remote(ray_task)
        self._resources = {"num_cpus": cpus_per_run, "num_gpus": gpus_per_run, "max_retries": 0}
        self._refs: dict = {}
        self.capacity = max_concurrent or run_count
        where = "a local Ray instance" if started_here else f"the Ray cluster at {address}"
        self.description = (
            f"ray backend: {where} with {cpus:g} CPUs and {gpus:g} GPUs; "
            f"{cpus_per_run} CPU and {gpus_per_run:g} GPU per run"
            + (f", at most {max_concurrent} at a time" if max_concurrent else "")
        )

    def submit(self, run: RunSpec, attempt: int) -> None:
        task = self._remote.options(**self._resources, name=f"storm-wm {run.name}")
        self._refs[task.remote(run, attempt, self._environment)] = run

    def _outcome(self, ref) -> Outcome:
        errors = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except errors.RayTaskError as error:  # an exception inside the task
            cause = error.cause
            return Outcome(finished=False, error=f"{type(cause).__name__}: {cause}")
        except errors.RayError as error:  # the worker or its node died
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return Outcome(finished=False, error=f"Ray: {first[:300]}")

    def wait(self, timeout: float) -> list[tuple[RunSpec, Outcome]]:
        """The runs that ended within `timeout` seconds, with their outcomes (the driver waits
        only while runs are in flight)."""
        refs = list(self._refs)
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        return [(self._refs.pop(ref), self._outcome(ref)) for ref in ready]

    def cancel(self) -> None:
        """Interrupt the running tasks, which stop their runs with a last checkpoint; kill the
        workers of those that take longer than STOP_SECONDS."""
        refs = list(self._refs)
        for ref in refs:
            with contextlib.suppress(Exception):  # already finished, or its worker is gone
                self.ray.cancel(ref)
        self.ray.wait(refs, num_returns=len(refs), timeout=STOP_SECONDS + 5)
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()
