"""Fast paths compute the same function as the plain ones, on fresh random inputs.

Tolerances per dtype: fp32 paths agree to 1e-5 where only the order of additions differs, and
to 1e-4 where a compiler fuses and reorders whole kernels; bf16 keeps 8 bits of mantissa
(relative error about 4e-3 per rounding), so bf16 results are held to 5e-2 after a few layers.
(The folded-BatchNorm encoder and the KV cache have their tests in test_models.py.)
"""

import dataclasses
import math
import os
import shutil

import pytest
import torch
from torch.nn import functional as F

from storm_wm.config import build_config
from storm_wm.models import WorldModel
from storm_wm.models.transformer import CausalSelfAttention, StochasticTransformer
from storm_wm.ops import sample_one_hot

TINY = dataclasses.replace(
    build_config("debug").world_model, dropout=0.0, batch_size=2, sequence_length=8
)
"""Dropout off: a compiled graph draws its dropout masks in another order than eager code."""


def test_fused_attention_equals_softmax_attention_written_out():
    torch.manual_seed(0)
    attention = CausalSelfAttention(hidden=32, heads=4, dropout=0.0).eval()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        fused = attention(x)

        def heads(projection):  # (B, heads, T, head_dim)
            return projection(x).view(3, 7, 4, 8).transpose(1, 2)

        query, key, value = heads(attention.query), heads(attention.key), heads(attention.value)
        scores = query @ key.transpose(-2, -1) / math.sqrt(8)
        causal = torch.ones(7, 7, dtype=torch.bool).tril()
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        plain = attention.output((weights @ value).transpose(1, 2).reshape(3, 7, 32))
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


def test_sampling_without_straight_through_draws_the_same_one_hot_sample():
    """Imagination and acting skip the straight-through softmax; the sample must not change."""
    logits, uniform = torch.randn(64, 8, 16), torch.rand(64, 8, 16)
    fast = sample_one_hot(logits, uniform, straight_through=False)
    plain = sample_one_hot(logits, uniform, straight_through=True)
    assert torch.equal(fast, plain)
    assert torch.equal(fast.sum(-1), torch.ones(64, 8))


def test_bf16_autocast_transformer_matches_fp32_within_bf16_precision():
    torch.manual_seed(0)
    transformer = StochasticTransformer(TINY, num_actions=4).eval()
    latents = F.one_hot(torch.randint(0, TINY.classes, (2, 8, TINY.categoricals)), TINY.classes)
    latents = latents.float().flatten(-2)
    actions = torch.randint(0, 4, (2, 8))
    with torch.no_grad():
        plain = transformer(latents, actions)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = transformer(latents, actions)
    assert not torch.equal(fast.float(), plain)  # bf16 products did run
    torch.testing.assert_close(fast.float(), plain, atol=5e-2, rtol=5e-2)


def _has_cpp_compiler() -> bool:
    return any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.skipif(not _has_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_world_model_loss_and_gradients_equal_eager():
    """torch.compile (inductor) of the whole world-model loss, forward and backward.

    The loss samples latents, so both runs must draw the same numbers: `fallback_random` makes
    compiled code use PyTorch's generator, and without `layout_optimization` inductor keeps the
    eager memory layout, so each random number lands on the same element. Compiling takes about
    a minute and a half the first time on a 2-core CPU, seconds once inductor's cache holds it.
    """
    from torch._inductor import config as inductor

    torch.manual_seed(0)
    model = WorldModel(TINY, num_actions=4, image_size=16).train()
    frames = torch.randint(0, 256, (2, 8, 16, 16, 3), dtype=torch.uint8)
    actions = torch.randint(0, 4, (2, 8))
    rewards = torch.randn(2, 8)
    terminations = torch.rand(2, 8) < 0.2

    def loss_and_gradients(loss_function):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        loss, metrics = loss_function(frames, actions, rewards, terminations)
        loss.backward()
        return metrics, [parameter.grad.clone() for parameter in model.parameters()]

    torch._dynamo.reset()
    with inductor.patch(fallback_random=True, layout_optimization=False):
        compiled_metrics, compiled_gradients = loss_and_gradients(torch.compile(model.loss))
    eager_metrics, eager_gradients = loss_and_gradients(model.loss)
    torch._dynamo.reset()
    torch.testing.assert_close(compiled_metrics, eager_metrics, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled_gradients, eager_gradients, atol=1e-4, rtol=1e-4)
