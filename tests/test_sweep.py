"""storm-wm sweep: planning, bookkeeping and progress by hand; whole sweeps through the real CLI.

The sweeps run tiny real runs (toy:catch and Pong, the debug preset, 40 steps) as a user
would: `python -m storm_wm.cli sweep ...` in a subprocess, on the local backend and on a local
Ray instance limited to 2 CPUs.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import psutil
import pytest

from storm_wm.cli import main
from storm_wm.errors import StormError
from storm_wm.games import ATARI_100K_GAMES
from storm_wm.logs.records import records
from storm_wm.persistence.checkpoint import list_checkpoints
from storm_wm.sweep import backends
from storm_wm.sweep.execute import resumes, run_is_finished
from storm_wm.sweep.plan import RunSpec, default_sweep_dir, parse_games, parse_seeds, run_dir_name
from storm_wm.sweep.progress import RunTracker, last_step
from storm_wm.sweep.state import RunRecord, SweepState, sweep_lock
from storm_wm.text import format_duration

TINY = [
    "--preset",
    "debug",
    "--steps",
    "40",
    "--eval-episodes",
    "1",
    "--train.warmup_steps",
    "20",
    "--train.checkpoint_every",
    "20",
    "--train.log_every",
    "10",
    "--env.max_episode_frames",
    "100",
    "--cpus-per-run",
    "1",
]
TWO_BY_TWO = ["--games", "toy:catch,Pong", "--seeds", "1-2", *TINY, "--max-concurrent", "2"]
RUN_NAMES = ("toy-catch_seed1", "toy-catch_seed2", "Pong_seed1", "Pong_seed2")


def sweep_command(out: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "storm_wm.cli", "sweep", *arguments, "--out", str(out)]


def run_sweep(out: Path, *arguments: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(out, *arguments), capture_output=True, text=True, timeout=timeout
    )


def attempt_headers(log: Path) -> list[str]:
    """The sweep's header line of each attempt that ran this step of the run."""
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith("=== storm-wm sweep")]


def report_games(out: Path) -> list[str]:
    """The game of each run in the sweep's report, sorted."""
    with (out / "report" / "runs.csv").open() as file:
        return sorted(row["game"] for row in csv.DictReader(file))


def statuses(out: Path) -> dict[str, tuple[str, int]]:
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    return {name: (record["status"], record["attempts"]) for name, record in runs.items()}


def ray_missing_reason() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed: pip install 'storm-wm[ray]'"
    return None


def train_resume_missing_reason() -> str | None:
    help_text = subprocess.run(
        [sys.executable, "-m", "storm_wm.cli", "train", "--help"], capture_output=True, text=True
    ).stdout
    if "--resume" not in help_text:
        return "`storm-wm train --help` lacks --resume: the sweep resumes runs through it"
    return None


# -- planning, state and progress, by hand ---------------------------------------------------


def test_seeds_parse_ranges_and_lists_and_refuse_nonsense():
    assert parse_seeds("1-5") == (1, 2, 3, 4, 5)
    assert parse_seeds("1,3, 7-8") == (1, 3, 7, 8)
    with pytest.raises(StormError, match="backwards; write 1-3"):
        parse_seeds("3-1")
    with pytest.raises(StormError, match="seed 2 twice"):
        parse_seeds("1-3,2")
    with pytest.raises(StormError, match="write e.g. 1-5"):
        parse_seeds("one")


def test_games_resolve_to_canonical_names_and_atari26_is_the_benchmark():
    assert parse_games("atari26") == ATARI_100K_GAMES
    assert parse_games("pong, TOY:catch") == ("Pong", "toy:catch")
    with pytest.raises(StormError, match="did you mean: Pong"):
        parse_games("Pong,Pongg")
    with pytest.raises(StormError, match="Pong twice"):
        parse_games("Pong,pong")


