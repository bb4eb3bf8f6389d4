"""The GAN behind the ``gan`` generator, on the shared engine :mod:`feedgan.gan`: a learned prior
over the codes of a fitted Mult-VAE (a latent GAN).

The ``vae`` sampler draws a user's code from one Gaussian fitted to the train users' codes and
decodes it. The ``gan`` sampler keeps that VAE and its decoder, and replaces the Gaussian by a
generator trained adversarially against the codes of the train users::

    real:  x_u -> encoder -> mu_u, sigma_u;  code = mu_u + sigma_u * eps   (a draw of u's posterior)
           with c_u, the one-hot activity bucket of k_u = |x_u| (quantiles of the train activity)
    fake:  eps ~ N(0, I) (latent,), c  ->  G([eps, c]) = m + L eps + f([eps, c])
    D([code, c]) -> real or fake          (non-saturating loss, R1 on real codes, EMA of G)
    sample: k a real user's activity, c its bucket -> G -> decoder -> Gumbel top-k of k items

``m`` and ``L`` are the mean and Cholesky factor of the aggregate-posterior Gaussian (what ``vae``
samples from) and ``f``'s last layer starts at zero, so G starts as the ``vae`` sampler and learns
the shape of the code distribution the Gaussian misses (clusters, skew) and how a user's codes go
with their activity. D reads batch statistics of its features besides each code (minibatch
features), so a G whose codes crowd together is caught.

Why the game is played on codes rather than profiles: a GAN whose D judged multi-hot profiles
(noise + bucket -> item logits -> straight-through Gumbel top-k, a KL term to the train item
popularity, R1) scored TSTR 0.34 on the simulator and 0.31 on ML-1M, below the popularity floor;
its G's mean item distribution kept only 0.36 (1 - TVD) of the train popularity despite the KL
term. Fine-tuning the VAE's decoder against such a D instead (10 epochs, lr 1e-4) lowered TSTR on
the simulator (0.95 against 0.98 on holdout users) unless a reconstruction term held the decoder,
and then changed nothing. On codes (``latent`` numbers, not thousands of items) the decoder keeps
what the VAE learnt about popularity and co-occurrence, and G only has to fix the prior.

The settings, measured on one seed against the ``vae`` sampler (train users fit, holdout users
judge; TSTR over EASE, ItemKNN and most-popular with holdout users as the test users):

* Posterior draws as the real codes, not posterior means: the means (200 epochs) kept the
  two-sample AUC at the ``vae`` level (0.83 and 0.82 against 0.80 and 0.81 on the simulator and
  ML-1M) while the draws (100 epochs) lowered it to 0.74 and 0.71, at the same TSTR (0.98, 0.89)
  and membership AUC (distance attack 0.54, 0.51).
* Learning rate 1e-3, not 2e-4: at 2e-4 G's codes shrank to half the real spread on a planted
  two-cluster set (mode collapse before the modes were found); at 1e-3 they kept it and fell on
  the clusters. 100 epochs: 25 left the two-sample AUC at 0.77 on the simulator, 50 to 200 all gave
  0.73-0.74, and the membership AUC crept up with more (0.54 at 50 and 100, 0.57 at 200).
* Four activity buckets: one (no condition) gave 0.76, eight 0.76, four 0.74.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..gan import GANConfig, GANTask, GANTrainer


class BatchD(nn.Module):
    """[x, c] (B, n_in) -> one logit per sample. Besides each sample's features it reads the batch's
    mean and spread of them (minibatch features): a batch of real samples and a batch of fakes are
    judged apart, so a G whose samples crowd together is caught."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(0.2))
        self.out = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (B, hidden)
        batch = torch.cat([h.mean(0), h.std(0, unbiased=False)]).expand(h.shape[0], -1)  # (B, 2 * hidden)
        return self.out(torch.cat([h, batch], 1)).squeeze(1)  # (B,)


def bucket_edges(k: np.ndarray, n_buckets: int) -> np.ndarray:
    """(n_buckets - 1,) activity cut points: quantiles of the train activity ``k``."""
    return np.quantile(k, np.linspace(0, 1, n_buckets + 1)[1:-1]) if n_buckets > 1 else np.zeros(0)


