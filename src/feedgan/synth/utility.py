"""Utility of synthetic users: train on synthetic, test on real (TSTR), and augmentation of sparse users.

Train on synthetic, test on real
--------------------------------
:func:`tstr` fits each recommender twice with the *same* hyperparameters: once on the real train
users, once on the synthetic users, and scores both on the same real test users by fold-in::

    out = tstr(train, synth, test, models=("ease", "itemknn", "rp3beta", "multvae", "most-popular"))
    out["models"]["ease"]   # {"real": {"ndcg@20": ..., "recall@20": ...}, "synth": {...},
                            #  "ratio": {"ndcg@20": synth / real, ...}, "params": {...}, "fit_s": {...}}
    out["kendall_tau"]      # {"ndcg@20": tau of the models' ranking, real vs synthetic training, ...}

- Input matrix: the binary union of every action (a user did anything with the item), or one
  action's matrix with ``action=``; the same choice for fitting, fold-in and targets.
- Fold-in: each test user's pairs are cut by the seeded per-user holdout of
  :func:`feedgan.data.split.split` (``random``): a share ``held_out`` becomes the targets, the
  rest the fold-in history (every user keeps at least one fold-in pair; users left without a
  target are skipped). The cut is made once and shared by both fits. Scoring is
  :func:`feedgan.eval.metrics.evaluate` on a by-user :class:`~feedgan.data.dataset.Dataset`
  (``test_input`` holds the fold-in rows), so lists exclude the fold-in items.
- Hyperparameters: fixed defaults (:data:`DEFAULT_PARAMS`, overridable with ``params=``), or with
  ``tune=True`` the best of the benchmark grids (:func:`feedgan.eval.bench.model_specs`) on a
  validation fold-in: a share of the *real train users* held out and folded in the same way.
  The real test users are never looked at before the final scoring. The output says which
  (``"hyperparameters"``).

Augmentation of sparse users
----------------------------
:func:`augmentation` asks whether synthetic users give sparse real users more signal. For each of
``seeds`` seeds, the real users' pairs are cut by the same per-user holdout (a share ``holdout``
held out as test items): the ``test`` users' when given (users the generator never saw; the
``train`` users then stay whole in the fitted matrix), else the ``train`` users'. *Sparse users*
have 1..``max_interactions`` training pairs and at least one test item. Each method adds up to ``m`` items to each sparse user's training row, the model is
refitted on the augmented matrix and the sparse users are scored on their test items:

- ``generated``: the ``neighbours`` synthetic profiles nearest to the user by Jaccard similarity
  on the user's training items vote for their other items, each vote weighted by the profile's
  Jaccard similarity (ties: the more popular item among the synthetic profiles first); the top
  ``m`` items are added. A user whom no synthetic profile overlaps gets nothing.
- ``self-training`` (control): the model's own top ``m`` items for the user, from the fit on the
  real training rows, added as pseudo-interactions.
- ``popularity`` (control): the ``m`` items most popular among the real training rows that the
  user has not seen.

The added items become part of the user's input row; the lists exclude the user's *real* training
items only, so an added item stays a candidate. The delta is the augmented model's Recall@20 minus
the unaugmented model's, per (seed, sparse user). ``p_value`` is a two-sided Wilcoxon signed-rank
test (:func:`scipy.stats.wilcoxon`, ``zero_method="zsplit"``: unchanged users count) over every
(seed, user) pair; 1.0 when no pair changed at all.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from ..data.dataset import Dataset, IdMap, Part
from ..data.schema import DataError
from ..data.split import TEST, TRAIN, split
from ..eval.metrics import evaluate
from ..eval.protocol import ModelSpec
from ..ranking import ranking_metrics
from ..rec.base import Recommender, registry, top_n
from ..sparse import binary
from .profiles import Profiles

K = 20
METRICS = (f"ndcg@{K}", f"recall@{K}")
TSTR_MODELS = ("ease", "itemknn", "rp3beta", "multvae", "most-popular")
AUGMENT_METHODS = ("generated", "self-training", "popularity")

# fixed hyperparameters when not tuned; the model's own defaults for everything not named here
DEFAULT_PARAMS: dict[str, dict] = {
    "ease": {"l2": 200.0},
    "itemknn": {"k": 100, "shrink": 10.0},
    "rp3beta": {"k": 200, "alpha": 1.0, "beta": 0.5},
    "multvae": {"epochs": 20, "anneal_steps": 200, "beta_max": 0.2},  # 20 epochs: CPU time (see docs)
    "most-popular": {},
}


# -- shared pieces ----------------------------------------------------------------------------------
def _catalogue_matrices(p: Profiles, items: np.ndarray, action: str | None, what: str) -> dict[str, sp.csr_matrix]:
    """``p``'s per-action matrices (n_users, len(items)) with columns in the order of ``items``
    (the real catalogue); only ``action`` when given."""
    if p.n_users == 0:
        raise DataError(f"the {what} profiles hold no users", fix=f"pass {what} profiles with at least one user")
    col = pd.Index(items).get_indexer(p.items)  # (p.n_items,) position in the catalogue, -1 if unknown
    if (col < 0).any():
        bad = p.items[col < 0][:3].tolist()
        raise DataError(f"the {what} profiles use {int((col < 0).sum())} item(s) outside the real catalogue "
                        f"(e.g. {bad})", fix=f"give the {what} profiles the real train users' catalogue")
    if action is not None and action not in p.actions:
        raise DataError(f"the {what} profiles have no action {action!r}; they have {p.action_names}",
                        fix="pass action= one of those, or None for the union of actions")
    names = [action] if action is not None else p.action_names
    move = sp.csr_matrix((np.ones(len(col), np.float32), (np.arange(len(col)), col)), shape=(len(col), len(items)))
    return {a: binary(p.actions[a] @ move) for a in names}


def _union(mats: dict[str, sp.csr_matrix]) -> sp.csr_matrix:
    return binary(sum(mats.values()))


def _holdout(mats: dict[str, sp.csr_matrix], share: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held) binary (n_users, n_items) from the seeded per-user random holdout of
    :func:`feedgan.data.split.split` on the (user, item) pairs of ``mats``: every action of a pair
    goes to the same side, every user keeps at least one pair."""
    n_users, n_items = next(iter(mats.values())).shape
    if _union(mats).nnz == 0:
        raise DataError("the profiles hold no interactions to split", fix="pass profiles with interactions")
    log = Profiles(np.arange(n_users), np.arange(n_items), mats).to_interactions()  # ids = positions
    codes = split(log, "random", valid=0.0, test=share, seed=seed)
    u, i = log.frame["user"].to_numpy(np.int64), log.frame["item"].to_numpy(np.int64)

    def part(code):
        sel = codes == code
        return binary(sp.coo_matrix((np.ones(sel.sum()), (u[sel], i[sel])), shape=(n_users, n_items)))

    return part(TRAIN), part(TEST)


