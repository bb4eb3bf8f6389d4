"""Differentially private training of the VAE generator's network (DP-SGD with Opacus).

:func:`fit_private_vae` trains the same Mult-VAE network as :class:`feedgan.rec.multvae.MultVAE`
(same layers, initialisation, input dropout, KL annealing and loss) with DP-SGD: each step takes a
Poisson sample of the train users (each user in with probability ``q = 1 / steps_per_epoch``),
clips every user's gradient to L2 norm ``max_grad_norm``, adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` to their sum, and moves Adam with it. Opacus
(``PrivacyEngine.make_private_with_epsilon``, RDP accountant) picks the noise multiplier that
spends ``epsilon`` at ``delta`` over ``epochs`` passes, and reports the epsilon actually spent. The
unit of privacy is a user (one row: all their interactions).

Training runs on the shared loop (:class:`feedgan.gan.LossTrainer`) with Opacus' optimizer, data
loader and loss. The per-user norms come from ghost clipping (for a linear layer on a 2-D input,
``|grad_u| = |a_u| |g_u|``), so no (users, weights) array of per-user gradients is ever made; the
hooks behind it see only layers called as modules, so the first layer reads a dense (B, n_items)
row block instead of the sparse product MultVAE uses (the same function).

Opacus is optional (``pip install opacus==1.6.0``, or the ``dp`` extra); nothing imports it unless
DP training is asked for. Its noise comes from seeded torch generators (reproducible runs), not
from Opacus' cryptographically secure mode.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..data.schema import DataError

OPACUS = "opacus==1.6.0"
ACCOUNTANT = "rdp"
BUDGET_FIELDS = ("epsilon_target", "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "sample_rate",
                 "steps")  # the numbers of a spent budget, in the order they are saved


def require_opacus():
    """The ``opacus`` module, or one clear error saying how to install it."""
    try:
        import opacus
    except ImportError:
        raise DataError("differentially private training (dp_epsilon) needs Opacus, which is not installed",
                        fix=f"pip install {OPACUS}") from None
    return opacus


def default_delta(n_users: int) -> float:
    """``1 / n ** 1.1``: below ``1 / n``, the share of users a mechanism may expose outright."""
    return 1.0 / max(int(n_users), 2) ** 1.1


def check_dp_params(owner: str, epsilon: float | None, delta: float | None, max_grad_norm: float,
                    epochs: int = 1) -> None:
    """ValueError naming the parameter when the DP settings make no sense."""
    if epsilon is not None and epochs < 1:
        raise ValueError(f"{owner}: DP training needs epochs >= 1, got {epochs}")
    if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"{owner}: dp_epsilon must be a positive number (or none for no DP), got {epsilon}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"{owner}: dp_delta must be in (0, 1) (or none for 1 / n_users^1.1), got {delta}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"{owner}: dp_max_grad_norm must be a positive number, got {max_grad_norm}")


def budget_array(budget: dict) -> np.ndarray:
    """A spent budget (the dict :func:`fit_private_vae` returns) as a (len(BUDGET_FIELDS),) float64 array."""
    return np.array([budget[k] for k in BUDGET_FIELDS], dtype=np.float64)


def budget_dict(values: np.ndarray) -> dict:
    """The inverse of :func:`budget_array`."""
    out = {k: float(v) for k, v in zip(BUDGET_FIELDS, np.asarray(values, dtype=np.float64))}
    out["steps"] = int(out["steps"])
    return {**out, "accountant": ACCOUNTANT}


class _DenseVAE(nn.Module):
    """A Mult-VAE network (``_VAENet``) called layer by layer on a dense batch, so that Opacus'
    hooks see every layer: ``(x (B, I) normalised input, eps (B, latent)) -> logits (B, I), mu, logvar``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        net = self.net
        out = net.enc_out(torch.tanh(net.enc_hidden(x)))  # (B, 2 * latent)
        mu, logvar = out[:, :net.latent], out[:, net.latent:]
        return net.decode(mu + eps * torch.exp(0.5 * logvar)), mu, logvar


class _NegELBO:
    """Each user's negative ELBO, the loss Opacus' ghost clipping wraps:
    ``((logits, mu, logvar), (batch, beta)) -> (B,)`` under ``reduction="none"`` (Opacus sets it), else
    their sum. The sum, not the mean: the clipped per-user gradients are summed and noised either
    way, and Adam's step does not depend on the gradient's scale."""

    reduction = "sum"

    def __call__(self, out, target) -> torch.Tensor:
        (logits, mu, logvar), (x, beta) = out, target
        picked = F.log_softmax(logits, dim=1)[x.row, x.col] * x.val  # (nnz,) only non-zeros count
        nll = -torch.zeros(x.n, dtype=logits.dtype, device=logits.device).index_add(0, x.row, picked)  # (B,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # (B,)
        per_user = nll + beta * kl
        return per_user if self.reduction == "none" else per_user.sum()


