"""Mult-VAE^PR: a variational autoencoder with a multinomial likelihood over items.

Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018.

A user is their interaction row ``x`` (n_items,). The encoder reads the L2-normalised row (with
input dropout during training) and gives the mean and log-variance of a Gaussian ``q(z | x)``
over a ``latent``-dimensional code; the decoder maps a code to logits over all items, and
``softmax(logits)`` is the multinomial distribution the user's clicks are drawn from::

    x -> normalise -> dropout -> Linear(n_items, hidden) -> tanh -> Linear(hidden, 2 * latent)
      -> (mu, logvar) -> z = mu + noise_scale * eps * exp(logvar / 2),  eps ~ N(0, I)
      -> Linear(latent, hidden) -> tanh -> Linear(hidden, n_items) -> logits

    loss = -sum_i x_i log softmax(logits)_i  +  beta * KL(q(z | x) || N(0, I))

``beta`` is annealed linearly from 0 to ``beta_max`` over ``anneal_steps`` gradient steps (the
"partially regularised" ^PR variant).

``noise_scale`` multiplies the reparameterisation noise at training time. 1 is the paper's VAE;
0.01 is what RecBole's Mult-VAE does (its noise is drawn with standard deviation 0.01), which makes
the model close to a denoising autoencoder whose code is pulled towards 0 by the KL term; 0 makes
``z = mu`` (deterministic given the dropout mask). On ML-1M at 50 epochs of 500-user batches (650
steps), ``noise_scale=0.01`` with ``latent=100`` was the best setting on validation, and on test
it moved NDCG@20 from .335 to .350 and Recall@20 from .258 to .273 over three seeds; each change alone
gave about half of that (``benchmarks/multvae_gap.py``, ``docs/speed.md``). The defaults stay the
paper's (1 and 200). The noise is drawn at every scale, so one seed gives the same dropout masks and
shuffles whatever the scale.

Scoring uses the posterior mean ``z = mu`` and no dropout, so it is deterministic, and it needs
only the history row: any user, seen at fit or not, is folded in (``fold_in = True``).

The input side stays sparse: a batch of rows is a CSR tensor, dropout acts on its non-zeros
(dropping a zero changes nothing) and the first layer is one sparse-dense product, so its cost
grows with the interactions in the batch, not with ``batch x n_items``. Only the decoder's logits
are dense. Training runs on the shared loop (:class:`feedgan.gan.LossTrainer`: NaN guard,
progress). With ``eval_every`` > 0 and a validation part, NDCG@20 on validation is measured every
``eval_every`` epochs and the best weights are kept (see :mod:`feedgan.rec.selection`); the chosen
epoch count is what the refit on train + valid uses. Randomness (init, shuffling, dropout,
reparameterisation noise) comes from one local ``torch.Generator`` seeded with ``seed``; the
global torch RNG is untouched.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..gan import BestCheckpoint, LossTrainer
from ..optim import adam
from .base import Recommender, Validation
from .selection import epoch_choice, validation_ndcg


class _VAENet(nn.Module):
    """Encoder/decoder pair; one hidden layer on each side (the paper's [I -> 600 -> 200] shape)."""

    def __init__(self, n_items: int, hidden: int, latent: int):
        # built on the "meta" device (shapes only): no memory and no draw from the global RNG;
        # the caller materialises it with ``to_empty`` + ``init_weights`` or loads weights with ``assign``
        super().__init__()
        self.latent = latent
        self.enc_hidden = nn.Linear(n_items, hidden, device="meta")
        self.enc_out = nn.Linear(hidden, 2 * latent, device="meta")  # mean and log-variance side by side
        self.dec_hidden = nn.Linear(latent, hidden, device="meta")
        self.dec_out = nn.Linear(hidden, n_items, device="meta")

    @torch.no_grad()
    def init_weights(self, gen: torch.Generator) -> None:
        """Glorot-normal weights, N(0, 0.001) biases (as in the paper), drawn from ``gen``."""
        for layer in (self.enc_hidden, self.enc_out, self.dec_hidden, self.dec_out):
            fan_out, fan_in = layer.weight.shape
            std = (2.0 / (fan_in + fan_out)) ** 0.5
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, device=layer.weight.device) * std)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, device=layer.bias.device) * 1e-3)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_items) sparse input (normalised, maybe dropped out) -> mean, log-variance (B, latent)."""
        h = torch.tanh(torch.sparse.mm(x, self.enc_hidden.weight.T) + self.enc_hidden.bias)  # (B, hidden)
        out = self.enc_out(h)  # (B, 2 * latent)
        return out[:, :self.latent], out[:, self.latent:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) codes -> (B, n_items) logits."""
        return self.dec_out(torch.tanh(self.dec_hidden(z)))


