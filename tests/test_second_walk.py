"""A newcomer's second walk: the rough edges of resuming, hints, names, estimates and logs.

Runs are toy:catch with tiny models, through the `storm-wm` command line as a subprocess where
that is how a user meets the behaviour (in this process where only the message matters).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import test_first_hour as first_hour
from storm_wm import cli
from storm_wm.config import build_config
from storm_wm.persistence import replay_store
from storm_wm.persistence.checkpoint import list_checkpoints
from storm_wm.run import estimate
from test_first_hour import storm_wm

STEPS = 80

pytestmark = pytest.mark.usefixtures("one_thread")


def train_arguments(run_dir: Path, *extra: str) -> list[str]:
    """As the first walk's runs (the same tiny networks and schedule), 80 steps long."""
    return first_hour.train_arguments(run_dir, *extra, steps=STEPS)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = storm_wm(*train_arguments(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def copy_run(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


# A damaged config.json is named, with what is wrong in it.


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"agent": {"gamma": "abc"}}', "agent.gamma must be float, got 'abc'"),
        ('{"bogus": {}}', "unknown config field 'bogus'"),
        ("{}", "it is empty ({})"),
        ('{"agent": 5}', "agent must be an object of fields, got 5"),
    ],
)
@pytest.mark.parametrize("command_name", ["resume", "eval"])
def test_a_damaged_config_json_is_named_with_its_problem(
    finished_run: Path, tmp_path: Path, capsys, content: str, problem: str, command_name: str
) -> None:
    run_dir = copy_run(finished_run, tmp_path / "run")
    (run_dir / "config.json").write_text(content)
    if command_name == "resume":
        arguments = ["train", "--resume", str(run_dir), "--no-progress"]
    else:
        arguments = ["eval", str(run_dir), "--episodes", "1"]
    assert cli.main(arguments) == 2
    error = one_line(capsys.readouterr().err)
    assert f"{run_dir / 'config.json'} is damaged: {problem}" in error, error
    assert "checkpoint" not in error  # the file is to blame, not the checkpoints


