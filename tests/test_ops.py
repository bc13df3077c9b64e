"""Facts about the pure math, checked against values worked out by hand."""

import math

import pytest
import torch

from storm_wm.ops import (
    ReturnNormalizer,
    TwoHot,
    batch_percentiles,
    free_bits_kl,
    lambda_returns,
    sample_one_hot,
    symexp,
    symlog,
    unimix_logits,
)


def test_symlog_and_symexp_by_hand():
    x = torch.tensor([-10.0, -1.0, 0.0, 1.0, math.e - 1])
    expected = torch.tensor([-math.log(11.0), -math.log(2.0), 0.0, math.log(2.0), 1.0])
    torch.testing.assert_close(symlog(x), expected)
    torch.testing.assert_close(symexp(symlog(x)), x)


def test_two_hot_encode_by_hand():
    # Bins [-2, -1, 0, 1, 2] in symlog space.
    twohot = TwoHot(num_bins=5, low=-2.0, high=2.0)
    values = torch.tensor([0.0, math.exp(0.5) - 1, -(math.exp(1.25) - 1), 100.0])
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 0.0, 0.0],  # symlog 0 sits on bin 2
            [0.0, 0.0, 0.5, 0.5, 0.0],  # symlog 0.5: halfway between bins 2 and 3
            [0.25, 0.75, 0.0, 0.0, 0.0],  # symlog -1.25: a quarter of the way from -1 to -2
            [0.0, 0.0, 0.0, 0.0, 1.0],  # symlog 4.6 is clipped to the last bin
        ]
    )
    torch.testing.assert_close(twohot.encode(values), expected)


def test_two_hot_paper_bins_put_zero_on_the_centre_bin():
    twohot = TwoHot()  # 255 bins on [-20, 20]
    weights = twohot.encode(torch.tensor([0.0]))
    assert weights[0, 127] == 1.0 and weights.sum() == 1.0


def test_two_hot_decode_and_loss_by_hand():
    twohot = TwoHot(num_bins=5, low=-2.0, high=2.0)
    weights = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0])
    logits = torch.log(weights.clamp(min=1e-30))
    # softmax(log w) == w, so the decoded value is symexp(0.5).
    torch.testing.assert_close(twohot.decode(logits), torch.tensor(math.exp(0.5) - 1))
    # Uniform logits: the loss is the cross-entropy -sum w log(1/5) = log 5 for any target.
    uniform = torch.zeros(5)
    torch.testing.assert_close(twohot.loss(uniform, torch.tensor(1.3)), torch.tensor(math.log(5)))


def test_lambda_returns_three_steps_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 2.0]])
    continues = torch.tensor([[1.0, 1.0, 0.0]])
    # gamma 0.9, lambda 0.8, paper: G3 = V3; G2 = 3 (episode ends);
    # G1 = 2 + 0.9 (0.2 * V2 + 0.8 * G2) = 2 + 0.9 * 2.7 = 4.43
    # G0 = 1 + 0.9 (0.2 * V1 + 0.8 * G1) = 1 + 0.9 * 3.744 = 4.3696
    paper = lambda_returns(rewards, values, continues, 0.9, 0.8, "paper")
    torch.testing.assert_close(paper, torch.tensor([[4.3696, 4.43, 3.0]]))
    # released code: V(s_t) replaces V(s_{t+1}):
    # G1 = 2 + 0.9 (0.2 * V1 + 0.8 * 3) = 4.34; G0 = 1 + 0.9 (0.2 * V0 + 0.8 * 4.34) = 4.2148
    released = lambda_returns(rewards, values, continues, 0.9, 0.8, "released")
    torch.testing.assert_close(released, torch.tensor([[4.2148, 4.34, 3.0]]))


def test_lambda_returns_bootstrap_from_last_value():
    rewards = torch.tensor([[0.0, 0.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 2.0]])
    continues = torch.ones(1, 3)
    # G2 = 3 + 0.9 (0.2 * 2 + 0.8 * 2) = 4.8;  G1 = 0.9 (0.2 * 1.5 + 0.8 * 4.8) = 3.726
    # G0 = 0.9 (0.2 * 1.0 + 0.8 * 3.726) = 2.86272
    returns = lambda_returns(rewards, values, continues, 0.9, 0.8)
    torch.testing.assert_close(returns, torch.tensor([[2.86272, 3.726, 4.8]]))
    # lambda = 0 is one-step TD, lambda = 1 the discounted Monte-Carlo return.
    td = lambda_returns(rewards, values, continues, 0.9, 0.0)
    torch.testing.assert_close(td, torch.tensor([[0.9 * 1.0, 0.9 * 1.5, 3.0 + 0.9 * 2.0]]))
    monte_carlo = lambda_returns(rewards, values, continues, 0.9, 1.0)
    torch.testing.assert_close(monte_carlo[:, 0], torch.tensor([0.81 * 3.0 + 0.729 * 2.0]))


def test_percentile_normalizer_by_hand():
    normalizer = ReturnNormalizer(decay=0.99)
    returns = torch.arange(101.0)  # P5 = 5, P95 = 95
    normalizer.update(returns)
    # EMAs start at 0: low = 0.01 * 5, high = 0.01 * 95, S = 0.9 < 1 -> scale 1.
    torch.testing.assert_close(normalizer.low, torch.tensor(0.05))
    torch.testing.assert_close(normalizer.high, torch.tensor(0.95))
    assert normalizer.scale().item() == 1.0
    for _ in range(99):
        normalizer.update(returns)
    # After 100 updates S = 90 (1 - 0.99^100) = 57.0573.
    torch.testing.assert_close(
        normalizer.scale(), torch.tensor(90 * (1 - 0.99**100)), rtol=1e-4, atol=0
    )