def buckets(k: np.ndarray, edges: np.ndarray, n_buckets: int) -> torch.Tensor:
    """(n, n_buckets) one-hot activity bucket of each ``k``."""
    b = torch.from_numpy(np.searchsorted(edges, k, side="right").astype(np.int64))
    return nn.functional.one_hot(b, n_buckets).float()


class LatentG(nn.Module):
    """[eps, c] (B, latent + n_buckets) -> a code (B, latent): the Gaussian ``mean + chol @ eps``
    plus a learned correction. The correction's last layer starts at zero, so training starts from
    the Gaussian sampler and moves only where D tells the codes apart."""

    def __init__(self, latent: int, n_buckets: int, hidden: int, mean: np.ndarray | None = None,
                 chol: np.ndarray | None = None):
        super().__init__()
        self.latent = latent
        self.register_buffer("mean", torch.zeros(latent) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("chol", torch.eye(latent) if chol is None else torch.as_tensor(chol).float())
        self.net = nn.Sequential(nn.Linear(latent + n_buckets, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, latent))
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        eps = zc[:, :self.latent]  # (B, latent)
        return self.mean + eps @ self.chol.T + self.net(zc)


class LatentTask(GANTask):
    """Real samples: the train users' codes with their activity bucket; fakes: G's codes for the same buckets.

    ``codes`` (N, latent) are posterior means; with ``logvar`` (N, latent) given, each real sample is a
    fresh draw ``mu + exp(logvar / 2) * eps`` of that user's posterior instead."""

    def __init__(self, codes: torch.Tensor, logvar: torch.Tensor | None, cond: torch.Tensor, steps_per_epoch: int):
        self.codes, self.logvar, self.cond, self.steps_per_epoch = codes, logvar, cond, steps_per_epoch

    def real_batch(self, n, generator):
        idx = torch.randint(len(self.codes), (n,), generator=generator)
        code = self.codes[idx]  # (n, latent)
        if self.logvar is not None:
            code = code + torch.randn(code.shape, generator=generator) * (0.5 * self.logvar[idx]).exp()
        return {"real": code, "cond": self.cond[idx]}

    def fake(self, G, batch, generator):
        cond = batch["cond"]
        eps = torch.randn(cond.shape[0], batch["real"].shape[1], generator=generator).to(cond.device)
        return G(torch.cat([eps, cond], 1))  # (n, latent)

    def d_input(self, sample, batch):
        return torch.cat([sample, batch["cond"]], 1)  # (n, latent + n_buckets)


def fit_latent_gan(codes: np.ndarray, cond: torch.Tensor, *, mean: np.ndarray, chol: np.ndarray,
                   logvar: np.ndarray | None, g_hidden: int, d_hidden: int, epochs: int, batch_size: int, lr: float,
                   r1_gamma: float, seed: int, progress=None) -> LatentG:
    """Train G (codes from noise and bucket ``cond`` (N, n_buckets)) against D on the real ``codes``
    (N, latent) posterior means, or on draws of those posteriors when their ``logvar`` is given; G
    starts at the Gaussian ``N(mean, chol chol^T)``. Returns the EMA generator (CPU, eval mode)."""
    n, latent = codes.shape
    steps = max(1, math.ceil(n / batch_size))
    task = LatentTask(torch.from_numpy(np.asarray(codes, np.float32)),
                      None if logvar is None else torch.from_numpy(np.asarray(logvar, np.float32)), cond, steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        G = LatentG(latent, cond.shape[1], g_hidden, mean, chol)
        D = BatchD(latent + cond.shape[1], d_hidden)
    cfg = GANConfig(loss="nonsaturating", lr_g=lr, lr_d=lr, betas=(0.5, 0.999), batch_size=batch_size,
                    epochs=epochs, tick_every=steps, checkpoint_every=None, ema_decay=0.995, ema_warmup=True,
                    r1_gamma=r1_gamma, seed=seed, device="cpu")
    trainer = GANTrainer(G, D, task, cfg)
    trainer.fit(progress=progress)
    return trainer.G_eval.cpu().eval()
