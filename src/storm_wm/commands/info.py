"""`storm-wm info`: parameter counts of every component for a game and preset."""

from __future__ import annotations

import argparse
import json

from storm_wm.config import build_config
from storm_wm.options import add_config_options, preset_of


def parameter_counts(config, num_actions: int) -> dict[str, int]:
    import torch

    from storm_wm.models.agent import build_models

    models = build_models(config, num_actions, torch.device("cpu"))
    world_model, actor_critic = models.world_model, models.actor_critic

    def count(*modules) -> int:
        return sum(p.numel() for module in modules for p in module.parameters())

    counts = {
        "encoder": count(world_model.encoder),
        "transformer": count(world_model.transformer),
        "posterior_prior_heads": count(world_model.posterior_head, world_model.prior_head),
        "decoder": count(world_model.decoder),
        "reward_head": count(world_model.reward_head),
        "termination_head": count(world_model.termination_head),
        "world_model": count(world_model),
        "actor": count(actor_critic.actor),
        "critic": count(actor_critic.critic),
        "slow_critic": count(actor_critic.slow_critic),
    }
    return counts


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="parameter counts",
        allow_abbrev=False,
        description="Print the parameter count of every component for a game's action count.",
    )
    parser.add_argument("--game", default=None)
    add_config_options(parser)
    parser.add_argument("--actions", type=int, default=None, help="override the action count")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storm_wm.envs import make_env, resolve_game

    overrides = {"env.game": args.game} if args.game else {}
    config = build_config(preset_of(args), overrides)
    spec = resolve_game(config.env.game)
    num_actions = args.actions
    if num_actions is None:
        env = make_env(config.env)
        num_actions = int(env.action_space.n)
        env.close()
    counts = parameter_counts(config, num_actions)
    if args.json:
        print(
            json.dumps({"game": spec.name, "actions": num_actions, "parameters": counts}, indent=2)
        )
        return 0
    print(f"{spec.name}: {num_actions} actions, preset {config.preset}")
    for name, value in counts.items():
        print(f"  {name:<24}{value:>14,}")
    return 0
