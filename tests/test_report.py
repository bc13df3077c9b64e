"""`storm-wm report` run the way a user runs it, on fake run directories with known scores.

The runs: 2 games x 2 seeds, with final scores chosen to have round human-normalized scores
(Pong: random -20.7, human 14.6, range 35.3; Breakout: random 1.7, human 30.5, range 28.8):

    Pong      -3.05 -> HNS 0.50,   4.01 -> 0.70;  mean  0.48 -> 0.60
    Breakout   8.90 -> HNS 0.25,  23.30 -> 0.75;  mean 16.10 -> 0.50

so, over these 2 games: mean HNS (0.6 + 0.5) / 2 = 0.55, median 0.55; IQM of the pooled
0.25 0.5 0.7 0.75 after cutting one per end = (0.5 + 0.7) / 2 = 0.6; optimality gap
(0.5 + 0.3 + 0.75 + 0.25) / 4 = 0.45.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storm_wm.analysis.curves import bin_learning_curve
from storm_wm.analysis.runs import load_episode_returns
from storm_wm.cli import main
from storm_wm.errors import StormError

SCORES = {("Pong", 1): -3.05, ("Pong", 2): 4.01, ("Breakout", 1): 8.9, ("Breakout", 2): 23.3}
SAMPLES = "300"  # enough for intervals to exist; the figures checked here are point estimates


def make_run(directory: Path, game: str, seed: int, score: float) -> Path:
    """A run directory as `storm-wm train` and `storm-wm eval` leave it."""
    directory.mkdir(parents=True)
    evaluation = {
        "game": game,
        "game_kind": "atari",
        "protocol": "storm",
        "seed": seed,
        "step": 100000,
        "policy": "sampled",
        "episodes": 2,
        "returns": [score - 1, score + 1],
        "mean": score,
        "std": 1.0,
        "human_normalized": None,
        "checkpoint": "checkpoints/final.pt",
    }
    (directory / "eval.json").write_text(json.dumps(evaluation))
    # episode returns rising with steps: seed 1 ends episodes at 0, 1000, ..., seed 2 at 500, ...
    lines = []
    for index in range(10):
        step = index * 1000 + (seed - 1) * 500
        lines.append(
            {"step": step, "env/episode_return": float(index + seed), "env/episode_length": 9}
        )
        lines.append({"step": step + 10, "world_model/reward_loss": 0.1})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (directory / "config.json").write_text(json.dumps({"env": {"game": game}, "seed": seed}))
    return directory


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [
        make_run(root / f"{game}-{seed}", game, seed, score)
        for (game, seed), score in SCORES.items()
    ]


@pytest.fixture(scope="module")
def report_dir(run_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    arguments = ["report", *map(str, run_dirs), "--reference", "storm", "--out", str(out)]
    assert main([*arguments, "--bootstrap-samples", SAMPLES, "--seed", "3"]) == 0
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row that starts with `first_cell`."""
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row for {first_cell!r}")


def test_per_game_rows(report_dir: Path) -> None:
    markdown = (report_dir / "report.md").read_text()
    # Pong: t(0.975, df=1) = 12.7062 times s / sqrt(2) = |4.01 + 3.05| / 2 = 3.53 -> -+44.85
    # STORM's published Pong mean: (20.8 + 20.5 - 7.4 + 20.4 + 2.1) / 5 = 11.28
    assert table_row(markdown, "Pong") == ["Pong", "0.480", "[-44.4, 45.3]", "2", "0.600", "11.3"]
    assert table_row(markdown, "Breakout")[:5] == [
        "Breakout",
        "16.1",
        "[-75.4, 107.6]",
        "2",
        "0.500",
    ]
    assert "Student-t" in markdown


