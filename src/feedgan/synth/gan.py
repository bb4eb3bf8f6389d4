"""The profile GAN behind the ``gan`` generator, on the shared engine :mod:`feedgan.gan`.

A real sample is a train user's union profile ``x`` (n_items,) multi-hot with ``k = |x|`` items, and
its activity bucket ``c`` (one-hot over ``n_buckets`` quantile buckets of ``k``). For the same
``(k, c)`` the generator writes a fake of exactly ``k`` items::

    z ~ N(0, I) (noise_dim,)  ->  G([z, c])  ->  logits (n_items,)
    y = logits + Gumbel noise;  hard = 1 on the top k of y           (a draw without replacement)
    soft = sigmoid((y - t) / tau),  t halfway between the k-th and (k+1)-th largest y
    fake = hard + soft - soft.detach()                               (straight-through)

so D only ever sees sparse 0/1 profiles with real activity, and G's gradient flows through the
items near its cut-off. Sampling draws the same hard top-k (Gumbel top-k of G's logits). G's last
bias starts at the log item popularity, so training starts from the popularity sampler and learns
who goes with whom.

D reads ``[x, c]`` and, before its last layers, the batch mean and standard deviation of its hidden
features (minibatch features, after Salimans et al. 2016 and Karras et al. 2018): real and fake
batches are judged apart, so a G whose users all look alike is caught. Two more terms keep the
game on the catalogue: G's loss adds ``pop_weight * KL(p_train || mean_b softmax(logits_b))`` (the
train item popularity against the batch's mean item distribution) and D gets an R1 penalty. On the
simulator (60 epochs), without them G's users crowd onto part of the catalogue (item-popularity
correlation 0.3 with train at pop_weight 1 and no R1); pop_weight 10 holds popularity but leaves
the co-occurrence of the popularity sampler; pop_weight 3 with R1 (gamma 1) gives both (popularity
correlation 0.95, item pairs lifted as often as in real holdout users).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..gan import GANConfig, GANTask, GANTrainer

DENSE_LIMIT = 50_000_000  # real profiles kept as one dense tensor up to this many entries


def straight_through_top_k(logits: torch.Tensor, k: torch.Tensor, gen: torch.Generator, tau: float) -> torch.Tensor:
    """(B, I) profiles of exactly ``k[b]`` items (forward), relaxed by a sigmoid around the cut (backward)."""
    noise = torch.empty(logits.shape).exponential_(generator=gen).clamp_min_(1e-30).to(logits.device)
    y = logits - noise.log()  # (B, I) logits + Gumbel(0, 1)
    top = torch.topk(y.detach(), int(k.max()) + 1, dim=1).values  # (B, k_max + 1), descending
    kth = top.gather(1, (k - 1)[:, None])  # (B, 1) the k-th largest
    cut = (kth + top.gather(1, k[:, None])) / 2  # (B, 1) between the k-th and (k+1)-th
    hard = (y >= kth).float()
    soft = torch.sigmoid((y - cut) / tau)
    return hard + soft - soft.detach()


class ProfileG(nn.Module):
    """[z, c] (B, noise_dim + n_buckets) -> item logits (B, n_items)."""

    def __init__(self, noise_dim: int, n_buckets: int, hidden: int, n_items: int):
        super().__init__()
        self.noise_dim, self.n_buckets = noise_dim, n_buckets
        self.net = nn.Sequential(nn.Linear(noise_dim + n_buckets, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_items))

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        return self.net(zc)


class ProfileD(nn.Module):
    """[x, c] (B, n_items + n_buckets) -> one logit per profile. Besides each profile's features
    it reads the batch's mean and spread of them: a batch of real profiles and a batch of fakes are
    judged apart, so D sees whether the fakes' item popularity and diversity match the real ones."""

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