class _Batch:
    """Rows of a CSR matrix as torch arrays: ``row``/``col``/``val`` per non-zero, plus ``crow``."""

    def __init__(self, X: sp.csr_matrix, rows: np.ndarray, dev: torch.device):
        sub = X[rows]
        self.n, self.n_items = sub.shape
        self.crow = torch.from_numpy(sub.indptr.astype(np.int64)).to(dev)  # (b + 1,)
        self.col = torch.from_numpy(sub.indices.astype(np.int64)).to(dev)  # (nnz,)
        self.val = torch.from_numpy(sub.data.astype(np.float32)).to(dev)  # (nnz,)
        self.row = torch.repeat_interleave(torch.arange(self.n, device=dev), self.crow.diff())  # (nnz,)

    def normalised(self, dropout: float = 0.0, gen: torch.Generator | None = None) -> torch.Tensor:
        """Row-wise L2-normalised (B, n_items) sparse tensor, with inverted dropout on its non-zeros."""
        norm = torch.zeros(self.n, device=self.val.device).index_add_(0, self.row, self.val.square()).sqrt()
        val = self.val / norm.clamp_min(1e-12)[self.row]  # (nnz,)
        if dropout > 0:  # our generator, not the global RNG
            keep = torch.rand(val.shape, generator=gen, device=val.device) >= dropout  # (nnz,)
            val = val * keep / (1.0 - dropout)
        return torch.sparse_coo_tensor(torch.stack([self.row, self.col]), val, (self.n, self.n_items),
                                       is_coalesced=True, check_invariants=False)  # CSR order is COO order


class _Epochs:
    """Mult-VAE batches for :class:`~feedgan.gan.LossTrainer`: every epoch shuffles the users with
    a history; step ``t`` is batch ``t mod steps_per_epoch`` of that order, with the KL weight
    annealed over ``t``."""

    def __init__(self, model: "MultVAE", net: _VAENet, X: sp.csr_matrix, gen: torch.Generator):
        self.rows = np.flatnonzero(np.diff(X.indptr) > 0)  # users with a history; empty rows teach nothing
        self.model, self.net, self.X, self.gen = model, net, X, gen
        self.dev = next(net.parameters()).device
        self.steps_per_epoch = max(1, math.ceil(len(self.rows) / model.batch_size))
        self.order = self.rows

    def loss(self, step: int) -> torch.Tensor:
        m, k = self.model, step % self.steps_per_epoch
        if k == 0:
            self.order = self.rows[torch.randperm(len(self.rows), generator=self.gen, device=self.dev).cpu().numpy()]
        batch = self.order[k * m.batch_size:(k + 1) * m.batch_size]
        beta = m.beta_max if m.anneal_steps <= 0 else min(m.beta_max, step / m.anneal_steps)
        return m._loss(self.net, _Batch(self.X, batch, self.dev), beta, self.gen)