def test_bad_arguments_are_one_line_errors_before_anything_runs(tmp_path, capsys):
    cases = {
        ("--games", "Pongg"): "did you mean: Pong",
        ("--games", "Pong", "--seed", "3"): "--seed is set per run by the sweep",
        ("--games", "Pong", "--train.nonsense", "1"): "unknown config field 'train.nonsense'",
        ("--games", "Pong", "--address", "auto"): "add --backend ray",
        ("--games", "Pong", "--cpus-per-run", "0"): "--cpus-per-run must be at least 1",
    }
    for arguments, message in cases.items():
        assert main(["sweep", *arguments, "--out", str(tmp_path / "sweep")]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    assert not (tmp_path / "sweep").exists()


def test_rerunning_with_other_arguments_refuses_and_names_the_difference(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    arguments = {
        "games": ["Pong"],
        "seeds": [1, 2],
        "preset": "debug",
        "steps": None,
        "eval_episodes": None,
        "train_options": [],
    }
    SweepState(out / "sweep.json", arguments, {}).save()
    code = main(
        ["sweep", "--games", "Pong", "--seeds", "1-3", "--preset", "debug", "--out", str(out)]
    )
    assert code == 2
    assert "started with --seeds 1,2, not --seeds 1,2,3" in capsys.readouterr().err


def test_a_second_sweep_on_the_same_directory_is_refused_while_the_first_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    with sweep_lock(out):  # as a running sweep holds it
        code = main(["sweep", "--games", "Pong", "--seeds", "1", "--out", str(out)])
    assert code == 2
    assert f"another storm-wm sweep (pid {os.getpid()}) is running in {out}" in (
        capsys.readouterr().err
    )


def test_ray_backend_without_ray_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    code = main(
        [
            "sweep",
            "--games",
            "Pong",
            "--seeds",
            "1",
            "--backend",
            "ray",
            "--out",
            str(tmp_path / "sweep"),
        ]
    )
    assert code == 2
    assert "pip install 'storm-wm[ray]'" in capsys.readouterr().err


def test_local_slots_give_each_run_its_own_gpus_and_threads(monkeypatch):
    monkeypatch.setattr(backends, "cpu_count", lambda: 16)
    gpus = ["0", "1", "2", "3"]
    slots = backends.plan_slots(2, 1, None, gpus)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in slots] == ["0", "1", "2", "3"]
    assert slots[0]["OMP_NUM_THREADS"] == "2"
    pairs = backends.plan_slots(1, 2, None, gpus)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in pairs] == ["0,1", "2,3"]
    halves = backends.plan_slots(1, 0.5, None, gpus)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in halves] == [
        "0",
        "0",
        "1",
        "1",
        "2",
        "2",
        "3",
        "3",
    ]
    cpu_only = backends.plan_slots(4, 0, 3, gpus)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in cpu_only] == ["", "", ""]  # max_concurrent
    assert len(backends.plan_slots(4, 0, None, [])) == 4  # 16 CPUs / 4 per run
    with pytest.raises(StormError, match="pass --gpus-per-run 0"):
        backends.plan_slots(1, 1, None, [])


def test_what_a_run_needs_is_read_from_its_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert not resumes(run_dir)  # nothing started: train --run-dir
    (run_dir / "config.json").write_text("{}")
    assert resumes(run_dir) and not run_is_finished(run_dir)  # started: train --resume
    (run_dir / "eval.json").write_text("{}")
    assert run_is_finished(run_dir)


def test_directory_names_dash_what_a_path_cannot_hold_and_keep_the_plus_between_games():
    sweep_dir = default_sweep_dir("Pong,toy:catch", ("Pong", "toy:catch"), "toy+tiny", "1-2")
    assert sweep_dir == Path("sweeps") / "toy-tiny_Pong+toy-catch_seeds1-2"
    assert run_dir_name("gym:ALE/Pong-v5", 3) == "gym-ALE-Pong-v5_seed3"


def test_a_long_metrics_file_is_read_by_its_tail_whose_cut_line_is_skipped(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step, "pad": "x" * 100}) for step in range(200)]
    metrics.write_text("\n".join(lines) + "\n")
    steps = [record["step"] for record in records(metrics, tail_bytes=1000)]
    assert steps == list(range(steps[0], 200)) and 5 < len(steps) < 1000 // 100
    assert last_step(metrics) == 199


