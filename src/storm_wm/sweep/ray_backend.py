"""The Ray backend: one Ray task per run, scheduled by Ray on a local instance or a cluster.

Ray places each task where its resource request fits (num_cpus, num_gpus) and sets
CUDA_VISIBLE_DEVICES to the GPUs it granted; the task then runs the same subprocesses as the
local backend. Ray's own task retries are off: a failed attempt comes back to the driver, which
retries it the same way on either backend and records it in sweep.json.
"""

from __future__ import annotations

import contextlib
import logging

from storm_wm.errors import StormError
from storm_wm.sweep.execute import STOP_SECONDS, Outcome, execute_run
from storm_wm.sweep.local import cpu_count, run_environment
from storm_wm.sweep.plan import RunSpec


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
