"""Summarises a learning check: every seed's curve in one PNG, and the eval table.

    python scripts/learning_check.py OUT

OUT holds one run directory per seed, as scripts/learning-check.sh leaves them: each trained and
evaluated, its training wall time in seconds beside it (NAME.wall_seconds). Writes OUT/curve.png
(each seed's episode returns against environment steps, a moving average over them, its eval
mean at the end, and the random and human scores as lines), OUT/results.json and OUT/results.md
(per-seed eval mean, the mean over seeds with its 95 % Student-t interval, wall time and
environment steps per second per run, and two checks of the world model: its one-step frame
error on the eval episodes over that of repeating the last frame (beside the autoencoder's own
error on those frames over the same), and the reward per 1,000 steps
the game paid in the eval beside the one predicted in imagination at the end of training). A run
without eval.json (stopped before its evaluation) is drawn and named, but has no place in the
mean or its interval.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from storm_wm.analysis.runs import last_step, load_episode_returns, load_run
from storm_wm.analysis.scores import load_reference, random_and_human
from storm_wm.analysis.stats import t_interval
from storm_wm.errors import StormError
from storm_wm.logs.records import records as metric_records

SMOOTHING_EPISODES = 10
"""Episodes in the moving average drawn over each seed's raw returns."""

IMAGINED_WINDOW = 0.1
"""The share of a run's last steps over which its imagined reward per step is averaged."""


def over_repeat_last(eval_record: dict, error: str) -> float | None:
    """A one-step frame error on the eval episodes over that of repeating the last frame.
    `error` "frame_mse": the world model's prediction (below 1: it beats a model of nothing
    moving); "frame_mse_posterior": the autoencoder's own error on the same frames, the floor
    under the first. None where the eval has no such check."""
    quality = eval_record.get("world_model_quality") or {}
    for horizon in quality.get("horizons", []):
        if horizon["k"] == 1 and horizon.get("frame_mse_repeat_last") and error in horizon:
            return horizon[error] / horizon["frame_mse_repeat_last"]
    return None


def game_reward_per_1000(eval_record: dict) -> float:
    """What the game paid the evaluated policy: its eval returns over its episode lengths."""
    return 1000 * sum(eval_record["returns"]) / sum(eval_record["lengths"])


def imagined_reward_per_1000(metrics: Path, step: int) -> float | None:
    """What the world model promised the policy: `agent/imagined_reward` (the mean predicted
    reward per imagined step) averaged over the last IMAGINED_WINDOW of the run's steps up to
    `step` (at least its last record); None before any agent update was logged."""
    records = [
        (record["step"], record["agent/imagined_reward"])
        for record in metric_records(metrics)
        if "agent/imagined_reward" in record and record["step"] <= step
    ]
    if not records:
        return None
    recent = [value for at, value in records if at > step * (1 - IMAGINED_WINDOW)]
    return 1000 * float(np.mean(recent or [records[-1][1]]))


def moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Mean of each value and the up to `width - 1` before it (shorter at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - width)
    return (sums[ends] - sums[starts]) / (ends - starts)


def summarise(out: Path) -> dict:
    run_dirs = sorted(path.parent for path in out.glob("*/eval.json"))
    if not run_dirs:
        raise StormError(f"{out} holds no evaluated run (no */eval.json); train and evaluate first")
    runs = [load_run(path) for path in run_dirs]
    # A run stopped before its evaluation (a check interrupted, or a configuration given up on):
    # its curve is drawn and it is named, but it has no eval mean and no place in the interval.
    unevaluated = sorted(
        path.parent
        for path in out.glob("*/metrics.jsonl")
        if not (path.parent / "eval.json").exists()
    )
    configs = {path: json.loads((path / "config.json").read_text()) for path in unevaluated}
    games = {run.game for run in runs} | {config["env"]["game"] for config in configs.values()}
    if len(games) != 1:
        raise StormError(f"{out} mixes games ({', '.join(sorted(games))}); one game per folder")
    game = games.pop()
    rows = []
    for run in runs:
        config = json.loads((run.path / "config.json").read_text())
        wall = run.path.with_name(f"{run.path.name}.wall_seconds")
        seconds = float(wall.read_text()) if wall.is_file() else None
        steps = run.step
        eval_record = json.loads((run.path / "eval.json").read_text())
        rows.append(
            {
                "run": run.path.name,
                "seed": run.seed,
                "eval_mean": run.score,
                "eval_episodes": len(eval_record["returns"]),
                "step": steps,
                "preset": config["preset"],
                "wall_seconds": seconds,
                "steps_per_second": steps / seconds if steps and seconds else None,
                "training_episodes": len(run.episode_returns),
                "next_frame_ratio": over_repeat_last(eval_record, "frame_mse"),
                "own_frame_ratio": over_repeat_last(eval_record, "frame_mse_posterior"),
                "game_reward_per_1000": game_reward_per_1000(eval_record),
                "imagined_reward_per_1000": imagined_reward_per_1000(
                    run.path / "metrics.jsonl", steps
                ),
            }
        )
    not_evaluated, stopped_curves = [], []
    for path in unevaluated:
        steps, returns = load_episode_returns(path / "metrics.jsonl")
        seed, step = configs[path]["seed"], last_step(path)
        not_evaluated.append({"run": path.name, "seed": seed, "step": step})
        stopped_curves.append((seed, steps, returns, step, None))
    means = [row["eval_mean"] for row in rows]
    interval = t_interval(means)
    random_score, human_score = random_and_human(game) or (None, None)
    storm = load_reference("storm").get(game)
    return {
        "game": game,
        "runs": rows,
        "mean": float(np.mean(means)),
        "ci95": list(interval) if interval else None,
        "random": random_score,
        "human": human_score,
        "storm_paper": float(np.mean(storm)) if storm else None,
        "not_evaluated": not_evaluated,
        "_curves": sorted(  # by seed, so that a seed keeps its colour whether evaluated or not
            [
                (run.seed, run.episode_steps, run.episode_returns, row["step"], run.score)
                for run, row in zip(runs, rows, strict=True)
            ]
            + stopped_curves,
            key=lambda curve: curve[0],
        ),
    }


