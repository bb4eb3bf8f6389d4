"""GAN losses and gradient penalties against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from feedgan.gan.losses import LOSSES, get_loss, gradient_penalty, r1_penalty, r2_penalty


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


REAL = torch.tensor([0.0, 2.0])
FAKE = torch.tensor([0.5, -2.0])


def test_logistic_losses_match_the_log_sigmoid_definitions():
    d_expected = (-(math.log(sigmoid(0.0)) + math.log(sigmoid(2.0))) / 2
                  - (math.log(1 - sigmoid(0.5)) + math.log(1 - sigmoid(-2.0))) / 2)
    for name in ("minimax", "nonsaturating"):
        assert get_loss(name).d(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    # minimax G minimises E log(1 - D(G(z))); the non-saturating G minimises -E log D(G(z))
    minimax = (math.log(1 - sigmoid(0.5)) + math.log(1 - sigmoid(-2.0))) / 2
    nonsat = -(math.log(sigmoid(0.5)) + math.log(sigmoid(-2.0))) / 2
    assert get_loss("minimax").g(FAKE).item() == pytest.approx(minimax, rel=1e-6)
    assert get_loss("nonsaturating").g(FAKE).item() == pytest.approx(nonsat, rel=1e-6)


def test_hinge_and_wasserstein_values():
    # hinge D: mean(relu(1 - [0, 2])) + mean(relu(1 + [0.5, -2])) = (1 + 0)/2 + (1.5 + 0)/2
    assert get_loss("hinge").d(REAL, FAKE).item() == pytest.approx(1.25)
    assert get_loss("hinge").g(FAKE).item() == pytest.approx(0.75)
    # critic: E[f] - E[r] = -0.75 - 1
    assert get_loss("wasserstein").d(REAL, FAKE).item() == pytest.approx(-1.75)
    assert get_loss("wasserstein").g(FAKE).item() == pytest.approx(0.75)


def test_losses_average_over_patch_logits():
    real = torch.zeros(2, 1, 3, 3)
    fake = torch.full((2, 1, 3, 3), -1.0)
    assert get_loss("hinge").d(real, fake).item() == pytest.approx(1.0)  # relu(1 - 0) + relu(1 - 1)


def test_minimax_generator_saturates_where_nonsaturating_does_not():
    grads = {}
    for name in ("minimax", "nonsaturating"):
        f = torch.tensor([-10.0], requires_grad=True)  # D confidently rejects the fake
        get_loss(name).g(f).backward()
        grads[name] = f.grad.item()
    assert abs(grads["minimax"]) < 1e-4
    assert grads["nonsaturating"] == pytest.approx(-1.0, abs=1e-4)


def test_get_loss_names_the_valid_choices():
    with pytest.raises(ValueError, match="unknown GAN loss 'lsgan'.*minimax.*nonsaturating.*hinge.*wasserstein"):
        get_loss("lsgan")
    assert set(LOSSES) == {"minimax", "nonsaturating", "hinge", "wasserstein"}


def linear_d(w: torch.Tensor, b: float = 0.3):
    return lambda x: (x * w).flatten(1).sum(1) + b  # (B, ...) -> (B,)


def test_gradient_penalty_zero_for_a_1_lipschitz_linear_critic_and_positive_otherwise():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(16, 3, generator=gen), torch.randn(16, 3, generator=gen)
    unit = torch.tensor([0.6, 0.0, 0.8])  # |w| = 1: the gradient norm is 1 everywhere
    assert gradient_penalty(linear_d(unit), real, fake, gen).item() == pytest.approx(0.0, abs=1e-10)
    # |w| = 2: (2 - 1)^2 at every interpolate
    assert gradient_penalty(linear_d(2 * unit), real, fake, gen).item() == pytest.approx(1.0, rel=1e-5)
    # images: one eps per sample broadcast over (C, H, W); |W| = 3 -> (3 - 1)^2
    w = torch.randn(2, 4, 4, generator=gen)
    w = 3 * w / w.norm()
    img_r, img_f = torch.randn(5, 2, 4, 4, generator=gen), torch.randn(5, 2, 4, 4, generator=gen)
    assert gradient_penalty(linear_d(w), img_r, img_f, gen).item() == pytest.approx(4.0, rel=1e-4)
    with pytest.raises(ValueError, match="differ in shape"):
        gradient_penalty(linear_d(unit), real, fake[:, :2], gen)


def test_gradient_penalty_depends_on_the_interpolation_point():
    # D(x) = 0.5 * x^2 has gradient x: the penalty is E[(|x_hat| - 1)^2] at random x_hat
    d = lambda x: 0.5 * x.pow(2).sum(1)  # noqa: E731
    real, fake = torch.full((4000, 1), 3.0), torch.full((4000, 1), 1.0)  # x_hat ~ U[1, 3]
    gp = gradient_penalty(d, real, fake, torch.Generator().manual_seed(1)).item()
    assert gp == pytest.approx(4.0 / 3.0, rel=0.05)  # E[(U[1,3] - 1)^2] = E[U[0,2]^2] = 4/3


def test_r1_equals_squared_weight_norm_for_a_linear_d_and_has_a_gradient():
    w = torch.tensor([1.0, 2.0, -2.0], requires_grad=True)
    x = torch.randn(8, 3)
    r1 = r1_penalty(linear_d(w), x)
    assert r1.item() == pytest.approx(9.0)
    assert r2_penalty(linear_d(w), x + 5).item() == pytest.approx(9.0)
    r1.backward()  # the penalty is differentiable in D's weights: d||w||^2/dw = 2w
    assert torch.allclose(w.grad, 2 * w.detach())


def test_r1_is_per_sample_for_a_nonlinear_d():
    d = lambda x: x.pow(2).sum(1)  # noqa: E731  gradient 2x
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert r1_penalty(d, x).item() == pytest.approx((4 * 1 + 4 * 9) / 2)