def test_batch_percentiles_interpolated_and_as_kthvalue_by_hand():
    # The squares 0, 1, 4, ..., 39^2 in a shuffled order: n = 40.
    squares = (torch.arange(40.0) ** 2)[
        torch.randperm(40, generator=torch.Generator().manual_seed(0))
    ]
    # interpolate: positions q (n - 1) = 1.95 and 37.05 between the sorted values.
    # P5 = 1 + 0.95 (4 - 1) = 3.85; P95 = 37^2 + 0.05 (38^2 - 37^2) = 1369 + 3.75 = 1372.75.
    torch.testing.assert_close(
        batch_percentiles(squares, (0.05, 0.95)), torch.tensor([3.85, 1372.75])
    )
    # kthvalue: k = int(0.05 * 40) = 2 and int(0.95 * 40) = 38, 1-indexed: 1^2 and 37^2.
    torch.testing.assert_close(
        batch_percentiles(squares, (0.05, 0.95), "kthvalue"), torch.tensor([1.0, 1369.0])
    )
    assert torch.equal(
        batch_percentiles(squares, (0.05, 0.95), "kthvalue"),
        torch.stack([torch.kthvalue(squares, k).values for k in (2, 38)]),
    )


def test_kthvalue_percentiles_of_a_tiny_batch_use_k_at_least_one():
    values = torch.tensor([[30.0, 10.0], [20.0, 40.0]])  # n = 4, any shape is flattened
    # int(0.05 * 4) = 0 is raised to k = 1 (the smallest); int(0.95 * 4) = 3: the third smallest.
    torch.testing.assert_close(
        batch_percentiles(values, (0.05, 0.95), "kthvalue"), torch.tensor([10.0, 30.0])
    )
    # Interpolated: positions 0.15 and 2.85 -> 10 + 0.15 * 10 = 11.5, 30 + 0.85 * 10 = 38.5.
    torch.testing.assert_close(batch_percentiles(values, (0.05, 0.95)), torch.tensor([11.5, 38.5]))
    torch.testing.assert_close(
        batch_percentiles(torch.tensor([7.0]), (0.05, 0.95), "kthvalue"), torch.tensor([7.0, 7.0])
    )


def test_percentile_normalizer_reads_kthvalue_percentiles_when_asked():
    squares = torch.arange(40.0) ** 2
    normalizer = ReturnNormalizer(decay=0.99, percentile="kthvalue")
    normalizer.update(squares)
    # EMAs from 0: low = 0.01 * 1, high = 0.01 * 1369.
    torch.testing.assert_close(normalizer.low, torch.tensor(0.01))
    torch.testing.assert_close(normalizer.high, torch.tensor(13.69))
    interpolating = ReturnNormalizer(decay=0.99)
    interpolating.update(squares)
    torch.testing.assert_close(interpolating.high, torch.tensor(13.7275))
    with pytest.raises(ValueError, match="percentile mode"):
        ReturnNormalizer(percentile="nearest")


def test_free_bits_clip_the_batch_mean_and_stop_its_gradient():
    p = torch.log(torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]]))  # (B=2, categoricals=1, classes=2)
    q = torch.log(torch.tensor([[[0.6, 0.4]], [[0.5, 0.5]]])).requires_grad_()
    # KL = mean(0.5 ln(0.5/0.6) + 0.5 ln(0.5/0.4), 0) = 0.010206
    loss, kl = free_bits_kl(p, q, free_bits=1.0)
    assert loss.item() == 1.0
    torch.testing.assert_close(
        kl, torch.tensor(0.5 * (0.5 * math.log(5 / 6) + 0.5 * math.log(5 / 4)))
    )
    loss.backward()
    assert torch.count_nonzero(q.grad) == 0
    loss, kl = free_bits_kl(p, q, free_bits=0.001)
    assert loss.item() == kl.item() > 0.001


def test_unimix_keeps_every_class_reachable():
    logits = torch.tensor([[100.0, 0.0, -100.0, -100.0]])
    probs = unimix_logits(logits, 0.01).exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    torch.testing.assert_close(probs[0, 2], torch.tensor(0.01 / 4))
    torch.testing.assert_close(probs[0, 0], torch.tensor(0.99 + 0.01 / 4))
    uniform = torch.zeros(1, 4)
    torch.testing.assert_close(unimix_logits(uniform, 0.01).exp(), torch.full((1, 4), 0.25))


def test_one_hot_sample_has_straight_through_gradients():
    torch.manual_seed(0)
    logits = torch.randn(64, 32, 8, requires_grad=True)
    sample = sample_one_hot(logits, torch.rand(64, 32, 8))
    assert torch.all((sample.detach() == 0) | (sample.detach() == 1))
    torch.testing.assert_close(sample.detach().sum(-1), torch.ones(64, 32))
    weights = torch.randn(8)
    (sample * weights).sum().backward()
    straight_through = logits.grad.clone()
    logits.grad = None
    (torch.softmax(logits, -1) * weights).sum().backward()
    torch.testing.assert_close(straight_through, logits.grad)


def test_one_hot_samples_follow_the_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.7])
    samples = sample_one_hot(probs.log().expand(20000, 3), torch.rand(20000, 3), False)
    torch.testing.assert_close(samples.mean(0), probs, atol=0.015, rtol=0)


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_lambda_returns_reject_nothing_but_known_variants(variant):
    lambda_returns(torch.zeros(1, 1), torch.zeros(1, 2), torch.ones(1, 1), 0.9, 0.9, variant)
    with pytest.raises(ValueError):
        lambda_returns(torch.zeros(1, 1), torch.zeros(1, 2), torch.ones(1, 1), 0.9, 0.9, "other")
