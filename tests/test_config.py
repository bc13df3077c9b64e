import pytest

from storm_wm.config import Config, build_config, parse_overrides
from storm_wm.errors import StormError


def test_atari100k_preset_is_the_paper_configuration():
    config = build_config("atari100k")
    wm, agent, train = config.world_model, config.agent, config.train
    assert wm.channels == (32, 64, 128, 256) and wm.latent_size == 1024 and wm.hidden == 512
    assert (wm.layers, wm.heads, wm.feedforward, wm.max_length) == (2, 8, 1024, 64)
    assert (wm.batch_size, wm.sequence_length, wm.learning_rate) == (16, 64, 1e-4)
    assert (wm.free_bits, wm.dynamics_scale, wm.representation_scale) == (1.0, 0.5, 0.1)
    assert (agent.gamma, agent.lambda_, agent.entropy_scale) == (0.985, 0.95, 3e-4)
    assert (agent.imagination_batch, agent.context_length, agent.horizon) == (1024, 8, 16)
    assert (agent.learning_rate, agent.adam_eps, agent.grad_clip) == (3e-5, 1e-5, 100.0)
    assert agent.lambda_variant == "paper"
    assert (train.steps, train.warmup_steps, train.replay_capacity, train.act_context) == (
        100_000,
        1024,
        100_000,
        16,
    )
    assert config.env.protocol == "storm" and config.env.image_size == 64


def test_presets_stack_and_dotted_overrides_are_typed():
    config = build_config("toy+debug", {"agent.gamma": "0.99", "world_model.channels": "4,8,8,8"})
    assert config.env.game == "toy:catch"  # from toy
    assert config.train.steps == 300  # debug, stacked on top
    assert config.agent.gamma == 0.99 and config.world_model.channels == (4, 8, 8, 8)
    assert build_config("debug", {"train.act_on_posterior": "true"}).train.act_on_posterior


def test_tiny_preset_shrinks_the_networks_and_keeps_the_schedule_under_it():
    config = build_config("toy+tiny")
    wm, agent, train = config.world_model, config.agent, config.train
    assert config.preset == "toy+tiny" and config.env.image_size == 16
    assert (wm.channels, wm.categoricals, wm.classes, wm.bins) == ((4, 4, 4, 4), 4, 4, 15)
    assert (wm.hidden, wm.heads, wm.feedforward, wm.head_hidden) == (16, 2, 16, 16)
    assert (wm.batch_size, wm.sequence_length) == (2, 8)
    assert (agent.hidden, agent.bins, agent.imagination_batch) == (16, 15, 4)
    # toy's own settings, which tiny leaves alone.
    assert config.env.game == "toy:catch" and (wm.layers, wm.max_length) == (1, 32)
    assert (wm.learning_rate, agent.learning_rate, agent.entropy_scale) == (1e-3, 3e-4, 1e-3)
    assert (agent.context_length, agent.horizon) == (4, 8)
    assert (train.steps, train.warmup_steps, train.train_every, train.eval_episodes) == (
        2_800,
        300,
        1,
        20,
    )
    assert (train.checkpoint_every, train.log_every, train.replay_capacity) == (1_000, 100, 10_000)


def test_config_round_trips_through_json(tmp_path):
    config = build_config("toy", {"seed": 7})
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("nope", {}, "unknown preset 'nope'"),
        ("debug", {"agent.gama": "1"}, "unknown config field 'agent.gama'"),
        ("debug", {"agent.gamma": "high"}, "agent.gamma must be float"),
        ("debug", {"agent.gamma": "2"}, "agent.gamma and agent.lambda_ must lie in [0, 1]"),
        ("debug", {"env.protocol": "v4"}, "env.protocol must be 'storm' or 'standard'"),
        ("debug", {"train.steps": "0"}, "train.steps must be positive"),
        ("debug", {"env.image_size": "60"}, "env.image_size must be a positive multiple of 16"),
        ("debug", {"world_model.heads": "3"}, "must be divisible by heads"),
        ("debug", {"device": "tpu"}, "device must be auto, cpu, cuda or mps"),
        ("debug", {"train.checkpoint_keep": "-1"}, "train.checkpoint_keep must be 0 or more"),
        ("debug", {"train.max_nonfinite_updates": "0"}, "max_nonfinite_updates must be positive"),
        ("debug", {"train.replay_on_device": "yes"}, "must be 'auto', 'on' or 'off', got 'yes'"),
    ],
)
def test_invalid_values_are_rejected_before_anything_runs(preset, overrides, message):
    with pytest.raises(StormError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_config(preset, overrides)


def test_override_parsing():
    assert parse_overrides(["--agent.gamma", "0.99", "--train.steps=5"]) == {
        "agent.gamma": "0.99",
        "train.steps": "5",
    }
    with pytest.raises(StormError, match="needs a value"):
        parse_overrides(["--agent.gamma"])
    with pytest.raises(StormError, match="unexpected argument"):
        parse_overrides(["gamma"])


def test_resume_and_checkpoint_rules_are_the_ones_declared_at_the_fields():
    """compatibility reads these from config.py's declarations: a change there shows here."""
    from storm_wm.persistence.compatibility import (
        ARCHITECTURE_FIELDS,
        KEPT_ON_RESUME,
        RESUMABLE_FIELDS,
    )

    assert ARCHITECTURE_FIELDS == tuple(
        "env.game env.image_size world_model.channels world_model.categoricals "
        "world_model.classes world_model.hidden world_model.layers world_model.heads "
        "world_model.feedforward world_model.max_length world_model.head_hidden "
        "world_model.bins agent.hidden agent.bins".split()
    )
    assert set(RESUMABLE_FIELDS) == set(
        "train.steps device precision train.replay_on_device train.compile "
        "train.async_checkpoints train.checkpoint_every train.checkpoint_keep train.log_every "
        "train.diagnostics_every train.video_every".split()
    )
    assert RESUMABLE_FIELDS[:2] == ("device", "precision")  # messages name these first
    assert KEPT_ON_RESUME == ("train.steps", "train.checkpoint_keep")