def test_a_config_json_missing_sections_lists_them(finished_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(finished_run, tmp_path / "run")
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["world_model"], saved["seed"]
    (run_dir / "config.json").write_text(json.dumps(saved))
    result = storm_wm("train", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 2
    assert "config.json is damaged: it lacks world_model, seed;" in one_line(result.stderr)


# A log (not a terminal) hears from a long evaluation by time, not only every tenth.


class Finished:
    """What evaluate() hands its progress callback: the returns of the episodes done so far."""

    def __init__(self, count: int) -> None:
        self.returns = [1.0] * count

    def __len__(self) -> int:
        return len(self.returns)


def test_eval_progress_in_a_log_is_printed_at_least_every_30_seconds() -> None:
    from storm_wm.commands.eval import Progress

    now = [0.0]
    log = io.StringIO()  # not a terminal
    progress = Progress(log, requested=1_000_000, clock=lambda: now[0])
    for done, seconds in [(1, 0.0), (2, 10.0), (3, 29.9), (4, 30.0), (5, 45.0), (6, 61.0)]:
        now[0] = seconds
        progress(Finished(done))
    lines = log.getvalue().splitlines()
    assert [line.split(" episodes")[0] for line in lines] == [
        "eval: 1/1000000",
        "eval: 4/1000000",
        "eval: 6/1000000",
    ]
    progress(Finished(100_000))  # a tenth: printed whatever the time
    assert log.getvalue().splitlines()[-1].startswith("eval: 100000/1000000")


# Which settings a resume keeps, said when it changes them, with a readable history.


def test_a_resume_keeps_the_budget_and_checkpoint_count_and_nothing_else(
    finished_run: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(finished_run, tmp_path / "run")
    once = ["--train.checkpoint_every", "20", "--train.log_every", "10", "--device", "cpu"]
    result = storm_wm(
        "train",
        "--resume",
        str(run_dir),
        "--no-progress",
        "--steps",
        "120",
        "--train.checkpoint_keep",
        "5",
        *once,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "storm-wm: resuming at step 80 toy:catch" in result.stdout  # the header, all the same
    assert (
        "storm-wm: from now on (config.json updated): train.steps 80 -> 120; "
        "train.checkpoint_keep 3 -> 5" in result.stdout
    )
    assert (
        "storm-wm: for this resume only (config.json keeps the run's): device 'auto' -> 'cpu'; "
        "train.checkpoint_every 40 -> 20; train.log_every 20 -> 10" in result.stdout
    )
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["train"]["steps"], saved["train"]["checkpoint_keep"]) == (120, 5)
    assert (saved["train"]["checkpoint_every"], saved["train"]["log_every"]) == (40, 20)
    assert saved["device"] == "auto"
    (record,) = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert record["resumed_at_step"] == 80
    assert record["kept_in_config"] == {"train.steps": [80, 120], "train.checkpoint_keep": [3, 5]}
    assert record["this_resume_only"]["train.checkpoint_every"] == [40, 20]
    assert [step for step, _ in list_checkpoints(run_dir)] == [40, 80, 100, 120]

    # A plain resume (`make train`) keeps the budget and count, and the run's own interval.
    result = storm_wm("train", "--resume", str(run_dir), "--no-progress", "--steps", "160")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "for this resume only" not in result.stdout
    assert [step for step, _ in list_checkpoints(run_dir)] == [40, 80, 100, 120, 160]
    assert len((run_dir / "resumes.jsonl").read_text().splitlines()) == 2


# Hints work when pasted, whatever the run directory is called, and never start a surprise.


def test_a_pasted_hint_resumes_a_run_dir_with_spaces(finished_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(finished_run, tmp_path / "my run dir")
    refused = storm_wm(*train_arguments(run_dir))
    assert refused.returncode == 2
    hint = one_line(refused.stderr).split("`")[1]
    assert hint.endswith(f"train --resume '{run_dir}'")
    pasted = subprocess.run(
        ["bash", "-c", f"{hint} --steps 100 --no-progress"],
        capture_output=True,
        text=True,
        env=first_hour.ENV,
        timeout=300,
    )
    assert pasted.returncode == 0, pasted.stderr[-2000:]
    assert "storm-wm: resuming at step 80 toy:catch (toy+tiny, seed 1) for 100 steps" in (
        pasted.stdout
    )
    assert list_checkpoints(run_dir)[-1][0] == 100


def test_the_missing_run_hint_carries_the_game_and_options(tmp_path: Path, capsys) -> None:
    nothing = tmp_path / "no run"
    assert cli.main(["train", "--resume", str(nothing), "--preset", "toy+tiny"]) == 2
    error = one_line(capsys.readouterr().err)
    assert f"train --game GAME --preset toy+tiny --run-dir '{nothing}'`" in error
    assert cli.main(["train", "--resume", str(nothing), "--game", "Breakout", "--seed", "3"]) == 2
    assert f"train --game Breakout --seed 3 --run-dir '{nothing}'`" in capsys.readouterr().err
    assert not nothing.exists()


# One game, one name: `--game pong` is Pong in the run directory, config.json and progress bar.


def test_a_game_typed_in_lower_case_gets_its_own_name_everywhere(tmp_path: Path) -> None:
    arguments = [
        "train",
        "--game",
        "pong",
        "--preset",
        "debug+tiny",
        "--steps",
        "6",
        "--train.video_every",
        "0",
        "--train.diagnostics_every",
        "0",
    ]
    result = storm_wm(*arguments, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["Pong_debug-tiny_seed1"]
    run_dir = tmp_path / "runs" / "Pong_debug-tiny_seed1"
    assert json.loads((run_dir / "config.json").read_text())["env"]["game"] == "Pong"
    assert "Pong: 100%" in result.stderr and "pong" not in result.stderr
    again = storm_wm(*arguments[:2], "Pong", *arguments[3:], "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "runs/Pong_debug-tiny_seed1 holds this run already: continuing it" in again.stdout


# A full disk: the message on a line of its own, naming the chunk, with the lasting fix.


def test_a_full_disk_names_the_chunk_on_a_line_of_its_own(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    real_write = replay_store.write_atomically

    def write(path: Path, parts) -> None:
        if path.name.endswith("_000000080.npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, parts)

    monkeypatch.setattr(replay_store, "write_atomically", write)
    run_dir = tmp_path / "run"
    arguments = train_arguments(run_dir, "--steps", "120")
    arguments.remove("--no-progress")  # with the progress bar, as a user meets it
    assert cli.main(arguments) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert err.endswith(last + "\n")  # nothing printed after the message: no stale bar
    chunk = run_dir / "replay" / "chunk_000000040_000000080.npz"
    assert last.startswith(f"storm-wm train: error: cannot write replay chunk {chunk}: No space")
    assert "the checkpoint of step 40 is intact" in last
    assert f"train --resume {run_dir} --train.checkpoint_keep 1`" in last
    assert "toy:catch:" in err.splitlines()[-2]  # the bar's line ended before the message


# A lost replay range: warned about once; its unusable chunks set aside.


def test_a_lost_replay_range_is_warned_about_once_and_its_chunks_set_aside(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run_dir = copy_run(finished_run, tmp_path / "run")
    damaged = run_dir / "replay" / "chunk_000000000_000000040.npz"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "120", "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "(40 of 80 lost" in warnings[0]
    assert f"moved the 1 unusable chunk to {run_dir / 'replay' / 'unused'}" in warnings[0]
    assert (run_dir / "replay" / "unused" / damaged.name).exists() and not damaged.exists()
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "160", "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err  # the loss was said once
    assert list_checkpoints(run_dir)[-1][0] == 160


# The start-of-run estimate: the steps left, from a measurement that repeats.


class FakeEnv:
    class action_space:  # noqa: N801 (the attribute gymnasium envs have)
        n = 6


def test_the_estimate_of_a_resumed_run_counts_the_steps_left(monkeypatch, capsys) -> None:
    monkeypatch.setattr(estimate, "update_flops", lambda config, actions: 1.478e12)
    monkeypatch.setattr(estimate, "matmul_flops_per_second", lambda: 50e9)
    monkeypatch.setattr(estimate, "threads_in_use", lambda: 2)
    config = build_config("atari100k")
    estimate.announce_workload(config, torch.device("cpu"), FakeEnv())
    start = capsys.readouterr().err
    # 98,976 updates of 1.478 TFLOP at 2 x 50 x 0.58 GFLOP/s: 2.52e6 s, 29 days.
    assert "98,976 updates of 1.48 TFLOP, about 29 days on this CPU" in start
    assert "2 threads at 50 GFLOP/s each" in start
    estimate.announce_workload(config, torch.device("cpu"), FakeEnv(), done=50_000)
    # (100,000 - 50,000) updates left: about 15 days
    assert "50,000 updates left of 1.48 TFLOP, about 15 days" in capsys.readouterr().err
    assert (
        estimate.updates_left(config, 99_999) == 1 and estimate.updates_left(config, 500) == 98_976
    )


def test_the_speed_is_measured_on_one_thread_and_the_setting_put_back() -> None:
    threads = torch.get_num_threads()
    calls = []
    real_mm = torch.mm

    def mm(left, right):
        calls.append(torch.get_num_threads())
        return real_mm(left, right)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(estimate.torch, "mm", mm)
        speed = estimate.matmul_flops_per_second(size=32, budget=0.0)
    assert speed > 0 and len(calls) >= 4  # a warm-up product, then at least three timed
    assert set(calls) == {1} and torch.get_num_threads() == threads
