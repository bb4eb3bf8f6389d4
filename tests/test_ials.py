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


def weighted_rows(n_rows=40, n_cols=25, seed=0) -> sp.csr_matrix:
    """Rows of very different lengths (one empty), weights 1 or 2.5: the shapes the batching must handle."""
    rng = np.random.default_rng(seed)
    p = np.linspace(0.0, 0.9, n_rows)[:, None]                       # row 0 is empty, the last nearly full
    mask = rng.random((n_rows, n_cols)) < p
    return sp.csr_matrix(np.where(mask, rng.choice([1.0, 2.5], size=mask.shape), 0.0).astype(np.float32))


def row_systems(X: sp.csr_matrix, V: np.ndarray, reg: float, unobserved: float, nu: float):
    """Each row's normal equations (A_u, b_u) by the documented formula, float64, one row at a time."""
    V = V.astype(np.float64)
    G = unobserved * V.T @ V
    for u in range(X.shape[0]):
        cols, vals = X[u].indices, X[u].data.astype(np.float64)
        lam = reg * (len(cols) + unobserved * X.shape[1]) ** nu
        yield V[cols].T @ V[cols] + G + lam * np.eye(V.shape[1]), V[cols].T @ vals


def plain_cg(A: np.ndarray, b: np.ndarray, x: np.ndarray, steps: int) -> np.ndarray:
    """Textbook conjugate gradient on one row's system (same guards against a zero residual)."""
    r = b - A @ x
    p, rr = r.copy(), r @ r
    for _ in range(steps):
        Ap = A @ p
        alpha = rr / max(p @ Ap, 1e-20)
        x, r = x + alpha * p, r - alpha * Ap
        new = r @ r
        p, rr = r + new / max(rr, 1e-20) * p, new
    return x


@pytest.mark.parametrize("batch_floats", [1 << 24, 200])
def test_exact_solver_matches_a_dense_least_squares_per_row(monkeypatch, batch_floats):
    monkeypatch.setattr(ials, "BATCH_FLOATS", batch_floats)     # one batch per similar length, or a few rows each
    X, d = weighted_rows(), 4
    V = np.random.default_rng(1).normal(size=(X.shape[1], d)).astype(np.float32)
    m = IALS(factors=d, reg=0.05, unobserved=0.2, nu=0.5, solver="exact")
    got = m._solve_rows(m._rows(X, d, exact=True), ials.torch.from_numpy(V)).numpy()
    want = np.stack([np.linalg.solve(A, b) for A, b in row_systems(X, V, 0.05, 0.2, 0.5)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_cg_steps_match_a_plain_conjugate_gradient_per_row(steps):
    X, d = weighted_rows(seed=3), 5
    rng = np.random.default_rng(2)
    V = rng.normal(size=(X.shape[1], d)).astype(np.float32)
    start = rng.normal(size=(X.shape[0], d)).astype(np.float32)
    start[1] = 0.0                                               # a zero start (and row 0 has no entries)
    m = IALS(factors=d, reg=0.1, unobserved=0.3, solver="cg", cg_steps=steps)
    got = m._solve_rows(m._rows(X, d, exact=False), ials.torch.from_numpy(V), ials.torch.from_numpy(start)).numpy()
    want = np.stack([plain_cg(A, b, start[u].astype(np.float64), steps)
                     for u, (A, b) in enumerate(row_systems(X, V, 0.1, 0.3, 1.0))])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_blocked_cholesky_equals_lapack_and_flags_each_indefinite_matrix():
    torch = ials.torch
    g = torch.Generator().manual_seed(0)
    E = torch.randn(6, 90, 70, generator=g)
    A = E.mT @ E + torch.eye(70)                                 # 70 = 35 + 35 -> 17 + 18: uneven blocks
    A[2, 69, 69] = -1e4                                          # indefinite in the trailing block
    A[4, 0, 0] = -1.0                                            # indefinite in the leading block
    L, info = ials._cholesky(A)
    assert (info > 0).tolist() == [False, False, True, False, True, False]
    ok = [0, 1, 3, 5]
    np.testing.assert_allclose(L[ok].numpy(), torch.linalg.cholesky(A[ok]).numpy(), rtol=1e-4, atol=1e-4)


def test_batches_cover_every_row_once_within_the_size_and_length_bounds(monkeypatch):
    monkeypatch.setattr(ials, "BATCH_FLOATS", 5000)
    counts = np.sort(np.random.default_rng(0).integers(0, 400, size=500))
    slices = list(ials._batches(counts, 8))
    assert [s.start for s in slices[1:]] == [s.stop for s in slices[:-1]] and slices[-1].stop == 500
    for s in slices:
        c = counts[s]
        assert len(c) == 1 or len(c) * max(1, c[-1]) * 8 <= 5000          # a single long row may exceed it
        assert c[-1] <= ials.PAD_RATIO * max(c[0], ials.PAD_FLOOR)


def test_the_fixed_structure_is_built_once_per_fit_not_per_epoch(monkeypatch):
    built = []
    real = ials._plan
    monkeypatch.setattr(ials, "_plan", lambda X, d: built.append(X.shape) or real(X, d))
    X = planted(seed=6)
    IALS(factors=4, epochs=5, solver="exact").fit(X)
    assert built == [X.shape, X.shape[::-1]]                     # users' side and items' side, once each
    built.clear()
    IALS(factors=4, epochs=5, solver="cg").fit(X)
    assert built == []                                           # the cg solver needs no padded plan


@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_unsorted_column_order_and_empty_histories_are_handled(solver):
    X = planted(seed=7)
    Y = X.copy()
    for r in range(Y.shape[0]):                                  # the same entries, each row's columns reversed
        a, b = Y.indptr[r], Y.indptr[r + 1]
        Y.indices[a:b], Y.data[a:b] = Y.indices[a:b][::-1].copy(), Y.data[a:b][::-1].copy()
    Y.has_sorted_indices = False
    m = IALS(factors=4, epochs=3, solver=solver).fit(X)
    np.testing.assert_allclose(IALS(factors=4, epochs=3, solver=solver).fit(Y).item_factors_, m.item_factors_,
                               rtol=1e-4, atol=1e-5)
    empty = sp.csr_matrix((3, X.shape[1]), dtype=np.float32)    # users with no history fold in to zero scores
    assert np.array_equal(m._score(None, empty), np.zeros((3, X.shape[1]), np.float32))
