"""Early stopping scores validation users from what the model would read for them: their
training rows, or, in a by-user split, their fold-in history. Plus the pieces it shares with
evaluation: one seen-item mask + top-n, one ranking-metric module outside ``rec/`` and ``eval/``."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import feedgan
from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.schema import validate
from feedgan.eval.metrics import evaluate
from feedgan.rec.base import top_n
from feedgan.rec.bpr import BPR
from feedgan.rec.cfgan import CFGAN
from feedgan.rec.easegan import EASEGAN
from feedgan.rec.multvae import MultVAE
from feedgan.rec.selection import validation_ndcg


def by_user(target_action: str | None = None, seed: int = 0):
    """Three user groups, each liking 8 of its own 12 items and viewing 3 more; a by-user split
    holds whole users out, half of each held-out user's pairs as fold-in history."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(3):
        for u in range(40):
            own = rng.permutation(12)[:11] + 12 * g
            rows += [(f"g{g}u{u}", int(i), "like") for i in own[:8]]
            rows += [(f"g{g}u{u}", int(i), "view") for i in own[8:]]
    inter = validate(pd.DataFrame(rows, columns=["user", "item", "action"]))
    return prepare(inter, DataConfig(split="by-user", valid=0.25, test=0.25, target=0.5, seed=seed,
                                     target_action=target_action))


@pytest.fixture(scope="module")
def ds():
    return by_user()


@pytest.mark.parametrize("make", [
    lambda: MultVAE(hidden=16, latent=4, epochs=4, batch_size=16, lr=3e-3, eval_every=1, seed=0),
    lambda: CFGAN(mode="user", g_hidden=(16,), d_hidden=(8,), batch_g=16, batch_d=16, g_steps=1, d_steps=1,
                  epochs=4, eval_every=1, lr_g=1e-3, lr_d=1e-3, seed=0),
    lambda: EASEGAN(l2=20, epochs=3, eval_every=1, batch_size=16, adversarial=False, patience=None, seed=0),
], ids=["multvae", "cfgan-user", "easegan-nod"])
def test_by_user_validation_scores_the_fold_in_history(make, ds):
    assert "valid_input" in ds.parts and ds.matrix("train")[np.flatnonzero(ds.matrix("valid").getnnz(1))].nnz == 0
    model = make().fit(ds)
    best_epoch, best_value = max(model.valid_history_, key=lambda ev: ev[1])
    assert model.best_epoch_ == best_epoch
    # what early stopping measured is what evaluation measures on the fold-in histories
    assert best_value == pytest.approx(evaluate(model, ds, "valid", ks=(20,))["ndcg@20"], abs=1e-6)
    # and not what the same model scores from empty histories (what held-out users have in train)
    users = np.flatnonzero(ds.matrix("valid").getnnz(1))
    empty = sp.csr_matrix((len(users), ds.n_items), dtype=np.float32)
    top, _ = model.recommend(None, n=20, history=empty)
    from feedgan.ranking import ranking_metrics
    blind = float(np.nanmean(ranking_metrics(top, ds.matrix("valid")[users], [20])["ndcg@20"]))
    assert abs(best_value - blind) > 0.05


def test_by_user_fold_in_carries_target_and_auxiliary_rows():
    ds = by_user(target_action="like")
    model = EASEGAN(l2=20, epochs=2, eval_every=1, batch_size=16, adversarial=False, seed=0)
    model.fit(ds, aux={"view": 0.5})
    best_epoch, best_value = max(model.valid_history_, key=lambda ev: ev[1])
    assert best_value == pytest.approx(evaluate(model, ds, "valid", ks=(20,))["ndcg@20"], abs=1e-6)


@pytest.mark.parametrize("make", [lambda: BPR(factors=4, epochs=2, eval_every=1),
                                  lambda: CFGAN(mode="item", epochs=2, g_hidden=(8,), d_hidden=(4,))],
                         ids=["bpr", "cfgan-item"])
def test_models_that_cannot_fold_in_refuse_by_user_early_stopping(make, ds):
    with pytest.raises(ValueError, match="by-user split.*eval_every=0"):
        make().fit(ds)


def test_validation_ndcg_masks_the_seen_items_it_is_given():
    from feedgan.rec.base import Validation

    targets = sp.csr_matrix(np.array([[0, 0, 1, 0]], dtype=np.float32))
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=np.float32))
    scores = np.array([[4.0, 3.0, 2.0, 1.0]], dtype=np.float32)  # seen items on top
    v = Validation(targets, seen, seen, {})
    assert validation_ndcg(lambda u: scores[u], v, k=1) == 1.0  # the seen items take no slot
    assert validation_ndcg(lambda u: scores[u], Validation(targets, seen, sp.csr_matrix((1, 4)), {}), k=1) == 0.0


# -- one mask + top-n --------------------------------------------------------------------------
def test_top_n_excludes_masked_items_and_never_changes_its_input():
    scores = np.array([[0.9, 0.8, 0.1], [0.3, 0.2, 0.1]], dtype=np.float32)
    before = scores.copy()
    exclude = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0]]))
    items, values = top_n(scores, 3, exclude=exclude)
    np.testing.assert_array_equal(items, [[1, -1, -1], [0, 1, 2]])
    assert values[0, 0] == pytest.approx(0.8) and np.isneginf(values[0, 1:]).all()
    np.testing.assert_array_equal(scores, before)
    t = torch.from_numpy(before.copy())
    top_n(t, 2, exclude=exclude)
    assert torch.equal(t, torch.from_numpy(before))
    with pytest.raises(ValueError, match="exclude has shape"):
        top_n(scores, 2, exclude=sp.csr_matrix((1, 3)))


# -- rec/ never imports eval/ ------------------------------------------------------------------
def test_rec_does_not_import_eval():
    rec = Path(feedgan.__file__).parent / "rec"
    offending = []
    for path in sorted(rec.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if module.startswith("..eval") or module.startswith("feedgan.eval"):
                    offending.append(f"{path.name}: from {module}")
            elif isinstance(node, ast.Import):
                offending += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("feedgan.eval")]
    assert offending == []
