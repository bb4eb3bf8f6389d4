"""Fake profiles refined by a generator trained to look real to a discriminator (in the spirit of AUSH,
Lin et al. 2020), for ``inject(log, "adversarial", ...)``.

Every fake starts from a *template*: a real user drawn at random among those with at least
``room * L`` items besides the targets (``L = round(filler * items)``, the classic kinds' filler
count; ``room`` is 2 by default, so G has items to choose from; ``L`` when fewer than 5 users have
that many). A generator ``G`` reads the template's profile row and proposes which ``L`` of the
template's items the fake keeps and how it rates them; the targets are then added at the top
rating, a push ``G`` never changes. Training is a game on the shared engine
:class:`feedgan.gan.GANTrainer`::

    template t  (n_items,)   the profile row of feedgan.moderation.discriminator.profile_rows,
                             target columns zeroed (a template's own rating of a target is not copied)
    G(t) -> selection logits s (n_items,), rating shifts d (n_items,)  (last layer zero: s = d = 0)
    keep   = the L items of t with the largest s + Gumbel noise  (hard top-L forward; the gradient
             of softmax((s + noise) / tau) * L backward, a straight-through estimate)
    rating = clip(u_t + max_shift * tanh(d), 0, 1)  with u_t the template's rating scaled to [0, 1]
    D reads [keep, keep * (2 * snap(rating) - 1)]  on rating logs (presence, and the rating centred
             on the scale's middle, snapped to the log's levels straight through); keep alone on
             implicit logs. Its real rows are read the same way; the targets are in neither.
    G loss = adv_weight * nonsaturating(D(fake))
             + recon_weight * (mean (rating - u_t)^2 + mean s^2, over the template's items)

The reconstruction term keeps each fake near its template (its ratings, and a selection close to a
uniform pick of the template's items); the adversarial term moves it towards what real users look
like. D's real samples are the quarter of the real users (at least ``batch_size``) whose profile
length is nearest ``L``, so D compares like with like and cannot win on length alone, which G
cannot change. With ``epochs=0`` nothing is trained: ``G`` is its zero start, so each fake is a
uniform pick of ``L`` of its template's items with the template's ratings (the unrefined
*template attack*, the baseline of the refined one). Seeded; CPU; seconds on ML-100K.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.schema import DataError
from ..gan import GANConfig, GANTask, GANTrainer
from ..params import ParamError, check_params
from ..synth.gan import BatchD
from .discriminator import profile_rows

MIN_TEMPLATES = 5       # fewer real users with L items than this: the attack refuses
REAL_POOL_SHARE = 0.25  # D's real samples: this share of the real users, the nearest in length to L


@dataclass
class AdversarialParams:
    """``generator_params`` of the adversarial attack (small, fast defaults)."""

    epochs: int = 60           # passes over D's real pool; 0 = the unrefined template attack
    hidden: int = 128          # G's hidden width
    d_hidden: int = 128        # D's hidden width
    lr: float = 1e-3           # Adam, both players
    batch_size: int = 64
    adv_weight: float = 1.0
    recon_weight: float = 1.0
    tau: float = 0.5           # temperature of the soft selection behind the straight-through top-L
    max_shift: float = 0.5     # largest change of a rating, as a share of the rating range
    room: float = 2.0          # templates have at least room * L items (when enough users do; else L)
    r1_gamma: float = 1.0      # R1 penalty on D's real rows

    def __post_init__(self):
        for name in ("hidden", "d_hidden", "batch_size"):
            if getattr(self, name) < 1:
                raise ParamError(f"adversarial: hyperparameter {name} must be a positive integer, "
                                 f"got {getattr(self, name)!r}")
        if self.epochs < 0:
            raise ParamError(f"adversarial: hyperparameter epochs must be >= 0, got {self.epochs!r}")
        for name in ("lr", "tau"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise ParamError(f"adversarial: hyperparameter {name} must be a positive number, "
                                 f"got {getattr(self, name)!r}")
        if not self.room >= 1 or not math.isfinite(self.room):
            raise ParamError(f"adversarial: hyperparameter room must be a number >= 1, got {self.room!r}")
        for name in ("adv_weight", "recon_weight", "max_shift", "r1_gamma"):
            if not getattr(self, name) >= 0 or not math.isfinite(getattr(self, name)):
                raise ParamError(f"adversarial: hyperparameter {name} must be a number >= 0, "
                                 f"got {getattr(self, name)!r}")


def adversarial_params(params: dict | None) -> AdversarialParams:
    if params is not None and not isinstance(params, dict):
        raise DataError(f"generator_params {params!r} is not a mapping",
                        fix="pass e.g. generator_params={'epochs': 30}")
    try:
        return AdversarialParams(**check_params(AdversarialParams, params or {}, owner="adversarial"))
    except ParamError as err:
        raise DataError(f"adversarial attack: {err}",
                        fix="see feedgan.moderation.adversarial.AdversarialParams for its hyperparameters") from None


# ---- the generator and the game ----------------------------------------------------------------------------

class Refiner(nn.Module):
    """G: template rows (B, n_items) -> selection logits and rating shifts, (B, n_items) each; both
    start at 0 (the last layer is zero), i.e. at the unrefined template."""

    def __init__(self, n_items: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_items, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * n_items))
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(template)
        return out.chunk(2, dim=1)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, n) 0/1: the k largest entries of each row."""
    return torch.zeros_like(scores).scatter_(1, scores.topk(k, dim=1).indices, 1.0)