class ProfileTask(GANTask):
    """Real union profiles with their activity and bucket; fakes of the same activity."""

    def __init__(self, X: sp.csr_matrix, edges: np.ndarray, n_buckets: int, noise_dim: int, tau: float,
                 pop_weight: float, steps_per_epoch: int):
        k = np.minimum(X.getnnz(1), X.shape[1] - 1)  # the cut needs a (k+1)-th item
        self.X = torch.from_numpy(X.toarray()) if X.shape[0] * X.shape[1] <= DENSE_LIMIT else X
        self.k = torch.from_numpy(k.astype(np.int64))
        self.cond = buckets(k, edges, n_buckets)
        self.noise_dim, self.tau, self.pop_weight, self.steps_per_epoch = noise_dim, tau, pop_weight, steps_per_epoch
        pop = np.asarray(X.sum(0)).ravel()
        self.popularity = torch.from_numpy((pop / pop.sum()).astype(np.float32))  # (I,) share of touches

    def real_batch(self, n, generator):
        idx = torch.randint(len(self.k), (n,), generator=generator)
        x = self.X[idx] if isinstance(self.X, torch.Tensor) else torch.from_numpy(self.X[idx.numpy()].toarray())
        return {"real": x, "k": self.k[idx], "cond": self.cond[idx]}  # (n, I), (n,), (n, n_buckets)

    def fake(self, G, batch, generator):
        cond = batch["cond"]
        z = torch.randn(cond.shape[0], self.noise_dim, generator=generator).to(cond.device)
        logits = G(torch.cat([z, cond], 1))  # (n, I)
        batch["logits"] = logits  # for g_extra_loss: the same draw
        return straight_through_top_k(logits, batch["k"], generator, self.tau)

    def d_input(self, sample, batch):
        return torch.cat([sample, batch["cond"]], 1)  # (n, I + n_buckets)

    def g_extra_loss(self, fake, batch):
        """``pop_weight * KL(train popularity || the batch's mean softmax(logits))``: G's users, taken
        together, should touch items as often as the real ones do."""
        if not self.pop_weight:
            return None
        mean_p = torch.softmax(batch["logits"], 1).mean(0).clamp_min(1e-12)  # (I,)
        pop = self.popularity.to(mean_p.device)
        return self.pop_weight * (pop * (pop.clamp_min(1e-12).log() - mean_p.log())).sum()


def fit_profile_gan(X: sp.csr_matrix, *, edges: np.ndarray, n_buckets: int, noise_dim: int, g_hidden: int,
                    d_hidden: int, epochs: int, batch_size: int, lr: float, tau: float, pop_weight: float,
                    r1_gamma: float, seed: int, progress=None) -> ProfileG:
    """Train G and D on the union profiles ``X`` (n_users, n_items) of the users with a history;
    returns the EMA generator (CPU, eval mode)."""
    X = sp.csr_matrix(X[X.getnnz(1) > 0], dtype=np.float32)
    n_users, n_items = X.shape
    steps = max(1, math.ceil(n_users / batch_size))
    task = ProfileTask(X, edges, n_buckets, noise_dim, tau, pop_weight, steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        G, D = ProfileG(noise_dim, n_buckets, g_hidden, n_items), ProfileD(n_items + n_buckets, d_hidden)
    with torch.no_grad():  # start from the popularity sampler
        pop = np.asarray(X.sum(0)).ravel() + 0.1
        G.net[-1].bias.copy_(torch.from_numpy(np.log(pop / pop.sum()).astype(np.float32)))
        G.net[-1].weight.mul_(0.1)
    cfg = GANConfig(loss="nonsaturating", lr_g=lr, lr_d=lr, betas=(0.5, 0.999), batch_size=batch_size,
                    epochs=epochs, tick_every=steps, checkpoint_every=None, ema_decay=0.995, ema_warmup=True,
                    r1_gamma=r1_gamma,
                    seed=seed, device="cpu")
    trainer = GANTrainer(G, D, task, cfg)
    trainer.fit(progress=progress)
    return trainer.G_eval.cpu().eval()
