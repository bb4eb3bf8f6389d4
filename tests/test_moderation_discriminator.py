"""The discriminator detector on small generated rating logs with planted attacks: it separates fakes
from real users on a log it never saw, matches items by id across logs, balances the classes, and
refuses bad input in one line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from feedgan.data.schema import DataError, validate
from feedgan.moderation.attacks import inject
from feedgan.moderation.discriminator import DiscriminatorDetector

T0 = 1_600_000_000


def rating_log(n_users=300, n_items=200, seed=0, first_user=0, items=None):
    """Users of varied activity rate Zipf-popular items 1-5 around each item's quality; ``items``
    (raw ids, default 0..n_items-1) names the catalogue."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n_items) if items is None else np.asarray(items)
    pop = 1.0 / np.arange(1, len(ids) + 1) ** 0.8
    quality = np.random.default_rng(99).uniform(1, 5, len(ids))  # the same items have the same quality
    rows = []
    for u in range(first_user, first_user + n_users):
        k = int(np.clip(rng.lognormal(2.6, 0.5), 5, len(ids) // 3))
        at = rng.choice(len(ids), k, replace=False, p=pop / pop.sum())
        ratings = np.clip(np.round(quality[at] + rng.normal(0, 0.6, k)), 1, 5)
        rows += [(u, int(ids[i]), r, T0 + int(rng.integers(0, 10**7))) for i, r in zip(at, ratings)]
    return validate(pd.DataFrame(rows, columns=["user", "item", "weight", "timestamp"]).assign(action="rate"))


@pytest.fixture(scope="module")
def halves():
    """Two logs of different real users (the fit half and the scored half), the same catalogue."""
    return rating_log(seed=0), rating_log(seed=1, first_user=10_000)


def auc(scores, labels):
    return roc_auc_score(labels.loc[scores.index], scores)


@pytest.mark.parametrize("kind", ["average", "random", "bandwagon"])
@pytest.mark.parametrize("features", [True, False])
def test_separates_planted_fakes_on_a_log_it_never_saw(halves, kind, features):
    """With the profile features it finds fakes pushing other targets; on the profile row alone, fakes
    of a campaign it has seen (the same target pushed again by new accounts)."""
    fit_log, scored_log = halves
    targets = 1 if features else [int(fit_log.frame["item"].value_counts().index[-1])]
    train = inject(fit_log, kind, size=0.05, filler=0.05, seed=1, targets=targets)
    test = inject(scored_log, kind, size=0.05, filler=0.05, seed=2, targets=targets)  # other fakes
    det = DiscriminatorDetector(features=features, seed=0).fit(train.interactions, train.labels)
    scores = det.score(test.interactions)
    assert list(scores.index) == list(pd.unique(test.interactions.frame["user"]))
    assert scores.between(0, 1).all()
    assert auc(scores, test.labels) > (0.9 if features else 0.85)
    # random scores, the check's floor, stay near chance
    noise = pd.Series(np.random.default_rng(0).random(len(scores)), index=scores.index)
    assert auc(noise, test.labels) < 0.75


def test_items_matched_by_id_unseen_items_ignored(halves):
    fit_log, _ = halves
    train = inject(fit_log, "average", size=0.05, filler=0.05, seed=1)
    det = DiscriminatorDetector(features=False, seed=0).fit(train.interactions, train.labels)
    # a scored log over another catalogue: items 100..299 (half of them unseen at fit), other users
    other = rating_log(seed=2, first_user=20_000, items=np.arange(100, 300))
    test = inject(other, "average", size=0.05, filler=0.05, seed=3, targets=[150])
    scores = det.score(test.interactions)
    assert scores.index.equals(pd.Index(pd.unique(test.interactions.frame["user"]))) and np.isfinite(scores).all()
    # rows on items the detector never saw change nobody's score
    extra = pd.DataFrame({"user": test.interactions.frame["user"].iloc[:40].to_numpy(),
                          "item": np.arange(5000, 5040), "action": "rate", "weight": 1.0, "timestamp": T0})
    more = validate(pd.concat([test.interactions.frame, extra], ignore_index=True))
    pd.testing.assert_series_equal(det.score(more).loc[scores.index], scores)
    # the same profile scores the same under the fit log's and another log's column order
    shuffled = validate(test.interactions.frame.sample(frac=1.0, random_state=0))
    pd.testing.assert_series_equal(det.score(shuffled).loc[scores.index], scores, check_exact=False, atol=1e-6)


def test_class_balance_flags_rare_fakes_at_one_half(halves):
    """Fakes are 2% of the users: trained without weighting them up a detector calls nearly everyone real."""
    fit_log, scored_log = halves
    train = inject(fit_log, "average", size=0.02, filler=0.05, seed=1)
    test = inject(scored_log, "average", size=0.02, filler=0.05, seed=2)
    det = DiscriminatorDetector(seed=0).fit(train.interactions, train.labels)
    s = det.score(test.interactions)
    y = test.labels.loc[s.index]
    assert (s[y == 1] > 0.5).mean() >= 0.8   # recall at the natural threshold
    assert (s[y == 0] > 0.5).mean() <= 0.2


def test_seeded_and_early_stopped_on_its_own_training_data(halves):
    fit_log, scored_log = halves
    train = inject(fit_log, "average", size=0.05, filler=0.05, seed=1)
    test = inject(scored_log, "average", size=0.05, filler=0.05, seed=2)
    a, b = (DiscriminatorDetector(features=False, seed=4, epochs=40, patience=3).fit(train.interactions, train.labels)
            for _ in range(2))
    pd.testing.assert_series_equal(a.score(test.interactions), b.score(test.interactions))
    assert len(a.valid_history_) >= 1 and a.best_epoch_ is not None
    stopped = len(a.valid_history_) < 40
    best = int(np.argmin(a.valid_history_))
    assert stopped and len(a.valid_history_) - 1 - best == 3  # ran out of patience after its best epoch


def one_fake(labels):
    """The labels with every injected user but the first called real."""
    out = labels.copy()
    out[out.index[out == 1][1:]] = 0
    return out


@pytest.mark.parametrize("labels, words", [
    (lambda lab: lab.iloc[:-3], "labels do not cover 3 of the"),
    (lambda lab: lab * 0, "every user of the log has label 0"),
    (lambda lab: lab.replace(1, 2), "is not 0 or 1"),
    (lambda lab: lab.to_numpy(), "must be a pandas Series"),
    (lambda lab: one_fake(lab), "1 injected and"),
])
def test_bad_labels_are_one_clear_line(halves, labels, words):
    train = inject(halves[0], "average", size=0.05, seed=1)
    with pytest.raises(DataError, match="fix:") as err:
        DiscriminatorDetector(features=False).fit(train.interactions, labels(train.labels))
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("params, words", [
    (dict(profile="pixels"), "profile='pixels' is unknown"),
    (dict(hidden=0), "hidden=0"),
    (dict(epochs=2.5), "epochs=2.5"),
    (dict(dropout=1.0), "dropout=1.0"),
    (dict(valid_share=0), "valid_share=0"),
    (dict(lr=-1), "lr=-1"),
    (dict(features="yes"), "features='yes'"),
])
def test_bad_params_are_one_clear_line(halves, params, words):
    train = inject(halves[0], "average", size=0.05, seed=1)
    with pytest.raises(DataError, match="fix:") as err:
        DiscriminatorDetector(**params).fit(train.interactions, train.labels)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_score_before_fit_and_bad_logs(halves):
    with pytest.raises(DataError, match="score before fit"):
        DiscriminatorDetector().score(halves[0])
    with pytest.raises(DataError, match="needs an Interactions log"):
        DiscriminatorDetector().fit(halves[0].frame, pd.Series(dtype=int))
