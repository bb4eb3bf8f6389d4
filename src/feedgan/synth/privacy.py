"""Privacy: do the synthetic users give away the real users they were fitted on?

All comparisons are on the union profile (the set of items a user did anything with), with the
Jaccard distance ``1 - |A ∩ B| / |A ∪ B|`` (an empty profile is at distance 1 from everything: it
tells nothing about anyone). ``train`` are the users the generator saw (members), ``holdout`` real
users it did not see (non-members), drawn from the same population.

* **Exact copies**: the share of synthetic users whose non-empty profile equals some train profile,
  beside the natural rate: the share of holdout users that equal some train profile (short
  profiles collide by chance, so the natural rate need not be 0).
* **Distance to closest record (DCR)**: for each synthetic user, the distance to its nearest train
  user and to its nearest holdout user; ``closer_to_train_share`` is the share of synthetic users
  whose closest real record is a train user (ties count one half). If the generator learned the
  population, not the people, train and holdout records are exchangeable to it, and that share is
  ``n_train / (n_train + n_holdout)`` (``expected_if_private``; 0.5 for equal sizes) whatever the
  data; a generator that copies scores near 1. ``closer_to_train_excess`` rescales the share to
  0 = as expected for a private generator, 1 = every synthetic user closest to a train user.
  (Both sets are kept whole: subsampling train would drop the very records a copier copied.)
* **Membership inference** (ROC-AUC over equal numbers of train members and holdout non-members,
  0.5 = the attacker learns nothing, 1 = perfect): a *distance attack* (score = minus the distance
  to the closest synthetic user) and a *shadow-model attack* (see :func:`shadow_attack`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from ..sparse import binary
from .detect import ONE_THREAD
from .fidelity import same_catalogue
from .profiles import Profiles

CHUNK_CELLS = 8_000_000   # rows per block so a block of distances holds at most this many floats
SHADOW_K = 5              # the shadow attack's features: the k smallest distances to the synthetic set


# -- distances -----------------------------------------------------------------------------------
def nearest_distances(a: sp.csr_matrix, b: sp.csr_matrix, k: int = 1) -> np.ndarray:
    """(len(a), k) the ``k`` smallest Jaccard distances from each row of ``a`` to the rows of ``b``, sorted.

    Both are binary (users, items) CSR. Works in row blocks: ``a_block @ b.T`` gives the
    intersections (block, len(b)), the row sizes give the unions; memory stays at ``CHUNK_CELLS``."""
    a, b = binary(a), binary(b)
    k = min(k, b.shape[0])
    na, nb = a.getnnz(1).astype(np.float32), b.getnnz(1).astype(np.float32)
    bt = b.T.tocsc()
    step = max(1, CHUNK_CELLS // max(b.shape[0], 1))
    out = np.empty((a.shape[0], k), dtype=np.float32)
    for lo in range(0, a.shape[0], step):
        hi = min(lo + step, a.shape[0])
        inter = (a[lo:hi] @ bt).toarray()                            # (block, len(b))
        union = na[lo:hi, None] + nb[None, :] - inter
        d = np.where(union > 0, 1.0 - inter / np.maximum(union, 1.0), 1.0).astype(np.float32)
        part = np.partition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else d
        out[lo:hi] = np.sort(part, axis=1)
    return out


def _row_keys(m: sp.csr_matrix) -> list[bytes]:
    """One hashable key per row: its sorted item positions (equal keys = identical profiles)."""
    m = binary(m)
    m.sort_indices()
    idx = m.indices.astype(np.int64)
    return [idx[m.indptr[r]:m.indptr[r + 1]].tobytes() for r in range(m.shape[0])]


def _equal_sizes(x: Profiles, y: Profiles, seed: int) -> tuple[Profiles, Profiles]:
    """Subsample the larger of two sets to the size of the smaller (positions kept sorted)."""
    rng = np.random.default_rng(seed)
    n = min(x.n_users, y.n_users)
    pick = lambda p: p if p.n_users == n else p.subset(np.sort(rng.choice(p.n_users, n, replace=False)))
    return pick(x), pick(y)


# -- the measures --------------------------------------------------------------------------------
def exact_copies(train: Profiles, holdout: Profiles, synth: Profiles) -> dict:
    """``synth_rate``: share of synthetic users equal to some train user (non-empty profiles only);
    ``natural_rate``: the same share for holdout users, the chance level of collisions."""
    same_catalogue(train=train, holdout=holdout, synth=synth)
    seen = set(_row_keys(train.union()))
    seen.discard(b"")

    def rate(p: Profiles) -> float:
        keys = _row_keys(p.union())
        return float(np.mean([key in seen for key in keys])) if keys else 0.0

    return {"synth_rate": rate(synth), "natural_rate": rate(holdout)}


def distance_to_closest_record(train: Profiles, holdout: Profiles, synth: Profiles) -> dict:
    """DCR of each synthetic user to train and to holdout, and the share closer to train."""
    same_catalogue(train=train, holdout=holdout, synth=synth)
    s = synth.union()
    d_tr, d_ho = nearest_distances(s, train.union())[:, 0], nearest_distances(s, holdout.union())[:, 0]
    share = float(np.where(d_tr < d_ho, 1.0, np.where(d_tr == d_ho, 0.5, 0.0)).mean())
    expected = train.n_users / (train.n_users + holdout.n_users)
    return {"closer_to_train_share": share, "expected_if_private": float(expected),
            "closer_to_train_excess": float((share - expected) / (1.0 - expected)),
            "dcr_train_median": float(np.median(d_tr)), "dcr_holdout_median": float(np.median(d_ho)),
            "dcr_train_p05": float(np.quantile(d_tr, 0.05)), "dcr_holdout_p05": float(np.quantile(d_ho, 0.05)),
            "n_train": int(train.n_users), "n_holdout": int(holdout.n_users)}


def distance_attack(train: Profiles, holdout: Profiles, synth: Profiles, *, seed: int = 0) -> dict:
    """Membership inference from distances alone: score = -(distance to the closest synthetic user)."""
    same_catalogue(train=train, holdout=holdout, synth=synth)
    members, others = _equal_sizes(train, holdout, seed)
    s = synth.union()
    score = -np.concatenate([nearest_distances(members.union(), s)[:, 0], nearest_distances(others.union(), s)[:, 0]])
    label = np.r_[np.ones(members.n_users), np.zeros(others.n_users)]
    return {"auc": float(roc_auc_score(label, score)), "n_per_class": int(members.n_users)}


def _attack_features(candidates: Profiles, synth: Profiles, k: int) -> np.ndarray:
    """(n, k + 1): a candidate's k smallest distances to the synthetic set, and its log profile size."""
    x = candidates.union()
    return np.column_stack([nearest_distances(x, synth.union(), k), np.log1p(x.getnnz(1))])


