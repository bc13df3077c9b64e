"""Files written by an earlier version of storm-wm still load, resume and evaluate.

tests/data/ holds what the code at commit f40aab5 wrote: `config_f40aab5.json` (the atari100k
preset, saved by `Config.save`) and `run_f40aab5/`, a `toy+tiny` run of 24 steps with its
checkpoint at step 24 (`storm-wm train --game toy:catch --preset toy+tiny --steps 24
--train.warmup_steps 16 --train.checkpoint_every 24 --train.log_every 8`). A change to the
config's fields or to the checkpoint's contents that breaks either fails here.
"""

import json
import shutil
from pathlib import Path

from storm_wm import cli
from storm_wm.config import Config
from storm_wm.persistence.checkpoint import list_checkpoints

DATA = Path(__file__).parent / "data"


def _as_json(config: Config):
    return json.loads(json.dumps(config.to_dict()))


ADDED_SINCE = {"train": {"agent_start": 0}}
"""Fields added after f40aab5, with the value an older config loads to: the paper's."""


def test_a_saved_config_loads_to_the_same_fields_in_the_same_order():
    for path in (DATA / "config_f40aab5.json", DATA / "run_f40aab5" / "config.json"):
        written = json.loads(path.read_text())
        loaded = _as_json(Config.load(path))
        for section, added in ADDED_SINCE.items():
            assert {name: loaded[section].pop(name) for name in added} == added
        assert loaded == written
        assert list(loaded) == list(written)
        assert all(
            list(loaded[key]) == list(written[key])
            for key in written
            if isinstance(written[key], dict)
        )


def test_a_run_written_by_an_earlier_version_resumes_and_evaluates(
    tmp_path: Path, one_thread
) -> None:
    run_dir = shutil.copytree(DATA / "run_f40aab5", tmp_path / "run")
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "32", "--no-progress"]) == 0
    assert [step for step, _ in list_checkpoints(run_dir)] == [24, 32]
    arguments = ["eval", str(run_dir), "--episodes", "2", "--diagnostic-windows", "0"]
    assert cli.main([*arguments, "--no-progress"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["episodes"] == 2 and len(result["returns"]) == 2
