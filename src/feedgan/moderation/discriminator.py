"""A discriminator of fake accounts: a small neural network trained on real vs injected profiles.

:class:`DiscriminatorDetector` reads each user as one vector over the item catalogue of the log it
was fitted on (the *profile row*), optionally followed by the user's z-scored
:func:`~feedgan.moderation.detect.profile_features`::

    profile row   (n_items,)  0 where the user never acted on the item; otherwise 1 on an implicit
                              log, and 0.5 + 0.5 * (r - lo) / (hi - lo) on a rating log (r the pair's
                              largest weight, lo / hi the fitted log's lowest and highest rating),
                              so the lowest rating still reads apart from "not rated"
    features      (n_feat,)   (x - mean) / std with the fitted users' mean and std

and an MLP ``Linear -> LeakyReLU -> Dropout -> Linear -> LeakyReLU -> Linear`` gives one logit,
P(injected) = sigmoid(logit). Training minimises the binary cross-entropy with the injected users
weighted by (real / injected) so both classes count alike (fakes are a few per cent of a log); a
seeded, stratified ``valid_share`` of the training users is held out and the weights of the epoch
with the lowest held-out (class-balanced) loss are kept, training stopping after ``patience``
epochs without improvement. Nothing of the scored log is seen before :meth:`~DiscriminatorDetector.score`.

Fitted on one log and scored on another (say two disjoint halves of a platform's users), the
columns are matched by raw item id: items of the scored log that the fitted log lacks are ignored,
fitted items absent from it are 0 for every user. The loop is :class:`feedgan.gan.LossTrainer` with
:class:`feedgan.gan.BestCheckpoint` as the early stop. CPU; seconds on ML-100K-sized logs.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ..data.schema import EXPOSURE, DataError, Interactions
from ..gan import BestCheckpoint, LossTrainer
from ..optim import adam
from .detect import _aligned_labels, _checked_features, profile_features

PROFILES = ("auto", "rating", "binary")


# ---- the profile row ----------------------------------------------------------------------------------------

def rating_range(inter: Interactions) -> tuple[float, float] | None:
    """(lowest, highest) rating of the log's interaction rows, or None on an implicit log (one weight)."""
    w = inter.frame.loc[inter.frame["action"] != EXPOSURE, "weight"].to_numpy(dtype=np.float64)
    if len(w) == 0:
        raise DataError("the log holds only impression rows, no user acted on an item",
                        file=inter.source, fix="use a log with views, likes or ratings")
    lo, hi = float(w.min()), float(w.max())
    return None if lo == hi else (lo, hi)


def profile_rows(frame: pd.DataFrame, users: pd.Index, items: pd.Index,
                 scale: tuple[float, float] | None) -> np.ndarray:
    """(len(users), len(items)) float32 profile rows (module docstring) of ``users`` over ``items``
    (raw ids) from a log's rows (impressions skipped); rows on other items or users are ignored, a
    user without rows is all 0. ``scale``: the (lowest, highest) rating, None on an implicit log."""
    acted = frame[frame["action"] != EXPOSURE]
    u = users.get_indexer(acted["user"])
    i = items.get_indexer(acted["item"])
    keep = (u >= 0) & (i >= 0)
    w = acted["weight"].to_numpy(dtype=np.float64)[keep]
    value = np.ones_like(w) if scale is None else 0.5 + 0.5 * np.clip((w - scale[0]) / (scale[1] - scale[0]), 0, 1)
    out = np.zeros((len(users), len(items)), dtype=np.float32)
    np.maximum.at(out, (u[keep], i[keep]), value.astype(np.float32))  # a pair's largest rating
    return out


def acted_items(inter: Interactions) -> pd.Index:
    """The raw ids of the items some user acted on, in first-seen order."""
    return pd.Index(pd.unique(inter.frame.loc[inter.frame["action"] != EXPOSURE, "item"]))


# ---- the network and its training task ---------------------------------------------------------------------