def _gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp_(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))


class _Game(GANTask):
    """Real rows of D's pool vs refined templates (module docstring); a batch carries both, the
    template rows under ``"template"`` and the selection noise under ``"noise"``."""

    def __init__(self, real: torch.Tensor, templates: torch.Tensor, k: int, levels: torch.Tensor | None,
                 p: AdversarialParams):
        self.real, self.templates, self.k, self.levels, self.p = real, templates, k, levels, p
        self.steps_per_epoch = max(1, math.ceil(len(real) / p.batch_size))

    def real_batch(self, n, generator):
        r = torch.randint(len(self.real), (n,), generator=generator)
        t = torch.randint(len(self.templates), (n,), generator=generator)
        noise = _gumbel((n, self.templates.shape[1]), generator)        # (n, n_items) for the top-L pick
        return {"real": self.real[r], "template": self.templates[t], "noise": noise}

    def fake(self, G, batch, generator):
        template = batch["template"]                                     # (B, n_items)
        logits, shift = G(template)
        fake, _, rating = refine(template, logits, shift, batch["noise"], self.k, self.levels, self.p.tau,
                                 self.p.max_shift)
        batch["logits"], batch["rating"] = logits, rating                 # for the reconstruction term
        return fake

    def g_extra_loss(self, fake, batch):
        has = batch["template"] > 0                                      # (B, n_items) the template's items
        loss = (batch["logits"][has] ** 2).mean()
        if self.levels is not None:
            loss = loss + ((batch["rating"] - _unit(batch["template"]))[has] ** 2).mean()
        return self.p.recon_weight * loss


def _unit(rows: torch.Tensor) -> torch.Tensor:
    """Profile-row values 0.5..1 -> ratings scaled to [0, 1] (absent entries give 0)."""
    return ((rows - 0.5) * 2).clamp(0.0, 1.0)


def d_view(rows: torch.Tensor, rated: bool) -> torch.Tensor:
    """What D reads of profile rows (B, n_items): on rating logs two channels, presence (0/1) and the
    rating centred on the middle of the scale (-1..1, 0 when absent), (B, 2 * n_items), so a longer
    profile never reads as a higher-rated one; on implicit logs the rows themselves."""
    if not rated:
        return rows
    present = (rows > 0).float()
    return torch.cat([present, present * ((rows - 0.5) * 4 - 1)], 1)


def refine(template: torch.Tensor, logits: torch.Tensor, shift: torch.Tensor, noise: torch.Tensor, k: int,
           levels: torch.Tensor | None, tau: float, max_shift: float) -> tuple[torch.Tensor, ...]:
    """(D's view of the fakes, kept items (B, n_items), ratings in [0, 1] (B, n_items)): ``k`` of
    each template's items (hard top-k forward, soft backward), the template's ratings moved by at
    most ``max_shift``. ``levels``: the log's rating levels scaled to [0, 1] (None on an implicit
    log); D reads the ratings snapped to them (straight through), never a rating off the scale."""
    scores = (logits + noise).masked_fill(template <= 0, -math.inf)      # only the template's items
    hard = _top(scores, k)
    soft = torch.softmax(scores / tau, dim=1) * k
    keep = hard + soft - soft.detach()                                   # straight-through top-k
    if levels is None:
        return keep, keep, keep
    rating = (_unit(template) + max_shift * torch.tanh(shift)).clamp(0.0, 1.0)
    snapped = levels[(rating.unsqueeze(-1) - levels).abs().argmin(-1)]   # (B, n_items) on the scale
    on_scale = rating + (snapped - rating).detach()
    return torch.cat([keep, keep * (2 * on_scale - 1)], 1), keep, rating