def test_aggregate_rows(report_dir: Path) -> None:
    markdown = (report_dir / "report.md").read_text()
    ours = table_row(markdown, "storm-wm")
    assert ours[:3] == ["storm-wm", "2", "2"]
    points = [cell.split(" [")[0] for cell in ours[3:]]
    assert points == ["0.550", "0.550", "0.600", "0.450"]  # mean, median, IQM, gap (docstring)
    # STORM on the same 2 games: Pong (11.28 + 20.7) / 35.3 = 0.906, Breakout 14.2 / 28.8 = 0.493,
    # mean (0.906 + 0.493) / 2 = 0.700
    storm = table_row(markdown, "STORM")  # the first STORM row: the same-games table
    assert storm[:3] == ["STORM", "2", "5"] and storm[3].startswith("0.700 [")
    assert "Over the 2 games storm-wm covers (Breakout, Pong), not all 26" in markdown
    assert "| STORM | 26 | 5 | 1.222 [" in markdown  # the published figure, listed apart
    # P(ours > STORM): Pong, -3.05 beats -7.4, 4.01 beats -7.4 and 2.1 -> 3/10; Breakout,
    # 8.9 beats 8, 23.3 beats 18.5 16 13 8 -> 5/10; average 0.4
    assert "| STORM | 2 | 0.400 [" in markdown
    assert "storm_wm.analysis.stats" in markdown and "rliable" in markdown  # footer


def test_csv_files_hold_the_numbers(report_dir: Path) -> None:
    per_game = {(row["method"], row["game"]): row for row in read_csv(report_dir / "per_game.csv")}
    assert int(per_game["storm-wm", "Pong"]["runs"]) == 2
    assert float(per_game["storm-wm", "Pong"]["mean"]) == pytest.approx(0.48)
    assert float(per_game["storm-wm", "Pong"]["human_normalized"]) == pytest.approx(0.6)
    assert float(per_game["STORM", "Pong"]["mean"]) == pytest.approx(11.28)
    assert len([key for key in per_game if key[0] == "STORM"]) == 26

    aggregates = read_csv(report_dir / "aggregates.csv")
    ours = {row["metric"]: row for row in aggregates if row["method"] == "storm-wm"}
    expected = {"mean": 0.55, "median": 0.55, "iqm": 0.6, "optimality_gap": 0.45}
    for metric, value in expected.items():
        assert float(ours[metric]["point"]) == pytest.approx(value)
        assert float(ours[metric]["ci_low"]) <= value <= float(ours[metric]["ci_high"])
    storm_all = [row for row in aggregates if row["method"] == "STORM" and row["games"] == "26"]
    assert float(next(r for r in storm_all if r["metric"] == "mean")["point"]) == pytest.approx(
        1.2221, abs=1e-4
    )

    improvement = read_csv(report_dir / "probability_of_improvement.csv")
    assert [(row["method_y"], row["games"]) for row in improvement] == [("STORM", "2")]
    assert float(improvement[0]["probability"]) == pytest.approx(0.4)

    curves = read_csv(report_dir / "learning_curves.csv")
    assert {row["game"] for row in curves} == {"Pong", "Breakout"}
    assert all(int(row["runs"]) <= 2 for row in curves)
    runs = read_csv(report_dir / "runs.csv")
    assert sorted(float(row["score"]) for row in runs) == sorted(SCORES.values())


def test_plots_are_valid_images(report_dir: Path) -> None:
    for name in ("learning_curves.png", "aggregate_intervals.png", "per_game_hns.png"):
        with Image.open(report_dir / name) as image:
            image.verify()
        with Image.open(report_dir / name) as image:
            assert image.format == "PNG"
            assert image.width >= 300 and image.height >= 200
            assert len(image.convert("L").getcolors(maxcolors=100000)) > 10  # not blank
        assert f"]({name})" in (report_dir / "report.md").read_text()


def test_learning_curve_binning_by_hand() -> None:
    # last step 10, 2 bins [0, 5) and [5, 10]: run 1 has 1 (step 0) and 3 (step 10),
    # run 2 has 5 and 7 (steps 5 and 10, both in bin 2, mean 6)
    runs = [(np.array([0, 10]), np.array([1.0, 3.0])), (np.array([5, 10]), np.array([5.0, 7.0]))]
    curve = bin_learning_curve("Pong", runs, bins=2)
    assert curve is not None
    assert list(curve.steps) == [2.5, 7.5]
    assert list(curve.mean) == [1.0, 4.5]  # bin 1: run 1 only; bin 2: (3 + 6) / 2
    assert list(curve.runs) == [1, 2]
    assert np.isnan(curve.low[0]) and curve.low[1] < 4.5 < curve.high[1]