def _fold_in_dataset(fold_in: sp.csr_matrix, targets: sp.csr_matrix, part: str) -> Dataset:
    """A by-user Dataset of held-out users only: ``<part>_input`` their fold-in rows, ``<part>``
    their targets, an empty train part (the models are fitted elsewhere)."""
    n_users, n_items = fold_in.shape
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    parts = {"train": Part({"any": empty}), "valid": Part({"any": empty}), "test": Part({"any": empty}),
             part: Part({"any": targets}), f"{part}_input": Part({"any": fold_in})}
    return Dataset(IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"), parts)


def _check_models(models: Iterable[str]) -> tuple[str, ...]:
    models = tuple(models)
    known = registry()
    unknown = [m for m in models if m not in known]
    if unknown or not models:
        raise ValueError(f"unknown recommender(s) {unknown}; use names from {sorted(known)}")
    return models


def _build(name: str, params: dict, seed: int) -> Recommender:
    """A fresh model; unknown hyperparameters are one clear ValueError (ModelSpec.build)."""
    return ModelSpec(registry()[name]).build(params, seed)


def _fixed_params(models: tuple[str, ...], params: dict | None) -> dict[str, dict]:
    params = params or {}
    unknown = sorted(set(params) - set(models))
    if unknown:
        raise ValueError(f"params given for model(s) {unknown} that are not in models={list(models)}")
    return {m: {**DEFAULT_PARAMS.get(m, {}), **params.get(m, {})} for m in models}


def _score(model: Recommender, ds: Dataset, part: str) -> dict[str, float]:
    res = evaluate(model, ds, part, ks=(K,))
    return {m: float(res[m]) for m in METRICS}


def _ratio(synth: float, real: float) -> float | None:
    return float(synth / real) if real > 0 else None


def _kendall(real: list[float], synth: list[float]) -> float | None:
    if len(real) < 2:
        return None
    tau = stats.kendalltau(real, synth).statistic
    return None if np.isnan(tau) else float(tau)


# -- train on synthetic, test on real ---------------------------------------------------------------
def tstr(train: Profiles, synth: Profiles, test: Profiles, *, models: Iterable[str] = TSTR_MODELS, seed: int = 0,
         action: str | None = None, held_out: float = 0.5, params: dict[str, dict] | None = None,
         tune: bool = False, valid_users: float = 0.2, max_trials: int | None = 8) -> dict:
    """Train on synthetic, test on real (see the module docstring). JSON-ready.

    ``params``: model -> hyperparameters replacing :data:`DEFAULT_PARAMS`'s (without ``tune``);
    ``tune``: choose them instead on a validation fold-in of ``valid_users`` of the real train
    users, from at most ``max_trials`` settings of each benchmark grid."""
    models = _check_models(models)
    no_fold_in = [m for m in models if not registry()[m].fold_in]
    if no_fold_in:
        raise ValueError(f"{no_fold_in} cannot fold in users unseen at fit, and the real test users are scored "
                         f"by fold-in; use models that can, e.g. {list(TSTR_MODELS)}")
    if tune and params:
        raise ValueError("pass params= (fixed hyperparameters) or tune=True (chosen on validation), not both")
    items = train.items
    X_real = _union(_catalogue_matrices(train, items, action, "real train"))
    X_synth = _union(_catalogue_matrices(synth, items, action, "synthetic"))
    fold_in, targets = _holdout(_catalogue_matrices(test, items, action, "real test"), held_out, seed)
    if targets.nnz == 0:
        raise DataError("no real test user has a pair to hold out (each needs at least two items)",
                        fix="pass more or more active test users, or a larger held_out share")
    for X, what in ((X_real, "real train"), (X_synth, "synthetic")):
        if X.nnz == 0:
            raise DataError(f"the {what} profiles hold no interactions", fix=f"pass {what} profiles with interactions")
    ds = _fold_in_dataset(fold_in, targets, "test")
    if tune:
        chosen, how = _tuned(train, items, action, models, seed, held_out, valid_users, max_trials), "tuned"
    else:
        chosen, how = _fixed_params(models, params), "fixed"
    out: dict = {"models": {}}
    for name in models:
        row: dict = {"params": chosen[name], "fit_s": {}}
        for side, X in (("real", X_real), ("synth", X_synth)):
            t0 = time.perf_counter()
            model = _build(name, chosen[name], seed).fit(X)
            row["fit_s"][side] = time.perf_counter() - t0
            row[side] = _score(model, ds, "test")
        row["ratio"] = {m: _ratio(row["synth"][m], row["real"][m]) for m in METRICS}
        out["models"][name] = row
    rows = [out["models"][m] for m in models]
    out["kendall_tau"] = {m: _kendall([r["real"][m] for r in rows], [r["synth"][m] for r in rows]) for m in METRICS}
    out["hyperparameters"] = ("tuned on a validation fold-in of the real train users" if how == "tuned"
                              else "fixed defaults (not tuned)")
    out["input"] = f"action {action!r}" if action is not None else "union of all actions"
    out["test_users"] = int((targets.getnnz(1) > 0).sum())
    out.update({"users": {"real": int(train.n_users), "synth": int(synth.n_users)}, "held_out": held_out,
                "seed": seed, "k": K})
    return out


def _tuned(train: Profiles, items, action, models, seed: int, held_out: float, valid_users: float,
           max_trials: int | None) -> dict[str, dict]:
    """Per model, the grid setting with the best NDCG@20 on a validation fold-in of part of the
    real train users, fitted on the rest (the test users are not used)."""
    from ..eval.bench import model_specs

    if not 0 < valid_users < 1:
        raise ValueError(f"valid_users must be a share in (0, 1), got {valid_users}")
    fit_part, valid_part = train.split_users((1 - valid_users, valid_users), seed=seed)
    X_fit = _union(_catalogue_matrices(fit_part, items, action, "real train"))
    fold_in, targets = _holdout(_catalogue_matrices(valid_part, items, action, "real validation"), held_out, seed)
    ds = _fold_in_dataset(fold_in, targets, "valid")
    specs = {s.cls.name: s for s in model_specs().values() if s.label is None}
    chosen = {}
    for name in models:
        spec = specs.get(name)
        settings = spec.settings(max_trials, np.random.default_rng(seed)) if spec else [{}]
        ndcg = [evaluate(_build(name, p, seed).fit(X_fit), ds, "valid", ks=(K,))[f"ndcg@{K}"] for p in settings]
        chosen[name] = settings[int(np.argmax(ndcg))]  # the first best setting
    return chosen


# -- augmentation of sparse users -------------------------------------------------------------------
def augmentation(train: Profiles, generator_sample: Profiles, *, test: Profiles | None = None,
                 max_interactions: int = 5, seeds: int = 5, models: Iterable[str] = ("ease", "itemknn"),
                 m: int = 5, neighbours: int = 5, holdout: float = 0.2, action: str | None = None,
                 params: dict[str, dict] | None = None, seed: int = 0) -> dict:
    """Delta Recall@20 of sparse real users when their rows get ``m`` added items (see the module
    docstring): ``out["models"][model][method]`` = {"mean_delta", "std_delta" (over seeds),
    "p_value", "n_users", "n_pairs", "recall", "base_recall"}. JSON-ready.

    ``test``: real users the generator never saw. When given, only they are cut into training and
    held-out items (and only their sparse users augmented and scored); the ``train`` users are
    fitted with all their items. Without it the ``train`` users are cut, which is only fair when
    the generator was not fitted on them (it would have seen their held-out items)."""
    models = _check_models(models)
    if m < 0 or neighbours < 1 or seeds < 1 or max_interactions < 1:
        raise ValueError(f"need m >= 0, neighbours >= 1, seeds >= 1 and max_interactions >= 1; "
                         f"got m={m}, neighbours={neighbours}, seeds={seeds}, max_interactions={max_interactions}")
    chosen = _fixed_params(models, params)
    full = _union(_catalogue_matrices(train, train.items, action, "real train"))
    cut = _catalogue_matrices(test, train.items, action, "real test") if test is not None else None
    S = _union(_catalogue_matrices(generator_sample, train.items, action, "synthetic"))
    base_r = {(mo, me): [] for mo in models for me in AUGMENT_METHODS}  # per seed: (n_sparse,) recall arrays
    aug_r = {key: [] for key in base_r}
    users_seen: set[int] = set()
    for s in range(seeds):
        kept, held = _cut_users(full, cut, holdout, seed + s)
        users = _sparse_users(kept, held, max_interactions)
        if len(users) == 0:
            raise DataError(f"no real user has 1 to {max_interactions} training items and a held-out item "
                            f"(seed {seed + s})", fix="raise max_interactions, or pass users with fewer interactions")
        users_seen.update(users.tolist())
        generated = _generated_items(kept[users], S, m, neighbours)
        popular = _popular_items(kept, users, m)
        for name in models:
            base = _build(name, chosen[name], seed).fit(kept)
            base_recall = _recall(base, users, kept, held)
            self_items = _top_items(base, users, m)
            for method, added in (("generated", generated), ("self-training", self_items), ("popularity", popular)):
                model = _build(name, chosen[name], seed).fit(_augmented(kept, users, added))
                base_r[name, method].append(base_recall)
                aug_r[name, method].append(_recall(model, users, kept, held))
    out = {"models": {name: {method: _paired(base_r[name, method], aug_r[name, method], len(users_seen))
                             for method in AUGMENT_METHODS} for name in models}}
    out.update({"params": chosen, "m": m, "neighbours": neighbours, "max_interactions": max_interactions,
                "seeds": seeds, "holdout": holdout, "synthetic_users": int(generator_sample.n_users), "k": K,
                "scored": "test users" if test is not None else "train users",
                "input": f"action {action!r}" if action is not None else "union of all actions",
                "test": "two-sided Wilcoxon signed-rank over seeds x users (zero_method=zsplit)"})
    return out


def _cut_users(full: sp.csr_matrix, cut: dict[str, sp.csr_matrix] | None, holdout: float,
               seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held) over the recommender's users: without ``cut``, ``full``'s rows cut per user;
    with it, ``full``'s rows kept whole and then ``cut``'s users (rows below) cut per user."""
    if cut is None:
        return _holdout({"any": full}, holdout, seed)
    kept, held = _holdout(cut, holdout, seed)
    none = sp.csr_matrix(full.shape, dtype=np.float32)
    return sp.vstack([full, kept]).tocsr(), sp.vstack([none, held]).tocsr()


def _sparse_users(kept: sp.csr_matrix, held: sp.csr_matrix, max_interactions: int) -> np.ndarray:
    n = kept.getnnz(1)
    return np.flatnonzero((n >= 1) & (n <= max_interactions) & (held.getnnz(1) > 0))


def _recall(model: Recommender, users: np.ndarray, kept: sp.csr_matrix, held: sp.csr_matrix) -> np.ndarray:
    """(len(users),) Recall@20 on the held-out items; the model reads its own (possibly augmented)
    rows, the lists exclude the real training items only."""
    top, _ = model.recommend(users, n=K, exclude=kept[users])
    return ranking_metrics(top, held[users], (K,))[f"recall@{K}"]


def _top_items(model: Recommender, users: np.ndarray, m: int) -> np.ndarray:
    """(len(users), m) the model's own top-m unseen items (-1: none left)."""
    if m == 0:
        return np.empty((len(users), 0), dtype=np.int64)
    return model.recommend(users, n=m)[0]


def _popular_items(kept: sp.csr_matrix, users: np.ndarray, m: int) -> np.ndarray:
    """(len(users), m) the m items most popular in ``kept`` that each user has not seen."""
    if m == 0:
        return np.empty((len(users), 0), dtype=np.int64)
    pop = np.asarray(kept.sum(0)).ravel()  # (n_items,)
    rank = np.empty(len(pop), dtype=np.float32)  # ties broken by item index, the same order for everyone
    rank[np.argsort(-pop, kind="stable")] = np.arange(len(pop), 0, -1)
    return top_n(np.tile(rank, (len(users), 1)), m, exclude=kept[users])[0]


def _generated_items(known: sp.csr_matrix, S: sp.csr_matrix, m: int, neighbours: int,
                     block: int = 1024) -> np.ndarray:
    """(B, m) items the ``neighbours`` synthetic profiles nearest by Jaccard to each row of
    ``known`` (B, n_items) vote for (weighted by similarity; ties by synthetic popularity), the
    known items excluded; -1 where fewer than m items got a vote."""
    B, n_items = known.shape
    if m == 0:
        return np.empty((B, 0), dtype=np.int64)
    k = min(neighbours, S.shape[0])
    size_s = S.getnnz(1).astype(np.float64)  # (n_synth,)
    pop = np.asarray(S.sum(0)).ravel()  # (n_items,) synthetic popularity, the tie-breaker
    out = []
    for start in range(0, B, block):
        Kb = known[start:start + block]
        inter = (Kb @ S.T).toarray().astype(np.float64)  # (b, n_synth) shared items
        jac = inter / (Kb.getnnz(1)[:, None] + size_s[None, :] - inter)
        near = np.argpartition(-jac, k - 1, axis=1)[:, :k]  # (b, k) nearest profiles
        rows = np.repeat(np.arange(len(near)), k)
        W = sp.csr_matrix((np.take_along_axis(jac, near, 1).ravel(), (rows, near.ravel())),
                          shape=(len(near), S.shape[0]))
        votes = (W @ S).toarray()  # (b, n_items) similarity-weighted votes
        votes[Kb.nonzero()] = 0.0  # known items are not added again
        order = np.lexsort((np.broadcast_to(-pop, votes.shape), -votes), axis=1)[:, :m]  # (b, m) best first
        out.append(np.where(np.take_along_axis(votes, order, 1) > 0, order, -1))
    return np.concatenate(out)


def _augmented(kept: sp.csr_matrix, users: np.ndarray, added: np.ndarray) -> sp.csr_matrix:
    """``kept`` with ``added[j]`` (items, -1 = none) set in row ``users[j]``."""
    rows = np.repeat(users, added.shape[1])
    cols = added.ravel()
    ok = cols >= 0
    extra = sp.csr_matrix((np.ones(ok.sum(), np.float32), (rows[ok], cols[ok])), shape=kept.shape)
    return binary(kept + extra)


def _paired(base: list[np.ndarray], aug: list[np.ndarray], n_users: int) -> dict:
    """Delta summary over seeds of per-user Recall@20 arrays (one (n_sparse,) array per seed)."""
    per_seed = np.array([float(np.mean(a - b)) for a, b in zip(aug, base)])
    b, a = np.concatenate(base), np.concatenate(aug)
    if np.all(a == b):
        p = 1.0
    else:
        p = float(stats.wilcoxon(a, b, zero_method="zsplit").pvalue)
    return {"mean_delta": float(per_seed.mean()) + 0.0,  # + 0.0: no "-0.0" in the JSON
            "std_delta": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "p_value": p, "n_users": int(n_users), "n_pairs": int(len(a)),
            "recall": float(a.mean()), "base_recall": float(b.mean())}