# ---- the attack ----------------------------------------------------------------------------------------------

def adversarial_profiles(acted: pd.DataFrame, items: np.ndarray, levels: np.ndarray, pushed: np.ndarray,
                         n_filler: int, n_fake: int, params: dict | None, seed: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Item positions and ratings of every fake, both (n_fake, targets + n_filler): the targets at the
    top rating, then the ``n_filler`` items G keeps of the fake's template, rated as G refines them.

    ``acted``: the log's interaction rows; ``items``: the catalogue (raw ids; positions index it);
    ``levels``: the log's distinct ratings, ascending ([1.0] on implicit logs); ``pushed``: target positions."""
    p = adversarial_params(params)
    rated = len(levels) > 1
    scale = (float(levels[0]), float(levels[-1])) if rated else None
    X = profile_rows(acted, pd.Index(pd.unique(acted["user"])), pd.Index(items), scale)  # (n_users, n_items)
    X[:, pushed] = 0.0                                                   # the push is not G's to judge
    length = (X > 0).sum(1)
    pool = np.flatnonzero(length >= p.room * n_filler)
    if len(pool) < MIN_TEMPLATES:
        pool = np.flatnonzero(length >= n_filler)
    if len(pool) < MIN_TEMPLATES:
        raise DataError(f"an adversarial fake keeps {n_filler} filler items of a real user's profile, but only "
                        f"{len(pool)} real users have that many (at least {MIN_TEMPLATES} needed)",
                        fix="lower filler")
    near = np.argsort(np.abs(length - n_filler), kind="stable")
    real = near[:max(p.batch_size, math.ceil(REAL_POOL_SHARE * len(X)))]
    unit = torch.from_numpy(((levels - levels[0]) / (levels[-1] - levels[0])).astype(np.float32)) if rated else None
    G = _train(d_view(torch.from_numpy(X[real]), rated), torch.from_numpy(X[pool]), n_filler, unit, p, seed)
    chosen = pool[rng.choice(len(pool), n_fake, replace=n_fake > len(pool))]
    template = torch.from_numpy(X[chosen])
    with torch.no_grad():
        logits, shift = G(template)
        noise = _gumbel(template.shape, torch.Generator().manual_seed(int(seed) + 1))
        _, keep, rating = refine(template, logits, shift, noise, n_filler, unit, p.tau, p.max_shift)
    filler = np.sort(keep.topk(n_filler, dim=1).indices.numpy(), axis=1)   # (n_fake, n_filler) positions
    ratings = np.ones((n_fake, len(pushed) + n_filler))
    if rated:
        lo, hi = float(levels[0]), float(levels[-1])
        raw = lo + np.take_along_axis(rating.numpy().astype(np.float64), filler, 1) * (hi - lo)
        cut = (levels[1:] + levels[:-1]) / 2                             # snapped to the log's levels
        ratings[:, len(pushed):] = levels[np.searchsorted(cut, raw)]
        ratings[:, :len(pushed)] = hi
    return np.hstack([np.broadcast_to(pushed, (n_fake, len(pushed))), filler]), ratings


def _train(real: torch.Tensor, templates: torch.Tensor, k: int, levels: torch.Tensor | None, p: AdversarialParams,
           seed: int) -> Refiner:
    """G after ``p.epochs`` epochs of the game (its zero start when epochs = 0), in eval mode.
    ``real``: D's view of its real rows; ``templates``: the template profile rows."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        G, D = Refiner(templates.shape[1], p.hidden), BatchD(real.shape[1], p.d_hidden)
    if p.epochs > 0:
        task = _Game(real, templates, k, levels, p)
        cfg = GANConfig(loss="nonsaturating", lr_g=p.lr, lr_d=p.lr, batch_size=p.batch_size, epochs=p.epochs,
                        adv_weight=p.adv_weight, r1_gamma=p.r1_gamma, tick_every=task.steps_per_epoch,
                        checkpoint_every=None, seed=int(seed), device="cpu")
        GANTrainer(G, D, task, cfg).fit()
    return G.cpu().eval()