class MultVAE(Recommender):
    """Variational autoencoder with multinomial likelihood and KL annealing (Liang et al. 2018).

    ``noise_scale`` (>= 0) scales the reparameterisation noise during training (1: the paper;
    0.01: RecBole's choice, better on ML-1M at short training; see the module docstring).

    Learned state: ``network_`` (the torch module), saved as its weight arrays.
    ``loss_history_`` is the mean batch loss of every epoch (a list, not saved).
    """

    name = "multvae"
    fold_in = True
    uses_validation = True

    def __init__(self, hidden: int = 600, latent: int = 200, dropout: float = 0.5, beta_max: float = 0.2,
                 anneal_steps: int = 20000, epochs: int = 100, batch_size: int = 500, lr: float = 1e-3,
                 weight_decay: float = 0.0, noise_scale: float = 1.0, eval_every: int = 0,
                 patience: int | None = None, seed: int = 0, device: str = "cpu"):
        self.hidden, self.latent, self.dropout, self.noise_scale = hidden, latent, dropout, noise_scale
        self.beta_max, self.anneal_steps = beta_max, anneal_steps
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.eval_every, self.patience, self.seed, self.device = eval_every, patience, seed, device

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, progress=None, valid: Validation | None = None) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise ValueError(f"{self.name}: noise_scale must be a finite number >= 0, got {self.noise_scale}")
        dev = torch.device(self.device)
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        net = _VAENet(X.shape[1], self.hidden, self.latent).to_empty(device=dev)
        net.init_weights(gen)
        opt = adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        task = _Epochs(self, net, X, gen)
        trainer = LossTrainer(net, task, opt, self.epochs, name=self.name)
        best = None
        if valid is not None and self.eval_every > 0:
            def metric(_) -> float:
                net.eval()
                self.network_ = net
                try:
                    return validation_ndcg(lambda u: self._score(u, valid.inputs[u]), valid)
                finally:
                    net.train()

            best = BestCheckpoint(metric, every=self.eval_every * task.steps_per_epoch, patience=self.patience,
                                  restore_on_end=True)
        net.train()
        trainer.fit(progress=progress, callbacks=[best] if best else [])
        self.loss_history_ = [s["loss"] for s in trainer.history]
        self.valid_history_, self.best_epoch_ = epoch_choice(best, task.steps_per_epoch, None) if best else ([], None)
        self.network_ = net.eval()

    def _loss(self, net: _VAENet, x: _Batch, beta: float, gen: torch.Generator) -> torch.Tensor:
        """Negative ELBO (with KL weight ``beta``) averaged over the batch ``x`` of B users."""
        mu, logvar = net.encode(x.normalised(self.dropout, gen))  # (B, latent) each
        # drawn even at noise_scale 0, so the scale alone changes between two runs of one seed
        eps = torch.randn(mu.shape, generator=gen, device=mu.device) * self.noise_scale  # (B, latent)
        z = mu + eps * torch.exp(0.5 * logvar)  # (B, latent) reparameterised sample
        logits = net.decode(z)  # (B, n_items)
        nll = -(F.log_softmax(logits, dim=1)[x.row, x.col] * x.val).sum() / x.n  # only non-zeros count
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
        return nll + beta * kl

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, users, history):
        # users is ignored: the history row alone is the user (known users get their train row)
        net = self.network_
        dev = next(net.parameters()).device
        out = np.empty(history.shape, dtype=np.float32)  # (B, n_items)
        with torch.inference_mode():
            for start in range(0, history.shape[0], self.batch_size):
                rows = np.arange(start, min(start + self.batch_size, history.shape[0]))
                mu, _ = net.encode(_Batch(history, rows, dev).normalised())  # (b, latent) mean, no sampling
                out[rows] = net.decode(mu).cpu().numpy()  # (b, n_items) logits
        return out

    # -- persistence: the weights as plain arrays, the module rebuilt on load ---------------------
    def _state(self):
        return {f"network.{k}": v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()}

    def _set_state(self, state):
        weights = {k[len("network."):]: torch.from_numpy(np.array(v)) for k, v in state.items()
                   if k.startswith("network.")}
        hidden, n_items = weights["enc_hidden.weight"].shape  # (hidden, n_items)
        latent = weights["dec_hidden.weight"].shape[1]  # (hidden, latent)
        net = _VAENet(n_items, hidden, latent)
        net.load_state_dict(weights, assign=True)
        self.network_ = net.to(torch.device(self.device)).eval()
