"""GAN objectives as pure functions of discriminator logits, plus gradient penalties.

Conventions used throughout ``feedgan.gan``:

* The discriminator returns unnormalised scores ("logits"), any shape whose first axis is the
  batch: ``(B,)``, ``(B, 1)`` or a patch map ``(B, 1, H, W)``. Higher means "more real". A loss
  averages over every element, so a patch discriminator needs no special case.
* ``sigma`` is the logistic sigmoid and ``softplus(x) = log(1 + e^x)``, so
  ``-log sigma(x) = softplus(-x)`` and ``-log(1 - sigma(x)) = softplus(x)``: the logistic losses
  below are written with ``softplus``, which is exact and never takes ``log(0)``.
* Every loss is *minimised*: the trainer calls ``loss.d(real_logits, fake_logits)`` for the
  discriminator and ``loss.g(fake_logits)`` for the generator.

Penalties take a callable ``d`` (the discriminator as the trainer sees it, mapping a D input to
logits) and D *inputs* (already passed through the task's ``d_input``), so conditional
discriminators work unchanged: interpolating ``[x_real, c]`` and ``[x_fake, c]`` leaves the
shared condition ``c`` where it is.

    loss = get_loss("hinge")
    d_loss = loss.d(D(real), D(fake.detach())) + 10 * gradient_penalty(D, real, fake)
    g_loss = loss.g(D(fake))
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class GANLoss(NamedTuple):
    """A named pair of objectives: ``d(real_logits, fake_logits)`` and ``g(fake_logits)``."""

    name: str
    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]


# -- logistic (Goodfellow et al. 2014) --------------------------------------------------------
def logistic_d(real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator loss of the original GAN (binary cross-entropy, real = 1, fake = 0):

    ``L_D = E[-log sigma(D(x))] + E[-log(1 - sigma(D(G(z))))] = E[softplus(-r)] + E[softplus(f)]``
    """
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    """The original, *saturating* generator loss ``L_G = E[log(1 - sigma(f))] = -E[softplus(f)]``.

    Its gradient vanishes when D confidently rejects the fakes (``f -> -inf``), which is exactly
    the situation early in training; kept for completeness and comparisons.
    """
    return -F.softplus(fake).mean()


def nonsaturating_g(fake: Tensor) -> Tensor:
    """The non-saturating generator loss ``L_G = E[-log sigma(f)] = E[softplus(-f)]``: the same
    fixed point as minimax, strong gradients when D rejects the fakes."""
    return F.softplus(-fake).mean()


# -- hinge (Lim & Ye 2017; Miyato et al. 2018) -------------------------------------------------
def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """``L_D = E[relu(1 - r)] + E[relu(1 + f)]``: D stops pushing once a margin of 1 is reached."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: Tensor) -> Tensor:
    """``L_G = -E[f]``."""
    return -fake.mean()


# -- Wasserstein (Arjovsky et al. 2017); pair it with ``gradient_penalty`` (WGAN-GP) ------------
def wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    """Critic loss ``L_D = E[f] - E[r]`` (the negative of the Kantorovich-Rubinstein estimate).

    Only meaningful with a Lipschitz constraint on D, in feedgan ``gp_weight > 0``.
    """
    return fake.mean() - real.mean()


def wasserstein_g(fake: Tensor) -> Tensor:
    """``L_G = -E[f]``."""
    return -fake.mean()


LOSSES: dict[str, GANLoss] = {
    "minimax": GANLoss("minimax", logistic_d, minimax_g),
    "nonsaturating": GANLoss("nonsaturating", logistic_d, nonsaturating_g),
    "hinge": GANLoss("hinge", hinge_d, hinge_g),
    "wasserstein": GANLoss("wasserstein", wasserstein_d, wasserstein_g),
}


def get_loss(name: str) -> GANLoss:
    """The :class:`GANLoss` called ``name``; a ``ValueError`` naming the valid choices otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {', '.join(LOSSES)}") from None


# -- gradient penalties -----------------------------------------------------------------------
def _input_grad(d: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``grad_x sum(D(x))`` (B, ...) with the graph kept, so the penalty itself can be minimised.

    Summing over the batch is fine: sample ``i``'s logit depends only on ``x[i]`` (true for any
    D without batch statistics; with BatchNorm in D, prefer layer/instance norm for penalties).
    """
    x = x.detach().requires_grad_(True)
    out = d(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def _sq_norm(grad: Tensor) -> Tensor:
    """Per-sample squared L2 norm over every non-batch axis: (B, ...) -> (B,)."""
    return grad.reshape(grad.shape[0], -1).pow(2).sum(1)


def gradient_penalty(d: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` at random points
    ``x_hat = eps * real + (1 - eps) * fake`` with ``eps ~ U[0, 1]`` per sample.

    ``real`` and ``fake`` are D inputs of the same shape (B, ...); ``eps`` (B, 1, ..., 1) is drawn
    from ``generator`` (on its device) when given. Returns the unweighted penalty (a scalar).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)  # (B, 1, ..., 1): one eps per sample
    if generator is not None:
        eps = torch.rand(shape, generator=generator, device=generator.device).to(real.device, real.dtype)
    else:
        eps = torch.rand(shape, device=real.device, dtype=real.dtype)
    x_hat = eps * real.detach() + (1.0 - eps) * fake.detach()  # (B, ...)
    grad = _input_grad(d, x_hat)
    norm = (_sq_norm(grad) + 1e-12).sqrt()  # (B,); the epsilon keeps the backward finite at 0
    return (norm - 1.0).pow(2).mean()


def r1_penalty(d: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): zero-centred penalty on real data, ``E[||grad_x D(x)||^2]``.

    Unweighted; the usual objective adds ``gamma / 2`` times this (the trainer's ``r1_gamma``).
    For a linear ``D(x) = w . x + b`` it equals ``||w||^2``.
    """
    return _sq_norm(_input_grad(d, real)).mean()


def r2_penalty(d: Callable[[Tensor], Tensor], fake: Tensor) -> Tensor:
    """R2: the same zero-centred penalty ``E[||grad_x D(x)||^2]`` on generated samples."""
    return _sq_norm(_input_grad(d, fake)).mean()