def shadow_attack(train: Profiles, holdout: Profiles, synth: Profiles,
                  fit_sample: Callable[[Profiles], Profiles] | None, *, k: int = SHADOW_K, seed: int = 0) -> dict:
    """Membership inference by a shadow model, the attacker's best guess of how membership shows.

    The shadow: the train users are split at random into two halves, shadow members and shadow
    non-members. ``fit_sample(shadow_members)`` fits a fresh generator of the same kind on the shadow
    members alone and returns its synthetic users (the shadow synthetic set); it is cut to
    ``len(shadow_members) * len(synth) / len(train)`` users when larger, so it is as dense around its
    training users as the target set is around ``train``. Each shadow candidate gets features from
    its neighbourhood in the shadow synthetic set (the ``k`` smallest Jaccard distances to it, and its
    own log profile size); a gradient-boosted classifier learns member vs non-member from them on 80%
    of the shadow candidates (``shadow_valid_auc``: its ROC-AUC on the other 20%).
    The attack is then applied, unchanged, to the target: train members vs holdout non-members (equal
    numbers), features from the real synthetic set ``synth``; the result is its ROC-AUC.
    Without ``fit_sample`` the attack is skipped (``{"skipped": reason}``).
    """
    same_catalogue(train=train, holdout=holdout, synth=synth)
    if fit_sample is None:
        return {"skipped": "no fit_sample given (the shadow attack needs to refit the generator)"}
    rng = np.random.default_rng(seed)
    order = rng.permutation(train.n_users)
    s_in, s_out = train.subset(np.sort(order[: train.n_users // 2])), train.subset(np.sort(order[train.n_users // 2:]))
    shadow = fit_sample(s_in)
    same_catalogue(train=train, shadow_synth=shadow)
    want = max(1, round(s_in.n_users * synth.n_users / train.n_users))
    if shadow.n_users > want:
        shadow = shadow.subset(np.sort(rng.choice(shadow.n_users, want, replace=False)))
    x_shadow = np.vstack([_attack_features(s_in, shadow, k), _attack_features(s_out, shadow, k)])
    y_shadow = np.r_[np.ones(s_in.n_users), np.zeros(s_out.n_users)]

    members, others = _equal_sizes(train, holdout, seed)
    x = np.vstack([_attack_features(members, synth, k), _attack_features(others, synth, k)])
    y = np.r_[np.ones(members.n_users), np.zeros(others.n_users)]
    fit = rng.random(len(y_shadow)) < 0.8          # 80% trains the attack, 20% checks it where truth is known
    with threadpool_limits(ONE_THREAD):
        clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x_shadow[fit], y_shadow[fit])
        auc = roc_auc_score(y, clf.predict_proba(x)[:, 1])
        shadow_auc = roc_auc_score(y_shadow[~fit], clf.predict_proba(x_shadow[~fit])[:, 1])
    return {"auc": float(auc), "shadow_valid_auc": float(shadow_auc),
            "n_per_class": int(members.n_users), "shadow_synth_users": int(shadow.n_users)}


def privacy(train: Profiles, holdout: Profiles, synth: Profiles,
            fit_sample: Callable[[Profiles], Profiles] | None = None, *, seed: int = 0) -> dict:
    """Every privacy figure of this module, JSON-ready."""
    return {"exact_copies": exact_copies(train, holdout, synth),
            "dcr": distance_to_closest_record(train, holdout, synth),
            "mia_distance": distance_attack(train, holdout, synth, seed=seed),
            "mia_shadow": shadow_attack(train, holdout, synth, fit_sample, seed=seed)}