class _PoissonEpochs:
    """DP-SGD batches for :class:`~feedgan.gan.LossTrainer`: one pass of Opacus' Poisson data loader
    is an epoch; step ``t`` draws the next sample of users (possibly empty) and returns Opacus'
    wrapped loss of it (its ``backward`` clips each user's gradient before summing)."""

    def __init__(self, model: nn.Module, criterion, loader, X: sp.csr_matrix, rows: np.ndarray, *, latent: int,
                 dropout: float, beta_max: float, anneal_steps: int, gen: torch.Generator):
        self.model, self.criterion, self.loader, self.X, self.rows = model, criterion, loader, X, rows
        self.latent, self.dropout, self.beta_max, self.anneal_steps = latent, dropout, beta_max, anneal_steps
        self.gen, self.dev = gen, next(model.parameters()).device
        self.steps_per_epoch = len(loader)
        self._batches = iter(())

    def loss(self, step: int):
        from ..rec.multvae import _Batch

        if step % self.steps_per_epoch == 0:
            self._batches = iter(self.loader)
        (picked,) = next(self._batches)  # (b,) positions in ``rows``
        x = _Batch(self.X, self.rows[picked.numpy()], self.dev)
        beta = self.beta_max if self.anneal_steps <= 0 else min(self.beta_max, step / self.anneal_steps)
        eps = torch.randn((x.n, self.latent), generator=self.gen, device=self.dev)  # (b, latent)
        return self.criterion(self.model(x.normalised(self.dropout, self.gen).to_dense(), eps), (x, beta))


def fit_private_vae(X: sp.csr_matrix, *, hidden: int, latent: int, dropout: float, beta_max: float,
                    anneal_epochs: int, epochs: int, batch_size: int, lr: float, epsilon: float,
                    delta: float | None, max_grad_norm: float, seed: int, device: str = "cpu",
                    progress=None) -> tuple[nn.Module, dict]:
    """Train a Mult-VAE network on the rows of ``X`` (users, items) with DP-SGD at ``(epsilon, delta)``.

    ``batch_size`` is the expected batch (``q = 1 / ceil(n / batch_size)``). Returns the trained
    ``_VAENet`` (eval mode, CPU) and what was spent: ``{"epsilon_target", "epsilon_spent", "delta",
    "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "accountant"}``."""
    opacus = require_opacus()
    from torch.utils.data import DataLoader, TensorDataset

    from ..gan import LossTrainer
    from ..rec.multvae import _VAENet

    rows = np.flatnonzero(np.diff(X.indptr) > 0)  # users with a history
    delta = default_delta(len(rows)) if delta is None else float(delta)
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(int(seed))  # init, dropout, reparameterisation (as MultVAE)
    net = _VAENet(X.shape[1], hidden, latent).to_empty(device=dev)
    net.init_weights(gen)
    model = _DenseVAE(net).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # not fused: Opacus' optimizer steps it
    loader = DataLoader(TensorDataset(torch.arange(len(rows))), batch_size=batch_size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = opacus.PrivacyEngine(accountant=ACCOUNTANT)
    try:  # ghost clipping: per-user gradient norms without per-user gradients (Linear layers on 2-D input)
        model, opt, criterion, loader = engine.make_private_with_epsilon(
            module=model, optimizer=opt, criterion=_NegELBO(), data_loader=loader, target_epsilon=float(epsilon),
            target_delta=delta, epochs=int(epochs), max_grad_norm=float(max_grad_norm), poisson_sampling=True,
            loss_reduction="sum", grad_sample_mode="ghost",
            noise_generator=torch.Generator(device=dev).manual_seed(int(seed) + 1))
    except ValueError as err:  # e.g. "The privacy budget is too low."
        raise ValueError(f"vae: cannot reach dp_epsilon={epsilon} at dp_delta={delta:.3g} in {epochs} epochs "
                         f"({err}); raise dp_epsilon or lower epochs") from None
    sampling = torch.Generator().manual_seed(int(seed) + 2)  # which users each step takes
    loader.batch_sampler.generator = loader.generator = sampling  # (the loader's own draw: not the global RNG)
    steps_per_epoch = len(loader)
    task = _PoissonEpochs(model, criterion, loader, X, rows, latent=latent, dropout=dropout, beta_max=beta_max,
                          anneal_steps=anneal_epochs * steps_per_epoch, gen=gen)
    trainer = LossTrainer(model, task, opt, epochs, name="multvae-dp")
    with warnings.catch_warnings():  # Opacus' hooks on the first layer, whose input needs no gradient
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        trainer.fit(progress=progress)
    model.cleanup()  # Opacus' hooks and per-sample gradients off the network
    spent = {"epsilon_target": float(epsilon), "epsilon_spent": float(engine.get_epsilon(delta)), "delta": delta,
             "noise_multiplier": float(opt.noise_multiplier), "max_grad_norm": float(max_grad_norm),
             "sample_rate": float(loader.batch_sampler.sample_rate), "steps": int(trainer.step),
             "accountant": ACCOUNTANT}
    return net.cpu().eval(), spent