def test_progress_reads_the_last_step_and_computes_the_eta_from_the_rate(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 20, "x": 1}\n{"step": 70, "x": 2}\n{"step": 8')  # last: partial
    assert last_step(metrics) == 70
    run = RunSpec("Pong", 1, tmp_path, (), (), steps=570)
    tracker = RunTracker(run, RunRecord("Pong", 1, status="running"))
    tracker.first_seen, tracker.step = (100.0, 20), 70
    assert tracker.eta(now=110.0) == pytest.approx(100.0)  # 5 steps/s, 500 steps left
    assert format_duration(3725) == "1:02:05" and format_duration(185) == "3:05"  # as the ETA


# -- whole sweeps through the command line ---------------------------------------------------


def check_finished_sweep(out: Path, names: tuple[str, ...]) -> None:
    """Every run evaluated, recorded finished after one attempt, and in the report."""
    assert statuses(out) == {name: ("finished", 1) for name in names}
    for name in names:
        assert json.loads((out / name / "eval.json").read_text())["episodes"] == 1
    assert (out / "report" / "report.md").is_file()
    assert report_games(out) == ["Pong", "Pong", "toy:catch", "toy:catch"]


def descendants(pid: int, seen: dict[int, psutil.Process]) -> None:
    """Add every process below `pid` to `seen` (the sweep's runs, Ray's processes)."""
    try:
        for child in psutil.Process(pid).children(recursive=True):
            seen.setdefault(child.pid, child)
    except psutil.NoSuchProcess:
        pass  # it ended while being listed


def wait_until_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still running after `seconds`."""
    deadline = time.monotonic() + seconds
    while (alive := [p for p in processes if p.is_running()]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


@pytest.mark.slow
def test_ray_sweep_on_a_local_ray_instance_finishes_and_leaves_no_ray_process(tmp_path):
    if reason := ray_missing_reason():
        pytest.skip(reason)
    out = tmp_path / "sweep"
    process = subprocess.Popen(
        sweep_command(out, *TWO_BY_TWO, "--backend", "ray"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Every process the sweep starts (Ray's raylet, GCS, workers, the runs) descends from it.
    seen: dict[int, psutil.Process] = {}
    names: set[str] = set()
    deadline = time.monotonic() + 170
    while process.poll() is None and time.monotonic() < deadline:
        descendants(process.pid, seen)
        names |= {child.name() for child in seen.values() if child.is_running()}
        time.sleep(0.3)
    if process.poll() is None:
        process.kill()
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "a local Ray instance with 2 CPUs" in output
    check_finished_sweep(out, RUN_NAMES)
    assert all("ray task" in attempt_headers(out / name / "train.log")[0] for name in RUN_NAMES)
    assert {"raylet", "gcs_server"} <= names  # a Ray instance of the sweep's own
    alive = wait_until_gone(list(seen.values()), 15)
    assert not alive, [(process.pid, process.name()) for process in alive]


@pytest.mark.slow
def test_local_sweep_killed_midway_resumes_without_rerunning_finished_runs(tmp_path):
    """The 2 x 2 sweep on the local backend, interrupted (Ctrl-C) once two runs have finished
    and another has a checkpoint, then re-run with the same command to the end and its report."""
    if reason := train_resume_missing_reason():
        pytest.skip(reason)
    out = tmp_path / "sweep"
    arguments = [*TWO_BY_TWO, "--train.checkpoint_keep", "0"]  # keep every checkpoint to check
    process = subprocess.Popen(
        sweep_command(out, *arguments),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        descendants(process.pid, seen)
        run_dirs = [out / name for name in RUN_NAMES]
        finished = [run_dir for run_dir in run_dirs if run_is_finished(run_dir)]
        midway = [d for d in run_dirs if list_checkpoints(d) and not run_is_finished(d)]
        if len(finished) >= 2 and midway:  # the toy runs done, a Pong run halfway
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "local backend: 2 runs at a time" in output
    assert "re-run the same command to resume them" in output
    assert not wait_until_gone(list(seen.values()), 10)  # the runs were stopped, not orphaned

    before = statuses(out)
    done_before = [name for name, (status, _) in before.items() if status == "finished"]
    stopped = [name for name, (status, _) in before.items() if status == "interrupted"]
    assert done_before and stopped, before
    evaluated_at = {name: (out / name / "eval.json").stat().st_mtime_ns for name in done_before}
    started = {name: (out / name / "config.json").exists() for name in stopped}
    checkpoints = {
        path: path.stat().st_mtime_ns
        for name in stopped
        for _, path in list_checkpoints(out / name)
    }
    assert checkpoints  # some stopped run had one to resume from

    result = run_sweep(out, *arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 finished, 0 failed" in result.stdout
    after = statuses(out)
    assert set(after.values()) <= {("finished", 1), ("finished", 2)}
    for name in done_before:  # not rerun
        assert after[name] == ("finished", 1)
        assert (out / name / "eval.json").stat().st_mtime_ns == evaluated_at[name]
        assert len(attempt_headers(out / name / "train.log")) == 1
    for name in stopped:  # continued, from their checkpoints where they had any
        assert after[name] == ("finished", 2)
        headers = attempt_headers(out / name / "train.log")
        assert len(headers) == 2 and ("train --resume" in headers[1]) == started[name]
    for path, mtime in checkpoints.items():  # resumed after them, not retrained from scratch
        assert path.stat().st_mtime_ns == mtime
    for name in RUN_NAMES:
        assert json.loads((out / name / "eval.json").read_text())["episodes"] == 1
    assert report_games(out) == ["Pong", "Pong", "toy:catch", "toy:catch"]


@pytest.mark.slow
def test_a_failing_run_is_retried_reported_and_the_others_finish(tmp_path):
    # gym:CartPole-v1 is a registered game without pixels: train refuses it when it starts.
    out = tmp_path / "sweep"
    result = run_sweep(
        out,
        "--games",
        "toy:catch,gym:CartPole-v1",
        "--seeds",
        "1",
        *TINY,
        "--max-concurrent",
        "2",
        "--retries",
        "1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert statuses(out) == {
        "toy-catch_seed1": ("finished", 1),
        "gym-CartPole-v1_seed1": ("failed", 2),
    }
    record = json.loads((out / "sweep.json").read_text())["runs"]["gym-CartPole-v1_seed1"]
    assert "storm-wm needs images" in record["error"]
    assert len(attempt_headers(out / "gym-CartPole-v1_seed1" / "train.log")) == 2
    assert "1 finished, 1 failed" in result.stdout
    assert "failed: gym-CartPole-v1_seed1 after 2 attempts" in result.stdout
    assert report_games(out) == ["toy:catch"]


@pytest.mark.parametrize("gpus", ["1.5", "-0.25", "nan"])
def test_gpus_per_run_is_a_share_of_one_gpu_or_a_whole_number(gpus, tmp_path, capsys):
    arguments = ["sweep", "--games", "Pong", "--backend", "ray", "--gpus-per-run", gpus]
    assert main([*arguments, "--out", str(tmp_path / "sweep")]) == 2
    error = capsys.readouterr().err
    assert "give a share of one GPU from 0 to 1" in error and error.count("\n") == 1, error
    assert not (tmp_path / "sweep").exists()


class FakeRay(types.ModuleType):
    """Just enough of Ray to see what the backend asks it for: a one-GPU, 16-CPU machine."""

    def __init__(self, gpus: float = 1.0):
        super().__init__("ray")
        self.gpus, self.options_seen, self.init_arguments = gpus, [], None
        self.exceptions = types.SimpleNamespace(RayTaskError=RuntimeError, RayError=RuntimeError)

    def init(self, **arguments):
        self.init_arguments = arguments

    def cluster_resources(self):
        return {"CPU": 16.0, "GPU": self.gpus}

    def remote(self, function):
        ray = self

        class Remote:
            def options(self, **options):
                ray.options_seen.append(options)
                return types.SimpleNamespace(remote=lambda *arguments: object())

        return Remote()

    def shutdown(self):
        pass


def test_ray_backend_asks_for_a_quarter_gpu_per_run_so_four_share_one(monkeypatch):
    from storm_wm.sweep.backends import RayBackend

    fake = FakeRay(gpus=1.0)
    monkeypatch.setitem(sys.modules, "ray", fake)
    backend = RayBackend(None, 1, 0.25, None, run_count=4)
    spec = types.SimpleNamespace(name="Pong_seed1")
    for _ in range(4):
        backend.submit(spec, attempt=1)
    assert [options["num_gpus"] for options in fake.options_seen] == [0.25] * 4
    assert all(options["num_cpus"] == 1 for options in fake.options_seen)
    assert "CUDA_VISIBLE_DEVICES" not in backend._environment  # Ray sets it to the shared GPU
    assert "1 CPU and 0.25 GPU per run" in backend.description


def test_ray_backend_refuses_a_gpu_share_on_a_machine_without_gpus(monkeypatch):
    from storm_wm.sweep.backends import RayBackend

    monkeypatch.setitem(sys.modules, "ray", FakeRay(gpus=0.0))
    with pytest.raises(StormError, match="asks for 1 CPUs and 0.25 GPUs but this machine has"):
        RayBackend(None, 1, 0.25, None, run_count=4)