def plot(summary: dict, path: Path) -> None:
    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    for index, (seed, steps, returns, eval_step, score) in enumerate(summary["_curves"]):
        color = f"C{index % 10}"
        axis.plot(steps, returns, ".", color=color, alpha=0.25, markersize=3)
        axis.plot(
            steps,
            moving_average(returns, SMOOTHING_EPISODES),
            color=color,
            label=f"seed {seed}: "
            + (f"eval {score:.1f}" if score is not None else "not evaluated"),
        )
        if score is not None:
            axis.plot([eval_step], [score], "D", color=color, markersize=7, markeredgecolor="k")
    for name, label, style in (
        ("random", "random", ":"),
        ("human", "human", "--"),
        ("storm_paper", "STORM paper (100k steps)", "-."),
    ):
        if summary[name] is not None:
            axis.axhline(summary[name], color="grey", linestyle=style, label=label)
    axis.set_xlabel("environment step")
    axis.set_ylabel("episode return")
    axis.set_title(
        f"{summary['game']}: training episodes (dots; line: mean of {SMOOTHING_EPISODES}), "
        "eval mean (diamond)",
        fontsize=9,
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=100)


def markdown(summary: dict) -> str:
    lines = [
        f"# Learning check: {summary['game']}",
        "",
        "| run | seed | preset | steps | eval mean | eval episodes | wall time | env steps/s "
        "| next frame vs repeat last | own frame drawn vs repeat last "
        "| reward / 1k steps: game, imagined |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary["runs"]:
        wall = f"{row['wall_seconds'] / 60:.0f} min" if row["wall_seconds"] else "?"
        rate = f"{row['steps_per_second']:.2f}" if row["steps_per_second"] else "?"
        imagined = row["imagined_reward_per_1000"]
        ratios = (row["next_frame_ratio"], row["own_frame_ratio"])
        frames = " | ".join(f"{ratio:.2f}" if ratio is not None else "?" for ratio in ratios)
        rewards = f"{row['game_reward_per_1000']:.1f}, " + (
            f"{imagined:.1f}" if imagined is not None else "?"
        )
        lines.append(
            f"| {row['run']} | {row['seed']} | {row['preset']} | {row['step']} | "
            f"{row['eval_mean']:.2f} | {row['eval_episodes']} | {wall} | {rate} | {frames} | "
            f"{rewards} |"
        )
    ci = summary["ci95"]
    ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}] (95 % t-interval over seeds)" if ci else ""
    lines += ["", f"Mean over seeds: **{summary['mean']:.2f}**{ci_text}."]
    lines.append(
        "Next frame vs repeat last: the world model's one-step frame error on the eval "
        "episodes over that of repeating the last frame (below 1: its prediction beats a model "
        "of nothing moving; every Boxing run that failed to learn so far was at 1 or above). "
        "Own frame drawn vs repeat last: the autoencoder's error on those same frames, encoded "
        "and decoded, over the same: the floor under the first, so a first ratio near 1 with "
        "this one near it too says the model cannot yet draw what moves. Reward per "
        "1,000 steps: what the game paid in the eval episodes, and what the world model "
        f"predicted in imagination over the last {IMAGINED_WINDOW:.0%} of training "
        "(docs/results.md)."
    )
    for run in summary["not_evaluated"]:
        lines.append(
            f"Not evaluated, so not in the mean: {run['run']} (seed {run['seed']}), stopped at "
            f"step {run['step']}."
        )
    references = [
        f"{name} {summary[key]:.1f}"
        for name, key in (("random", "random"), ("human", "human"), ("STORM paper", "storm_paper"))
        if summary[key] is not None
    ]
    if references:
        lines.append(f"Published: {', '.join(references)} (STORM: 100k steps, paper config).")
    return "\n".join(lines) + "\n"


def main(arguments: list[str]) -> int:
    if len(arguments) != 1:
        print("usage: python scripts/learning_check.py OUT", file=sys.stderr)
        return 2
    out = Path(arguments[0])
    try:
        summary = summarise(out)
    except StormError as error:
        print(f"learning-check: {error}", file=sys.stderr)
        return 2
    plot(summary, out / "curve.png")
    del summary["_curves"]
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(markdown(summary))
    print(markdown(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
