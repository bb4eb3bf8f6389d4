"""Multi-behaviour baselines: what a strong practitioner tries first when predicting one action
(buy, share) from others (view, cart, like).

Every model here is fitted with a target and auxiliary actions
(``fit(ds, target="buy", aux={"cart": 2.0, "view": 1.0})``, see :mod:`feedgan.rec.base`), and
reads the auxiliary part of its input apart from the target rows (``multi_channel``):

==========  =========================================================================
model       idea
==========  =========================================================================
SeenFirst   items the user already touched through an auxiliary action but not yet
            through the target, by auxiliary weight (cart before view), then by the
            target's popularity; everything else after them, by popularity
SeenEASE    each item's own conversion rate from the auxiliary actions the user took on
            it (viewers of this item who bought it), plus stacked EASE (EASE on target +
            weighted auxiliary actions) for the rest: EASE's zero diagonal forbids an item
            to explain itself, and the conversion rate puts that back for aux actions
==========  =========================================================================

Stacking alone needs no class: any model fitted with ``aux`` learns on the weighted sum
(``EASE(...).fit(ds, target="buy", aux={"cart": 0.5, "view": 0.1})`` is stacked EASE).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import FRIENDS, Recommender
from .baselines import EASE


class SeenFirst(Recommender):
    """The seen-first rule; see the module docstring. Without auxiliary actions it is most-popular."""

    name = "seen-first"
    multi_channel = True

    def __init__(self):
        pass

    def _fit(self, X, progress=None):
        pop = np.asarray(self.seen.sum(0)).ravel().astype(np.float64)  # (n_items,) target popularity
        self.popularity_ = (pop / (pop.max() + 1.0)).astype(np.float32)  # in [0, 1): below any aux weight step

    def _score(self, users, inputs, seen, channels):
        weights = _own_weights(self.aux_)
        level = np.zeros((seen.shape[0], self.n_items_), dtype=np.float32)  # (B, n_items)
        for a, w in weights.items():
            if a in channels:  # an action left out of a history: no rows of it
                level += w * np.minimum(sp.csr_matrix(channels[a]).toarray(), 1.0)
        # the popularity tie-break (< 1) must not override any difference between two levels
        return level / _smallest_gap(list(weights.values())) + self.popularity_[None, :]


def _own_weights(aux: dict[str, float]) -> dict[str, float]:
    """The user's own auxiliary actions with a positive weight (not the friends channel)."""
    return {a: w for a, w in aux.items() if a != FRIENDS and w > 0}


def conversion_rates(target: sp.csr_matrix, aux: list[sp.spmatrix], shrink: float) -> np.ndarray:
    """(len(aux), n_items) smoothed ``P(target on i | aux action on i)`` per item:
    ``(|target & a on i| + shrink * prior_a) / (|a on i| + shrink)``, with ``prior_a`` the rate
    over all items. ``target`` and each ``aux`` matrix are (n_users, n_items)."""
    out = np.zeros((len(aux), target.shape[1]), dtype=np.float32)
    for j, A in enumerate(aux):
        A = sp.csr_matrix(A)
        both = np.asarray(A.multiply(target).sum(0)).ravel()  # (n_items,) took a and the target
        n = np.asarray(A.sum(0)).ravel()
        prior = both.sum() / max(n.sum(), 1.0)
        out[j] = (both + shrink * prior) / (n + shrink + 1e-12)
    return out


def _smallest_gap(weights: list[float]) -> float:
    """The smallest difference between two sums of distinct ``weights`` (1 without weights)."""
    sums = {0.0}
    for w in weights:
        sums |= {s + w for s in sums}
    levels = np.unique(np.round(sorted(sums), 9))
    return float(np.diff(levels).min()) if len(levels) > 1 else 1.0


class SeenEASE(EASE):
    """Per-item conversion from each auxiliary action, plus stacked EASE for the rest.

    ``score(u, i) = p_seen(u, i) + ease * s(u, i) / max_j |s(u, j)|`` where ``s`` is stacked EASE
    (fitted on the weighted input) and ``p_seen = 1 - prod_a (1 - A_a[u, i] * conv_a[i])`` the
    noisy-or of the item's conversion rates from the auxiliary actions the user took on it:
    ``conv_a[i] = (|target & a on i| + shrink * prior_a) / (|a on i| + shrink)``, shrunk towards
    the action's overall rate ``prior_a``. An item the user viewed is scored by how often viewers
    of *that item* go on to the target: EASE's zero diagonal cannot say this, and the seen-first
    rule orders by popularity instead. ``ease=0`` ranks by conversion alone.
    """

    name = "ease-seen"
    multi_channel = True

    def __init__(self, l2: float = 500.0, shrink: float = 10.0, ease: float = 0.1):
        self.l2, self.shrink, self.ease = l2, shrink, ease

    def _fit(self, X, progress=None):
        super()._fit(X, progress)
        # (n_aux, n_items), rows in aux order (own actions with a weight > 0)
        self.conv_ = conversion_rates(self.seen, [self.channels_[a] for a in _own_weights(self.aux_)], self.shrink)

    def _score(self, users, inputs, seen, channels):
        s = np.asarray(inputs @ self.B_, dtype=np.float32)  # (B, n_items) stacked EASE
        s /= np.abs(s).max(axis=1, keepdims=True) + 1e-9
        miss = np.ones_like(s)  # prod_a (1 - A_a * conv_a)
        for j, a in enumerate(_own_weights(self.aux_)):
            if a not in channels:  # an action left out of a history: no rows of it
                continue
            A = sp.csr_matrix(channels[a]).tocoo()
            miss[A.row, A.col] *= 1.0 - np.minimum(A.data, 1.0) * self.conv_[j, A.col]
        return (1.0 - miss) + np.float32(self.ease) * s
