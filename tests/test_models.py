"""Architecture facts: parameter counts from docs/algorithm.md, the KV cache, shapes and losses."""

import dataclasses

import pytest
import torch

from storm_wm.commands.info import parameter_counts
from storm_wm.config import WorldModelConfig, build_config
from storm_wm.imagination import Imagination
from storm_wm.models import ActorCritic, WorldModel
from storm_wm.models.transformer import StochasticTransformer

COUNTS_A6 = {
    "encoder": 690_624,
    "transformer": 5_026_816,
    "posterior_prior_heads": 4_720_640,
    "decoder": 4_884_931,
    "reward_head": 657_151,
    "termination_head": 526_849,
    "world_model": 16_507_011,
    "actor": 1_053_702,
    "critic": 1_181_439,
    "slow_critic": 1_181_439,
}


def test_parameter_counts_equal_the_documented_ones():
    config = build_config("atari100k")
    assert parameter_counts(config, 6) == COUNTS_A6
    assert parameter_counts(config, 4)["world_model"] == 16_505_987
    assert parameter_counts(config, 18)["world_model"] == 16_513_155


SMALL = WorldModelConfig(
    channels=(8, 16),
    categoricals=4,
    classes=4,
    hidden=32,
    layers=2,
    heads=4,
    feedforward=64,
    head_hidden=32,
    max_length=16,
    dropout=0.1,
)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_kv_cached_decoding_equals_the_full_causal_forward(dtype, tolerance):
    torch.manual_seed(0)
    transformer = StochasticTransformer(SMALL, num_actions=5).eval()
    latents = torch.randn(3, 12, SMALL.latent_size)
    actions = torch.randint(0, 5, (3, 12))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        full = transformer(latents, actions).float()
        # A context chunk of 5 tokens, then one token at a time.
        cache = transformer.new_cache(3)  # in the dtype the layers compute in
        chunks = [transformer.step(latents[:, :5], actions[:, :5], cache)]
        for t in range(5, 12):
            chunks.append(transformer.step(latents[:, t : t + 1], actions[:, t : t + 1], cache))
    stepped = torch.cat(chunks, dim=1).float()
    assert cache.length == 12
    torch.testing.assert_close(stepped, full, atol=tolerance, rtol=tolerance)


def test_rolling_cache_equals_the_full_causal_pass_and_restarts_from_its_last_tokens():
    torch.manual_seed(0)
    transformer = StochasticTransformer(dataclasses.replace(SMALL, max_length=8), 5).eval()
    latents = torch.randn(2, 11, SMALL.latent_size)
    actions = torch.randint(0, 5, (2, 11))
    cache = transformer.new_cache(2, rolling=True)  # starts again from its last 4 tokens
    with torch.no_grad():
        features = torch.cat(
            [transformer.step(latents[:, :5], actions[:, :5], cache)]
            + [
                transformer.step(latents[:, t : t + 1], actions[:, t : t + 1], cache)
                for t in range(5, 11)
            ],
            dim=1,
        )
        at_once = transformer.step(latents, actions, transformer.new_cache(2, rolling=True))
        torch.testing.assert_close(features[:, :8], transformer(latents[:, :8], actions[:, :8]))
        # Token 8 finds the cache full: it is fed after tokens 4..7, from position 0.
        restarted = transformer(latents[:, 4:11], actions[:, 4:11])
    torch.testing.assert_close(features[:, 8:], restarted[:, 4:])
    torch.testing.assert_close(at_once, features)


def test_transformer_is_causal():
    torch.manual_seed(0)
    transformer = StochasticTransformer(SMALL, num_actions=5).eval()
    latents = torch.randn(2, 8, SMALL.latent_size)
    actions = torch.randint(0, 5, (2, 8))
    changed = latents.clone()
    changed[:, 5:] += 1.0
    torch.testing.assert_close(
        transformer(latents, actions)[:, :5], transformer(changed, actions)[:, :5]
    )
    assert not torch.allclose(
        transformer(latents, actions)[:, 5:], transformer(changed, actions)[:, 5:]
    )


def test_cache_refuses_to_outgrow_the_position_embedding():
    transformer = StochasticTransformer(SMALL, num_actions=5).eval()
    cache = transformer.new_cache(1)
    with pytest.raises(ValueError):
        transformer.step(
            torch.randn(1, 17, SMALL.latent_size), torch.zeros(1, 17, dtype=torch.long), cache
        )


def test_world_model_loss_terms_and_gradients():
    torch.manual_seed(0)
    model = WorldModel(SMALL, num_actions=3, image_size=16).train()
    frames = torch.randint(0, 256, (2, 6, 16, 16, 3), dtype=torch.uint8)
    actions = torch.randint(0, 3, (2, 6))
    rewards = torch.randn(2, 6)
    terminations = torch.zeros(2, 6, dtype=torch.bool)
    loss, metrics = model.loss(frames, actions, rewards, terminations)
    expected = (
        metrics["reconstruction_loss"]
        + metrics["reward_loss"]
        + metrics["termination_loss"]
        + 0.5 * metrics["dynamics_loss"]
        + 0.1 * metrics["representation_loss"]
    )
    torch.testing.assert_close(loss.detach(), expected)
    assert metrics["dynamics_loss"] >= 1.0 and metrics["representation_loss"] >= 1.0  # free bits
    loss.backward()
    for name in (
        "encoder",
        "decoder",
        "transformer",
        "reward_head",
        "termination_head",
        "prior_head",
    ):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name


def test_imagination_shapes():
    torch.manual_seed(0)
    model = WorldModel(SMALL, num_actions=3, image_size=16).eval()
    agent = ActorCritic(build_config("debug").agent, SMALL.latent_size + SMALL.hidden, 3)
    frames = torch.randint(0, 256, (5, 4, 16, 16, 3), dtype=torch.uint8)
    rollout = Imagination(torch.device("cpu"))(model, agent, frames, torch.randint(0, 3, (5, 4)), 6)
    assert rollout.states.shape == (5, 7, SMALL.latent_size + SMALL.hidden)
    assert rollout.actions.shape == rollout.rewards.shape == rollout.terminations.shape == (5, 6)
    assert rollout.terminations.dtype == torch.bool
    # Every imagined latent is a one-hot sample per categorical.
    latents = rollout.states[..., : SMALL.latent_size].reshape(5, 7, 4, 4)
    torch.testing.assert_close(latents.sum(-1), torch.ones(5, 7, 4))


def test_slow_critic_moves_two_percent_towards_the_critic():
    agent = ActorCritic(build_config("debug").agent, 16, 3)
    slow_before = [p.clone() for p in agent.slow_critic.parameters()]
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(1.0)
    agent.update_slow_critic()
    for before, slow, critic in zip(
        slow_before, agent.slow_critic.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(slow, 0.98 * before + 0.02 * critic)


def test_folded_batchnorm_encoder_equals_the_plain_one():
    from storm_wm.models.networks import Encoder

    torch.manual_seed(0)
    encoder = Encoder((8, 16, 16, 16), 64)
    encoder.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        encoder(torch.rand(8, 3, 64, 64))
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    encoder.eval()
    frames = torch.rand(5, 3, 64, 64)
    plain = encoder.layers(frames).flatten(1)
    torch.testing.assert_close(encoder(frames), plain, atol=1e-5, rtol=1e-5)