class _MLP(nn.Module):
    """(B, n_in) -> (B,) logits."""

    def __init__(self, n_in: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                 nn.Linear(hidden, max(1, hidden // 4)), nn.LeakyReLU(0.2),
                                 nn.Linear(max(1, hidden // 4), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class _Batches:
    """Shuffled mini-batches of the training users for :class:`LossTrainer`; step ``t`` is batch
    ``t mod steps_per_epoch`` of that epoch's order."""

    def __init__(self, net: _MLP, X: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor, batch_size: int,
                 gen: torch.Generator):
        self.net, self.X, self.y, self.pos_weight, self.batch_size, self.gen = net, X, y, pos_weight, batch_size, gen
        self.steps_per_epoch = max(1, math.ceil(len(X) / batch_size))
        self.order = torch.arange(len(X))

    def loss(self, step: int) -> torch.Tensor:
        k = step % self.steps_per_epoch
        if k == 0:
            self.order = torch.randperm(len(self.X), generator=self.gen)
        idx = self.order[k * self.batch_size:(k + 1) * self.batch_size]
        return F.binary_cross_entropy_with_logits(self.net(self.X[idx]), self.y[idx], pos_weight=self.pos_weight)


def _balanced_loss(net: _MLP, X: torch.Tensor, y: torch.Tensor) -> float:
    """Mean BCE over the real users plus mean BCE over the injected ones (eval mode, no gradients)."""
    net.eval()
    try:
        with torch.no_grad():
            per = F.binary_cross_entropy_with_logits(net(X), y, reduction="none")
        return float(per[y == 0].mean() + per[y == 1].mean())
    finally:
        net.train()


def _split(y: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, held-out) positions: ``share`` of each class held out, at least one of each."""
    held = []
    for c in (0, 1):
        at = np.flatnonzero(y == c)
        held.append(rng.choice(at, min(len(at) - 1, max(1, round(share * len(at)))), replace=False))
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), held), held


def _check_param(name: str, value, *, integer: bool, low: float, high: float | None = None, open_low=False):
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value > low if open_low else value >= low) and (high is None or value < high) and math.isfinite(value)
    if not ok:
        bound = f"{'>' if open_low else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise DataError(f"DiscriminatorDetector {name}={value!r} is not {'an integer' if integer else 'a number'} "
                        f"{bound}", fix=f"pass a valid {name} or leave the default")


class DiscriminatorDetector:
    """Supervised: an MLP discriminator on each user's profile row (+ z-scored profile features).

    ``profile``: ``"rating"`` (the rating-valued row), ``"binary"`` (1 where the user acted) or
    ``"auto"`` (rating on a rating log, else binary). ``features``: append the z-scored
    :func:`~feedgan.moderation.detect.profile_features`. Learned state: ``items_`` (the fitted
    catalogue), ``scale_``, ``columns_``, ``mean_`` / ``std_`` (of the features), ``network_``,
    ``best_epoch_`` and ``valid_history_`` (held-out loss per epoch).
    """

    def __init__(self, *, profile: str = "auto", features: bool = True, hidden: int = 128, dropout: float = 0.3,
                 lr: float = 1e-3, weight_decay: float = 1e-4, epochs: int = 100, batch_size: int = 128,
                 valid_share: float = 0.2, patience: int = 6, seed: int = 0):
        self.profile, self.features, self.hidden, self.dropout = profile, features, hidden, dropout
        self.lr, self.weight_decay, self.epochs, self.batch_size = lr, weight_decay, epochs, batch_size
        self.valid_share, self.patience, self.seed = valid_share, patience, seed
        self.network_: _MLP | None = None

    def _check(self) -> None:
        if self.profile not in PROFILES:
            raise DataError(f"DiscriminatorDetector profile={self.profile!r} is unknown",
                            fix=f"use one of {', '.join(PROFILES)}")
        if not isinstance(self.features, bool):
            raise DataError(f"DiscriminatorDetector features={self.features!r} is not True or False",
                            fix="pass features=True to append the profile features, False for the row alone")
        for name in ("hidden", "epochs", "batch_size", "patience"):
            _check_param(name, getattr(self, name), integer=True, low=1)
        _check_param("seed", self.seed, integer=True, low=0)
        _check_param("dropout", self.dropout, integer=False, low=0, high=1)
        _check_param("lr", self.lr, integer=False, low=0, open_low=True)
        _check_param("weight_decay", self.weight_decay, integer=False, low=0)
        _check_param("valid_share", self.valid_share, integer=False, low=0, high=1, open_low=True)

    # -- inputs ----------------------------------------------------------------------------------------------
    def _inputs(self, inter: Interactions, users: pd.Index, feats: pd.DataFrame | None) -> np.ndarray:
        """(n_users, n_items + n_features) float32 network inputs of ``users``."""
        X = profile_rows(inter.frame, users, self.items_, self.scale_)
        if not self.features:
            return X
        F_ = _checked_features(feats.reindex(users))
        return np.hstack([X, ((F_ - self.mean_) / self.std_).astype(np.float32)])

    def _scored_features(self, inter: Interactions) -> pd.DataFrame:
        """The log's profile features in the fitted columns (an action the log lacks is a share of 0)."""
        feats = profile_features(inter)
        missing = [c for c in self.columns_ if c not in feats.columns]
        hard = [c for c in missing if not c.startswith("mix[")]
        if hard:
            raise DataError(f"the scored log lacks feature {hard[0]!r} the detector was trained on",
                            file=inter.source, fix="score a log of the same kind (a log with timestamps needs them)")
        return feats.assign(**{c: 0.0 for c in missing})[self.columns_]

    # -- fit / score -----------------------------------------------------------------------------------------
    def fit(self, inter: Interactions, labels: pd.Series) -> DiscriminatorDetector:
        """Train on every user of ``inter`` labelled by ``labels`` (user -> 1 injected / 0 real)."""
        self._check()
        if not isinstance(inter, Interactions):
            raise DataError(f"DiscriminatorDetector.fit needs an Interactions log, got {type(inter).__name__}",
                            fix="pass Injected.interactions (or a log read with feedgan.data.readers.read)")
        users = pd.Index(pd.unique(inter.frame["user"]), name="user")
        y = _aligned_labels(labels, users, "log")
        counts = np.bincount(y, minlength=2)
        if counts.min() < 2:
            raise DataError(f"the log has {counts[1]} injected and {counts[0]} real users; holding some out to "
                            "stop training needs at least 2 of each", file=inter.source,
                            fix="label more users of the rarer class")
        self.items_ = acted_items(inter)
        scale = rating_range(inter)
        self.scale_ = scale if self.profile in ("auto", "rating") else None
        if self.features:
            feats = profile_features(inter)
            self.columns_ = list(feats.columns)
            F_ = _checked_features(feats.reindex(users))
            self.mean_, std = F_.mean(0), F_.std(0)
            self.std_ = np.where(std > 1e-12, std, 1.0)
        else:
            feats, self.columns_ = None, []
        X = self._inputs(inter, users, feats)
        self._train(torch.from_numpy(X), y)
        return self

    def _train(self, X: torch.Tensor, y: np.ndarray) -> None:
        tr, va = _split(y, self.valid_share, np.random.default_rng(self.seed))
        yt = torch.from_numpy(y.astype(np.float32))
        with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG: seeded, then put back
            torch.manual_seed(int(self.seed))
            net = _MLP(X.shape[1], self.hidden, float(self.dropout))
            n_real, n_fake = (y[tr] == 0).sum(), (y[tr] == 1).sum()
            task = _Batches(net, X[tr], yt[tr], torch.tensor(n_real / n_fake, dtype=torch.float32),
                            self.batch_size, torch.Generator().manual_seed(int(self.seed)))
            opt = adam(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
            best = BestCheckpoint(lambda _: _balanced_loss(net, X[va], yt[va]), every=task.steps_per_epoch,
                                  mode="min", patience=self.patience, restore_on_end=True)
            net.train()
            LossTrainer(net, task, opt, self.epochs, name="discriminator").fit(callbacks=[best])
        self.network_ = net.eval()
        self.valid_history_ = [v for _, v in best.history]
        self.best_epoch_ = None if best.best_step is None else best.best_step // task.steps_per_epoch

    def score(self, inter: Interactions) -> pd.Series:
        """P(injected) of every user of ``inter`` (index: its users, in first-seen order), in [0, 1]."""
        if self.network_ is None:
            raise DataError("DiscriminatorDetector.score before fit", fix="call fit(interactions, labels) first")
        if not isinstance(inter, Interactions) or len(inter.frame) == 0:
            raise DataError("DiscriminatorDetector.score needs a non-empty Interactions log",
                            fix="pass Injected.interactions (or a log read with feedgan.data.readers.read)")
        users = pd.Index(pd.unique(inter.frame["user"]), name="user")
        feats = self._scored_features(inter) if self.features else None
        X = torch.from_numpy(self._inputs(inter, users, feats))
        with torch.no_grad():
            prob = torch.sigmoid(self.network_(X)).numpy().astype(np.float64)
        return pd.Series(prob, index=users, name="discriminator")
