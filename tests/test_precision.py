"""`--precision auto` follows one documented rule on every CPU, and a run says what it chose.

Each test runs under both answers of the CPU's bf16 detection ($STORM_WM_CPU_BF16, the
`cpu_bf16` fixture), so a machine of either kind proves the path of the other.
"""

import os
import subprocess
import sys

import pytest
import torch

from storm_wm.config import build_config
from storm_wm.device import (
    CPU_BF16_VARIABLE,
    choose_precision,
    cpu_has_fast_bf16,
    warn_about_precision,
)
from storm_wm.errors import StormError

CPU = torch.device("cpu")


def test_the_override_decides_the_detection(cpu_bf16):
    assert cpu_has_fast_bf16() == (cpu_bf16 == "native")


def test_a_bad_override_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(CPU_BF16_VARIABLE, "yes")
    with pytest.raises(StormError, match=f"{CPU_BF16_VARIABLE} must be native or emulated"):
        cpu_has_fast_bf16()


def test_auto_is_fp32_on_every_cpu_and_says_why(cpu_bf16):
    precision = choose_precision("auto", CPU)
    assert precision.dtype == torch.float32 and precision.name == "fp32"
    assert precision.reason.startswith("auto: fp32 on CPUs")
    # Where bf16 is native the reason points to the explicit choice; where it is emulated, not.
    assert ("--precision bf16" in precision.reason) == (cpu_bf16 == "native")


@pytest.mark.parametrize("name, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_an_explicit_precision_is_kept_on_any_cpu(cpu_bf16, name, dtype):
    precision = choose_precision(name, CPU)
    assert precision.dtype == dtype and precision.reason == f"asked for (--precision {name})"


def test_bf16_asked_for_warns_only_where_the_cpu_emulates_it(cpu_bf16, capsys):
    warn_about_precision(build_config("toy", {"precision": "bf16"}).precision, CPU)
    warned = "emulates bf16" in capsys.readouterr().err
    assert warned == (cpu_bf16 == "emulated")
    warn_about_precision(build_config("toy").precision, CPU)
    assert capsys.readouterr().err == ""


def test_a_run_prints_its_precision_and_the_reason_at_its_start(cpu_bf16, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storm_wm.cli",
            "train",
            "--preset",
            "toy+tiny",
            "--steps",
            "20",
            "--train.warmup_steps",
            "16",
            "--device",
            "cpu",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    header = result.stdout.splitlines()
    assert any(line.endswith(f"on cpu in fp32 -> {tmp_path / 'run'}") for line in header), header
    reason = choose_precision("auto", CPU).reason
    assert f"storm-wm: precision fp32: {reason}" in header, header
