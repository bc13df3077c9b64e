"""`storm-wm play` without a screen: SDL's dummy drivers, key presses posted as events."""

import os

import numpy as np
import pytest

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"

import pygame  # noqa: E402

from storm_wm.cli import main  # noqa: E402
from storm_wm.envs import action_meanings, make_env  # noqa: E402
from storm_wm.envs.toy import LEFT, RIGHT, STAY  # noqa: E402
from storm_wm.play.app import PlayApp  # noqa: E402
from storm_wm.play.keys import action_for  # noqa: E402
from storm_wm.play.worlds import DreamAgent, DreamWorld, RealWorld  # noqa: E402

PONG = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


pytestmark = pytest.mark.usefixtures("one_thread")


def press(key):
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))


def release(key):
    pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key))


@pytest.mark.parametrize(
    "held, expected",
    [
        (set(), "NOOP"),
        ({"RIGHT"}, "RIGHT"),
        ({"RIGHT", "FIRE"}, "RIGHTFIRE"),
        ({"UP", "LEFT", "FIRE"}, "LEFTFIRE"),  # Pong has no UP: the nearest action keeps fire
        ({"LEFT", "RIGHT"}, "NOOP"),  # opposite keys cancel
        ({"UP"}, "NOOP"),
    ],
)
def test_held_keys_pick_the_action_named_by_the_ale(held, expected):
    assert PONG[action_for(held, PONG)] == expected


def test_number_keys_pick_actions_of_games_without_names():
    assert action_for(set(), ["0", "1", "2"], chosen_number=2) == 2
    assert action_for({"RIGHT"}, ["0", "1", "2"]) == 0


def test_action_names_come_from_the_game():
    assert action_meanings(make_env("toy:catch")) == ["NOOP", "LEFT", "RIGHT"]
    assert action_meanings(make_env("Pong")) == PONG


def test_a_person_moves_the_paddle_with_the_arrow_keys():
    env = make_env("toy:catch")
    app = PlayApp(RealWorld(env, seed=0), action_meanings(env), scale=2)
    catch = env.unwrapped
    catch.paddle_column = 3
    try:
        press(pygame.K_RIGHT)
        assert app.tick()
        assert (app.last_action, catch.paddle_column) == (RIGHT, 4)
        release(pygame.K_RIGHT)
        assert app.tick()
        assert (app.last_action, catch.paddle_column) == (STAY, 4)
        press(pygame.K_a)  # WASD works too
        assert app.tick()
        assert (app.last_action, catch.paddle_column) == (LEFT, 3)
        release(pygame.K_a)
        press(pygame.K_p)  # paused: the world waits
        assert app.tick() and app.steps == 3
        press(pygame.K_ESCAPE)
        assert not app.tick()
        assert app.screen.get_size() == (512, 2 * 64 + 68)
    finally:
        app.close()


def test_an_episode_that_ends_starts_over_and_closing_the_window_quits():
    env = make_env("toy:catch")
    app = PlayApp(RealWorld(env, seed=0), action_meanings(env), fps=1000)
    returns = app.run(max_steps=10)  # toy:catch episodes last 7 steps
    assert app.steps == 10 and len(returns) == 1 and app.episode_return == 0.0
    app = PlayApp(RealWorld(env, seed=0), action_meanings(env))
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert app.run() == [] and app.steps == 0


def test_dream_world_runs_past_its_position_embedding_and_agent_acts_on_imagined_states(
    tiny_models,
):
    config, models = tiny_models(**{"world_model.max_length": 24})
    world = DreamWorld(models.world_model, make_env("toy:catch"), seed=0)
    agent = DreamAgent(models.actor_critic, world, num_actions=3)
    frame = world.reset()
    assert frame.shape == (64, 64, 3) and world.agent_state() is None
    for _ in range(config.world_model.max_length + 3):
        step = world.step(agent.choose(frame))
        frame = step.frame
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    state = world.agent_state()
    assert state.shape == (1, config.world_model.latent_size + config.world_model.hidden)


@pytest.mark.parametrize("mode", [[], ["--dream"], ["--watch"], ["--dream", "--watch"]])
def test_play_command_runs_headless(tmp_path, capsys, mode, make_run_dir):
    run_dir = make_run_dir(tmp_path / "run")
    assert main(["play", str(run_dir), *mode, "--max-steps", "9", "--fps", "1000"]) == 0
    output = capsys.readouterr().out
    world = "world model's dream" if "--dream" in mode else "real game"
    assert f"played 9 steps of the {world}" in output