def test_metrics_file_tolerates_only_a_partly_written_last_line(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    complete = '{"step": 5, "env/episode_return": 2.5}\n{"step": 6, "actor/entropy": 1.0}\n'
    metrics.write_text(complete + '{"step": 9, "env/episo')  # a run still writing
    steps, returns = load_episode_returns(metrics)
    assert list(steps) == [5] and list(returns) == [2.5]
    metrics.write_text('{"step": 9, "env/episo\n' + complete)
    with pytest.raises(StormError, match="metrics.jsonl:1 is not a JSON object"):
        load_episode_returns(metrics)


def test_score_file_as_primary_and_beside_runs(run_dirs: list[Path], tmp_path: Path) -> None:
    score_file = tmp_path / "baseline.json"
    score_file.write_text(json.dumps({"Pong": [14.6, 14.6, -20.7], "Breakout": [16.1]}))
    out = tmp_path / "alone"
    arguments = ["report", str(score_file), "--reference", "", "--out", str(out)]
    assert main([*arguments, "--bootstrap-samples", "50"]) == 0
    markdown = (out / "report.md").read_text()
    # Pong: mean (14.6 + 14.6 - 20.7) / 3 = 2.8333, HNS 23.5333 / 35.3 = 0.667; 3 seeds
    assert table_row(markdown, "Pong")[0:5:3] == ["Pong", "3"]
    assert table_row(markdown, "Pong")[4] == "0.667"
    assert table_row(markdown, "Breakout")[2:5] == ["—", "1", "0.500"]  # one seed: no interval
    assert "# Atari 100k report: baseline" in markdown

    out = tmp_path / "beside"
    arguments = ["report", *map(str, run_dirs), str(score_file), "--reference", "", "--out"]
    assert main([*arguments, str(out), "--bootstrap-samples", "50"]) == 0
    markdown = (out / "report.md").read_text()
    assert table_row(markdown, "game")[-1] == "baseline"
    assert table_row(markdown, "Pong")[-1] == "2.8"
    assert "| baseline | 2 | 1–3 |" in markdown  # ragged runs per game


def run_report(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["report", *arguments])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("no_eval", "has no eval.json"),
        ("reference", "unknown reference method 'muzero': choose from storm, dreamerv3"),
        ("malformed", "is not a readable JSON score file"),
        ("bad_eval", "has no finite 'mean' score"),
        ("same_name", "two methods are named 'STORM'"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    case: str, message: str, run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    arguments = {
        "missing": [str(tmp_path / "nowhere")],
        "no_eval": [str(tmp_path)],
        "reference": [str(run_dirs[0]), "--reference", "storm,muzero"],
        "malformed": [str(tmp_path / "scores.json")],
        "bad_eval": [str(tmp_path / "run")],
        "same_name": [str(run_dirs[0]), "--label", "STORM"],
    }[case]
    (tmp_path / "scores.json").write_text("{not json")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval.json").write_text(json.dumps({"game": "Pong", "mean": None}))
    status, error = run_report([*arguments, "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert error.startswith("storm-wm report: error: ") and error.count("\n") == 1
    assert message in error
    assert not (tmp_path / "out").exists()


def make_setup_run(directory: Path, game: str, seed: int, score: float, **fields) -> Path:
    """A run whose eval.json also records its setup (preset, protocol, bookkeeping, cap)."""
    make_run(directory, game, seed, score)
    evaluation = json.loads((directory / "eval.json").read_text())
    (directory / "eval.json").write_text(json.dumps({**evaluation, **fields}))
    return directory


CAPPED = {
    "preset": "debug",
    "comparable": False,
    "max_episode_frames": 800,
    "comparable_reason": "episodes capped at 800 frames (env.max_episode_frames)",
}


def test_unevaluated_and_partial_runs_are_skipped_with_one_line_each(
    run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    unevaluated = tmp_path / "Pong-3"
    unevaluated.mkdir()
    (unevaluated / "config.json").write_text("{}")
    partial = make_setup_run(tmp_path / "Pong-4", "Pong", 4, 0.0, partial=True)
    out = tmp_path / "out"
    arguments = [*map(str, run_dirs), str(unevaluated), str(partial), "--out", str(out)]
    status, error = run_report([*arguments, "--bootstrap-samples", "50"], capsys)
    assert status == 0
    lines = error.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"storm-wm report: skipping {unevaluated}: no eval.json")
    assert lines[1].startswith(f"storm-wm report: skipping {partial}: its eval.json is partial")
    assert table_row((out / "report.md").read_text(), "Pong")[3] == "2"  # seeds 1 and 2 only
    status, error = run_report([str(unevaluated), "--out", str(tmp_path / "none")], capsys)
    assert status == 2 and "no evaluated run among" in error


def test_an_eval_older_than_the_run_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = make_run(tmp_path / "Pong-1", "Pong", 1, 0.0)  # eval.json scores step 100000
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_000100000.ckpt").write_bytes(b"")
    status, error = run_report([str(run), "--out", str(tmp_path / "a")], capsys)
    assert status == 0 and error == ""
    (run / "checkpoints" / "step_000102500.ckpt").write_bytes(b"")
    status, error = run_report([str(run), "--out", str(tmp_path / "b")], capsys)
    assert status == 0 and error.count("\n") == 1
    assert "eval.json scores step 100000, but the run reached step 102500" in error


def test_runs_of_different_setups_are_separate_methods_and_capped_ones_stay_out_of_hns(
    run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paper = [
        make_setup_run(tmp_path / f"paper-{seed}", "Pong", seed, -3.05, preset="atari100k")
        for seed in (1, 2)
    ]
    debug = [
        make_setup_run(tmp_path / f"debug-{seed}", "Pong", seed, 14.6, **CAPPED) for seed in (1, 2)
    ]
    out = tmp_path / "out"
    arguments = [*map(str, paper + debug), "--reference", "", "--out", str(out)]
    status, error = run_report([*arguments, "--bootstrap-samples", "50"], capsys)
    assert status == 0
    assert "runs of 2 setups are reported as separate methods" in error
    full = "storm-wm [preset atari100k, full-length episodes]"
    capped = "storm-wm [preset debug, capped episodes]"
    per_game = {(row["method"], row["game"]): row for row in read_csv(out / "per_game.csv")}
    assert float(per_game[full, "Pong"]["mean"]) == pytest.approx(-3.05)  # not averaged with 14.6
    assert float(per_game[full, "Pong"]["human_normalized"]) == pytest.approx(0.5)
    assert float(per_game[capped, "Pong"]["mean"]) == pytest.approx(14.6)
    assert per_game[capped, "Pong"]["human_normalized"] == ""
    assert {row["method"] for row in read_csv(out / "aggregates.csv")} == {full}
    markdown = (out / "report.md").read_text()
    assert f"**{capped} on Pong is not comparable with published scores**" in markdown

    # asked for, the capped runs come into the aggregates (still as a method of their own)
    out = tmp_path / "included"
    arguments = [*arguments[:-1], str(out), "--include-capped", "--bootstrap-samples", "50"]
    assert run_report(arguments, capsys)[0] == 0
    assert {row["method"] for row in read_csv(out / "aggregates.csv")} == {full, capped}

    # capped runs alone: raw scores only, no HNS aggregates, no HNS plots
    out = tmp_path / "alone"
    status, _ = run_report(
        [*map(str, debug), "--out", str(out), "--bootstrap-samples", "50"], capsys
    )
    assert status == 0
    assert not [
        row for row in read_csv(out / "aggregates.csv") if row["method"].startswith("storm-wm")
    ]
    assert (
        not (out / "per_game_hns.png").exists() and not (out / "aggregate_intervals.png").exists()
    )
    assert table_row((out / "report.md").read_text(), "Pong")[4] == "—"


def test_different_protocols_are_never_seeds_of_one_method(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storm = make_setup_run(tmp_path / "a", "Pong", 1, 0.0, preset="atari100k")
    standard = make_setup_run(
        tmp_path / "b", "Pong", 2, 5.0, preset="atari100k", protocol="standard"
    )
    out = tmp_path / "out"
    status, _ = run_report(
        [str(storm), str(standard), "--reference", "", "--out", str(out)], capsys
    )
    assert status == 0
    methods = {row["method"]: row for row in read_csv(out / "per_game.csv")}
    assert set(methods) == {"storm-wm [storm protocol]", "storm-wm [standard protocol]"}
    assert all(row["runs"] == "1" for row in methods.values())


def test_score_file_game_names_match_as_train_does(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    scores = tmp_path / "mine.json"
    scores.write_text(json.dumps({"pong": [-3.05], "MsPacMan": [307.3], "ms_pacman ": [1.0]}))
    status, error = run_report([str(scores), "--out", str(tmp_path / "x")], capsys)
    assert status == 2 and "'MsPacMan' and 'ms_pacman ' are both MsPacman" in error
    scores.write_text(json.dumps({"pong": [-3.05], "MsPacMan": [307.3]}))
    out = tmp_path / "out"
    status, error = run_report([str(scores), "--reference", "", "--out", str(out)], capsys)
    assert status == 0
    markdown = (out / "report.md").read_text()
    assert table_row(markdown, "Pong")[4] == "0.500"
    assert table_row(markdown, "MsPacman")[4] == "0.000"  # MsPacman's random score: 307.3
    assert "No random and human scores" not in markdown
    scores.write_text(json.dumps({"Pongg": [1.0]}))
    status, error = run_report([str(scores), "--out", str(tmp_path / "y")], capsys)
    assert status == 2 and error.count("\n") == 1
    assert f"{scores}: unknown game 'Pongg'; did you mean: Pong" in error


def test_a_learning_curve_of_one_point_is_drawn(tmp_path: Path) -> None:
    run = make_run(tmp_path / "Pong-1", "Pong", 1, 0.0)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 900, "env/episode_return": -21.0}))
    out = tmp_path / "out"
    assert main(["report", str(run), "--reference", "", "--out", str(out)]) == 0
    assert len(read_csv(out / "learning_curves.csv")) == 1
    pixels = np.asarray(Image.open(out / "learning_curves.png").convert("RGB")).astype(int)
    curve_blue = np.abs(pixels - np.array([31, 119, 180])).sum(axis=-1) < 40  # matplotlib's C0
    assert curve_blue.sum() >= 9  # the marker


def test_games_of_one_setup_each_stay_one_method(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pong = make_setup_run(tmp_path / "pong", "Pong", 1, -3.05, **CAPPED)
    catch = make_setup_run(tmp_path / "catch", "toy:catch", 1, 0.5, preset="toy+debug")
    out = tmp_path / "out"
    status, error = run_report(
        [str(pong), str(catch), "--reference", "", "--out", str(out)], capsys
    )
    assert status == 0 and error == ""  # no game has runs of two setups: nothing to split
    markdown = (out / "report.md").read_text()
    assert table_row(markdown, "Pong")[4] == "—" and table_row(markdown, "toy:catch")[1] == "0.500"
    assert "**storm-wm on Pong is not comparable with published scores**" in markdown


def test_a_second_run_of_one_game_and_seed_is_skipped_naming_the_one_kept(
    run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`storm-wm report runs/*` with runs/pong_... and runs/Pong_... of one seed: a report."""
    older = make_setup_run(tmp_path / "pong_seed1", "Pong", 1, 20.0, step=50_000)
    out = tmp_path / "out"
    arguments = [*map(str, run_dirs), str(older), "--reference", "", "--out", str(out)]
    status, error = run_report([*arguments, "--bootstrap-samples", "50"], capsys)
    assert status == 0
    assert error == (
        f"storm-wm report: skipping {older}: it is Pong seed 1 like {run_dirs[0]}, which is kept "
        "(evaluated at step 100000, the other at step 50000); a seed counts once\n"
    )
    row = table_row((out / "report.md").read_text(), "Pong")
    assert row[1] == "0.480" and row[3] == "2"  # (-3.05 + 4.01) / 2: seeds 1 and 2 only
    assert str(older) not in (out / "runs.csv").read_text()

    same = make_setup_run(tmp_path / "copy", "Pong", 1, -3.05)  # evaluated at the same step
    later = (run_dirs[0] / "eval.json").stat().st_mtime + 60
    os.utime(same / "eval.json", (later, later))  # ... but after the first
    status, error = run_report([str(run_dirs[0]), str(same), "--out", str(out)], capsys)
    assert status == 0 and f"skipping {run_dirs[0]}" in error and "evaluated more recently" in error


def colour_pixels(path: Path, rgb: tuple[int, int, int]) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=-1) < 40).sum())


def test_learning_curves_are_drawn_for_every_method_of_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paper = [
        make_setup_run(tmp_path / f"paper-{seed}", "Pong", seed, -3.05, preset="atari100k")
        for seed in (1, 2)
    ]
    debug = [
        make_setup_run(tmp_path / f"debug-{seed}", "Pong", seed, 14.6, **CAPPED) for seed in (1, 2)
    ]
    out = tmp_path / "out"
    arguments = [*map(str, paper + debug), "--reference", "", "--out", str(out)]
    assert run_report([*arguments, "--bootstrap-samples", "50"], capsys)[0] == 0
    curves = read_csv(out / "learning_curves.csv")
    assert {row["method"] for row in curves} == {
        "storm-wm [preset atari100k, full-length episodes]",
        "storm-wm [preset debug, capped episodes]",
    }
    plot = out / "learning_curves.png"
    assert colour_pixels(plot, (31, 119, 180)) > 50  # tab10's first colour: the first method
    assert colour_pixels(plot, (255, 127, 14)) > 50  # and its second: the other one


def test_capped_runs_included_as_asked_are_labelled_capped(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    debug = [
        make_setup_run(tmp_path / f"debug-{seed}", "Pong", seed, 14.6, **CAPPED) for seed in (1, 2)
    ]
    out = tmp_path / "out"
    arguments = [*map(str, debug), "--reference", "storm", "--out", str(out), "--include-capped"]
    assert run_report([*arguments, "--bootstrap-samples", "50"], capsys)[0] == 0
    methods = {row["method"] for row in read_csv(out / "aggregates.csv")}
    assert methods == {"storm-wm [preset debug, capped episodes]", "STORM"}


def test_runs_of_a_preset_of_other_sizes_are_named_after_it_beside_published_storm(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    small = [
        make_setup_run(tmp_path / f"small-{seed}", "Boxing", seed, 30.0 + seed, preset="small")
        for seed in (1, 2)
    ]
    out = tmp_path / "out"
    arguments = [*map(str, small), "--reference", "storm", "--out", str(out)]
    assert run_report([*arguments, "--bootstrap-samples", "50"], capsys)[0] == 0
    methods = {row["method"] for row in read_csv(out / "per_game.csv")}
    assert methods == {"storm-wm [preset small]", "STORM"}
    # Beside paper-config runs of the same game it is a method of its own, named by its preset.
    paper = make_setup_run(tmp_path / "paper-1", "Boxing", 1, 80.0, preset="atari100k+released")
    out = tmp_path / "mixed"
    arguments = [*map(str, [*small, paper]), "--reference", "", "--out", str(out)]
    assert run_report([*arguments, "--bootstrap-samples", "50"], capsys)[0] == 0
    methods = {row["method"] for row in read_csv(out / "per_game.csv")}
    assert methods == {"storm-wm [preset small]", "storm-wm [preset atari100k+released]"}
    # The paper's configuration alone keeps the plain name.
    out = tmp_path / "paper"
    assert run_report([str(paper), "--reference", "", "--out", str(out)], capsys)[0] == 0
    assert {row["method"] for row in read_csv(out / "per_game.csv")} == {"storm-wm"}


def test_report_hints_spell_the_console_and_quote_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from storm_wm.hints import command

    unevaluated = tmp_path / "my run"
    unevaluated.mkdir()
    status, error = run_report([str(unevaluated), "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert f"`{command('eval', unevaluated)}`" in error and f"'{unevaluated}'" in error
