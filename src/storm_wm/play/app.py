"""The play window: a person (or the agent) acts, one world step per frame of the clock."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402  (the variable above must be set before the import)

from storm_wm.errors import StormError  # noqa: E402
from storm_wm.play.keys import action_for  # noqa: E402
from storm_wm.play.worlds import DreamWorld, WorldStep  # noqa: E402

CONTROL_KEYS = {
    pygame.K_UP: "UP",
    pygame.K_w: "UP",
    pygame.K_DOWN: "DOWN",
    pygame.K_s: "DOWN",
    pygame.K_LEFT: "LEFT",
    pygame.K_a: "LEFT",
    pygame.K_RIGHT: "RIGHT",
    pygame.K_d: "RIGHT",
    pygame.K_SPACE: "FIRE",
}
NUMBER_KEYS = {getattr(pygame, f"K_{digit}"): digit for digit in range(10)}
LINE_HEIGHT = 20
STATUS_HEIGHT = 3 * LINE_HEIGHT + 8
MINIMUM_WIDTH = 512
"""Wide enough for the help line under small frames."""
BACKGROUND = (24, 24, 24)
TEXT = (230, 230, 230)


class World(Protocol):
    name: str

    def reset(self) -> np.ndarray: ...
    def step(self, action: int) -> WorldStep: ...


class Agent(Protocol):
    def choose(self, frame: np.ndarray) -> int: ...
    def reset(self) -> None: ...


class PlayApp:
    """One window, one world. Every tick: read the keys, choose an action (the held keys', or
    the agent's), step the world, draw. Held keys are tracked from key events rather than
    polled, so that scripted events drive it exactly as a keyboard does (tests, headless)."""

    def __init__(
        self,
        world: World,
        meanings: list[str],
        *,
        agent: Agent | None = None,
        fps: float = 15.0,
        scale: int = 6,
    ) -> None:
        self.world, self.meanings, self.agent = world, meanings, agent
        self.fps, self.scale = fps, scale
        try:
            pygame.display.init()
            pygame.font.init()
            self.frame = world.reset()
            height, width = self.frame.shape[:2]
            self.screen = pygame.display.set_mode(
                (max(width * scale, MINIMUM_WIDTH), height * scale + STATUS_HEIGHT)
            )
        except pygame.error as error:
            pygame.quit()
            raise StormError(
                f"cannot open the play window ({error}); run on a machine with a display, or "
                "set SDL_VIDEODRIVER=dummy to run without one"
            ) from None
        who = "the agent plays" if agent else "you play"
        pygame.display.set_caption(f"storm-wm play: {world.name}, {who}")
        self.font = pygame.font.Font(None, 19)
        self.held: set[str] = set()
        self.number: int | None = None
        self.running, self.paused = True, False
        self.steps, self.episode_return, self.last_reward = 0, 0.0, 0.0
        self.last_action: int | None = None
        self.returns: list[float] = []

    def handle_events(self) -> None:
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.running = False
            elif event.type == pygame.KEYDOWN:
                if event.key in (pygame.K_ESCAPE, pygame.K_q):
                    self.running = False
                elif event.key == pygame.K_p:
                    self.paused = not self.paused
                elif event.key == pygame.K_r:
                    self.restart()
                elif event.key in CONTROL_KEYS:
                    self.held.add(CONTROL_KEYS[event.key])
                elif event.key in NUMBER_KEYS:
                    self.number = NUMBER_KEYS[event.key]
            elif event.type == pygame.KEYUP:
                self.held.discard(CONTROL_KEYS.get(event.key, ""))
                if NUMBER_KEYS.get(event.key) == self.number:
                    self.number = None

    def restart(self) -> None:
        self.frame = self.world.reset()
        self.episode_return = 0.0
        if self.agent:
            self.agent.reset()

    def advance(self) -> None:
        """One step of the world with the chosen action; a finished episode starts over."""
        if self.agent:
            action = self.agent.choose(self.frame)
        else:
            action = action_for(self.held, self.meanings, self.number)
        result = self.world.step(action)
        self.steps += 1
        self.last_action, self.last_reward = action, result.reward
        self.episode_return += result.reward
        self.frame = result.frame
        if result.ended:
            self.returns.append(self.episode_return)
            self.restart()

    def draw(self) -> None:
        self.screen.fill(BACKGROUND)
        height, width = self.frame.shape[:2]
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(self.frame.swapaxes(0, 1)))
        self.screen.blit(
            pygame.transform.scale(surface, (width * self.scale, height * self.scale)), (0, 0)
        )
        action = "-" if self.last_action is None else self.meanings[self.last_action]
        reward_kind = "predicted reward" if isinstance(self.world, DreamWorld) else "reward"
        who = "the agent plays" if self.agent else "you play"
        lines = [
            f"{self.world.name}, {who}   step {self.steps}" + ("   PAUSED" if self.paused else ""),
            f"return {self.episode_return:+.2f}   {reward_kind} {self.last_reward:+.2f}   "
            f"action {action}",
            "P pause, R restart, Esc quit"
            if self.agent
            else "arrows/WASD move, space fire, 0-9 action, P pause, R restart, Esc quit",
        ]
        for index, line in enumerate(lines):
            text = self.font.render(line, True, TEXT)
            self.screen.blit(text, (6, height * self.scale + 5 + LINE_HEIGHT * index))
        pygame.display.flip()

    def tick(self) -> bool:
        """Handles input, steps the world unless paused, redraws; False once asked to quit."""
        self.handle_events()
        if not self.running:
            return False
        if not self.paused:
            self.advance()
        self.draw()
        return True

    def run(self, max_steps: int | None = None) -> list[float]:
        """Ticks at `fps` until quit (or `max_steps` world steps); the finished episodes'
        returns."""
        clock = pygame.time.Clock()
        try:
            while (max_steps is None or self.steps < max_steps) and self.tick():
                clock.tick(self.fps)
        finally:
            self.close()
        return self.returns

    def close(self) -> None:
        pygame.quit()
