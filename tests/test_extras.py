"""The optional features (play window, report plots, MP4 videos) and the core without them."""

import subprocess
import sys

import pytest

from storm_wm.cli import main
from storm_wm.extras import EXTRAS
from test_report import make_run

pytestmark = pytest.mark.usefixtures("one_thread")


def missing(monkeypatch, *modules):
    """Makes `import module` fail as it does when the package is not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_play_without_pygame_says_which_extra_to_install(
    tmp_path, capsys, monkeypatch, make_run_dir
):
    run_dir = make_run_dir(tmp_path / "run")
    missing(monkeypatch, "pygame")
    assert main(["play", str(run_dir), "--max-steps", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "storm-wm play: error: storm-wm play needs the optional package pygame, which is not "
        "installed: pip install 'storm-wm[play]'"
    )


@pytest.mark.parametrize("module", ["imageio", "imageio_ffmpeg"])
def test_an_mp4_dream_without_the_video_extra_fails_before_any_work(
    tmp_path, capsys, monkeypatch, make_run_dir, module
):
    run_dir = make_run_dir(tmp_path / "run")
    missing(monkeypatch, module)
    out = tmp_path / "dream.mp4"
    assert main(["dream", str(run_dir), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"needs the optional package {module}" in error and "\n" not in error
    assert "pip install 'storm-wm[video]'" in error
    assert not out.exists()


def test_a_gif_dream_needs_no_extra(tmp_path, capsys, monkeypatch, make_run_dir):
    run_dir = make_run_dir(tmp_path / "run")
    missing(monkeypatch, "imageio", "imageio_ffmpeg")
    out = tmp_path / "dream.gif"
    assert main(["dream", str(run_dir), "--out", str(out), "--steps", "2"]) == 0
    assert out.stat().st_size > 0


def test_the_core_trains_and_evaluates_without_any_optional_package(tmp_path):
    """A fresh interpreter in which every optional package fails to import, as in an install
    without extras: training and evaluation work, and nothing optional is imported."""
    blocked = sorted(EXTRAS)
    run_dir = tmp_path / "run"
    train = ["train", "--game", "toy:catch", "--preset", "debug", "--steps", "60"]
    train += ["--train.warmup_steps", "40", "--run-dir", str(run_dir), "--no-progress"]
    evaluate = ["eval", str(run_dir), "--episodes", "2", "--no-progress"]
    script = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from storm_wm.cli import main\n"
        f"assert main({train!r}) == 0\n"
        f"assert main({evaluate!r}) == 0\n"
        "loaded = [name for name in sys.modules if name.partition('.')[0] in "
        f"{blocked!r} and sys.modules[name] is not None]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run_dir / "eval.json").exists()


def test_a_report_without_matplotlib_writes_its_tables_and_says_the_plots_were_not_drawn(
    tmp_path, capsys, monkeypatch
):
    runs = [make_run(tmp_path / f"Pong-{seed}", "Pong", seed, 1.0 + seed) for seed in (1, 2)]
    missing(monkeypatch, "matplotlib")
    out = tmp_path / "report"
    arguments = ["report", *map(str, runs), "--reference", "storm", "--out", str(out)]
    assert main([*arguments, "--bootstrap-samples", "50"]) == 0
    error = capsys.readouterr().err
    assert "plots not drawn: matplotlib is not installed; pip install 'storm-wm[plots]'" in error
    assert not list(out.glob("*.png"))
    assert (out / "per_game.csv").exists()
    markdown = (out / "report.md").read_text()
    assert "Not drawn: matplotlib is not installed" in markdown and "storm-wm[plots]" in markdown
