"""iALS: each row is the exact solve of its frequency-scaled normal equations, batching does not change it,
and it learns a planted structure."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import feedgan.rec.ials as ials
from feedgan.rec.baselines import MostPopular
from feedgan.rec.ials import IALS
from feedgan.ranking import ranking_metrics


def planted(n_users=240, n_items=120, groups=4, p_in=0.3, p_out=0.01, seed=0) -> sp.csr_matrix:
    """Users and items in ``groups`` blocks; a user takes items of their own block far more often."""
    rng = np.random.default_rng(seed)
    ug, ig = rng.integers(groups, size=n_users), rng.integers(groups, size=n_items)
    p = np.where(ug[:, None] == ig[None, :], p_in, p_out)
    return sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))


def normal_equation_scores(X: sp.csr_matrix, H: np.ndarray, reg: float, unobserved: float, nu: float) -> np.ndarray:
    """Scores from solving every user's row by the documented formula, in float64, one user at a time."""
    H = H.astype(np.float64)
    G = unobserved * H.T @ H
    out = np.empty((X.shape[0], H.shape[0]))
    for u in range(X.shape[0]):
        cols, vals = X[u].indices, X[u].data.astype(np.float64)
        lam = reg * (len(cols) + unobserved * X.shape[1]) ** nu
        A = H[cols].T @ H[cols] + G + lam * np.eye(H.shape[1])
        out[u] = np.linalg.solve(A, H[cols].T @ vals) @ H.T
    return out


@pytest.mark.parametrize("nu", [1.0, 0.0, 0.5])
def test_rows_are_the_exact_solves_of_the_frequency_scaled_normal_equations(nu):
    X = planted()
    m = IALS(factors=6, reg=0.05, unobserved=0.2, nu=nu, epochs=3, seed=1).fit(X)
    want = normal_equation_scores(X[:20], m.item_factors_, 0.05, 0.2, nu)
    np.testing.assert_allclose(m.score(np.arange(20)), want, rtol=2e-3, atol=2e-4)


def test_enough_conjugate_gradient_steps_reach_the_exact_solver():
    X = planted(seed=5)
    exact = IALS(factors=6, epochs=4, solver="exact", seed=2).fit(X).score(np.arange(40))
    cg = IALS(factors=6, epochs=4, solver="cg", cg_steps=12, seed=2).fit(X).score(np.arange(40))
    few = IALS(factors=6, epochs=4, solver="cg", cg_steps=1, seed=2).fit(X).score(np.arange(40))
    np.testing.assert_allclose(cg, exact, rtol=1e-3, atol=1e-4)
    assert np.abs(few - exact).max() > 10 * np.abs(cg - exact).max()    # one step is not the exact answer


@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_small_batches_give_the_same_model(monkeypatch, solver):
    X = planted(seed=2)
    big = IALS(factors=5, epochs=2, solver=solver, seed=0).fit(X).score(np.arange(30))
    monkeypatch.setattr(ials, "BATCH_FLOATS", 64)               # a handful of rows per batch
    small = IALS(factors=5, epochs=2, solver=solver, seed=0).fit(X).score(np.arange(30))
    np.testing.assert_allclose(big, small, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_it_learns_the_planted_blocks_where_popularity_cannot(solver):
    X = planted(seed=3).tocoo()
    rng = np.random.default_rng(0)
    test = rng.random(X.nnz) < 0.2
    def part(mask):
        return sp.csr_matrix((X.data[mask], (X.row[mask], X.col[mask])), shape=X.shape)
    train, held = part(~test), part(test)
    def ndcg(model):
        top, _ = model.fit(train).recommend(np.arange(train.shape[0]), n=10)
        return float(np.nanmean(ranking_metrics(top, held, [10])["ndcg@10"]))
    assert ndcg(IALS(factors=8, reg=0.01, unobserved=0.1, epochs=8, solver=solver)) > ndcg(MostPopular()) + 0.15


def test_more_epochs_fit_the_training_entries_better():
    X = planted(seed=4)
    def train_error(epochs):
        s = IALS(factors=8, reg=0.01, unobserved=0.1, epochs=epochs, seed=0).fit(X).score(np.arange(X.shape[0]))
        return float(((X.toarray() - s) ** 2).mean())
    assert train_error(6) < train_error(1)


@pytest.mark.parametrize("params, words", [
    (dict(factors=0), "factors must be a positive integer"), (dict(epochs=1.5), "epochs"),
    (dict(reg=0.0), "reg must be a positive number"), (dict(unobserved=-1.0), "unobserved"),
    (dict(nu=2.0), "nu must be between 0"), (dict(solver="lu"), "solver must be one of cg, exact"),
    (dict(cg_steps=0), "cg_steps must be a positive integer"),
])
def test_bad_hyperparameters_are_refused_by_name(params, words):
    with pytest.raises(ValueError, match=words):
        IALS(**params).fit(planted())
