"""Mult-VAE^PR: a variational autoencoder with a multinomial likelihood over items.

Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018.

A user is their interaction row ``x`` (n_items,). The encoder reads the L2-normalised row (with
input dropout during training) and gives the mean and log-variance of a Gaussian ``q(z | x)``
over a ``latent``-dimensional code; the decoder maps a code to logits over all items, and
``softmax(logits)`` is the multinomial distribution the user's clicks are drawn from::

    x -> normalise -> dropout -> Linear(n_items, hidden) -> tanh -> Linear(hidden, 2 * latent)
      -> (mu, logvar) -> z = mu + eps * exp(logvar / 2)
      -> Linear(latent, hidden) -> tanh -> Linear(hidden, n_items) -> logits

    loss = -sum_i x_i log softmax(logits)_i  +  beta * KL(q(z | x) || N(0, I))

``beta`` is annealed linearly from 0 to ``beta_max`` over ``anneal_steps`` gradient steps (the
"partially regularised" ^PR variant). Scoring uses the posterior mean ``z = mu`` and no dropout,
so it is deterministic, and it needs only the history row: any user, seen at fit or not, is
folded in (``fold_in = True``).

Training reads the sparse matrix one mini-batch of users at a time and densifies only that batch.
Randomness (init, shuffling, dropout, reparameterisation noise) comes from one local
``torch.Generator`` seeded with ``seed``; the global torch RNG is untouched.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from .base import Recommender


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
        """(B, n_items) normalised, possibly dropped-out input -> mean, log-variance (B, latent) each."""
        h = torch.tanh(self.enc_hidden(x))  # (B, hidden)
        out = self.enc_out(h)  # (B, 2 * latent)
        return out[:, :self.latent], out[:, self.latent:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) codes -> (B, n_items) logits."""
        return self.dec_out(torch.tanh(self.dec_hidden(z)))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation; empty rows stay zero."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (B, n_items)


class MultVAE(Recommender):
    """Variational autoencoder with multinomial likelihood and KL annealing (Liang et al. 2018).

    Learned state: ``network_`` (the torch module), saved as its weight arrays.
    ``loss_history_`` is the mean training loss of every epoch (a list, not saved).
    """

    name = "multvae"
    fold_in = True

    def __init__(self, hidden: int = 600, latent: int = 200, dropout: float = 0.5, beta_max: float = 0.2,
                 anneal_steps: int = 20000, epochs: int = 100, batch_size: int = 500, lr: float = 1e-3,
                 weight_decay: float = 0.0, seed: int = 0, device: str = "cpu"):
        self.hidden, self.latent, self.dropout = hidden, latent, dropout
        self.beta_max, self.anneal_steps = beta_max, anneal_steps
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.seed, self.device = seed, device

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, progress=None) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {self.dropout}")
        dev = torch.device(self.device)
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        net = _VAENet(X.shape[1], self.hidden, self.latent).to_empty(device=dev)
        net.init_weights(gen)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        rows = np.flatnonzero(np.diff(X.indptr) > 0)  # users with a history; empty rows teach nothing
        task = progress.add_task(f"fit {self.name}", total=self.epochs) if progress is not None else None
        self.loss_history_: list[float] = []
        step = 0
        net.train()
        for _ in range(self.epochs):
            order = rows[torch.randperm(len(rows), generator=gen, device=dev).cpu().numpy()]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                x = torch.from_numpy(X[batch].toarray()).to(dev)  # (B, n_items) binary
                beta = self.beta_max if self.anneal_steps <= 0 else min(self.beta_max, step / self.anneal_steps)
                loss = self._loss(net, x, beta, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
                step += 1
            self.loss_history_.append(total / max(1, len(rows)))
            if task is not None:
                progress.advance(task)
        net.eval()
        self.network_ = net

    def _loss(self, net: _VAENet, x: torch.Tensor, beta: float, gen: torch.Generator) -> torch.Tensor:
        """Negative ELBO (with KL weight ``beta``) averaged over the batch ``x`` (B, n_items)."""
        h = _normalise(x)
        if self.dropout > 0:  # inverted dropout, with our generator instead of the global RNG
            keep = torch.rand(h.shape, generator=gen, device=h.device) >= self.dropout  # (B, n_items)
            h = h * keep / (1.0 - self.dropout)
        mu, logvar = net.encode(h)  # (B, latent) each
        eps = torch.randn(mu.shape, generator=gen, device=mu.device)  # (B, latent)
        z = mu + eps * torch.exp(0.5 * logvar)  # (B, latent) reparameterised sample
        logits = net.decode(z)  # (B, n_items)
        nll = -(F.log_softmax(logits, dim=1) * x).sum(1).mean()
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
                x = torch.from_numpy(history[start:start + self.batch_size].toarray()).to(dev)  # (b, n_items)
                mu, _ = net.encode(_normalise(x))  # (b, latent) posterior mean, no sampling
                out[start:start + x.shape[0]] = net.decode(mu).cpu().numpy()  # (b, n_items) logits
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
