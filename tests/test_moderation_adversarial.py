"""The discriminator-trained (adversarial) attack on small generated logs: sizes, labels, targets,
template provenance, a measurable effect on a fresh discriminator, seeds and bad parameters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from feedgan.data.schema import DataError, validate
from feedgan.data.simulate import simulate
from feedgan.moderation.attacks import ADVERSARIAL, KINDS, inject
from feedgan.moderation.discriminator import DiscriminatorDetector

T0 = 1_600_000_000
FAST = {"epochs": 40}
TEMPLATE = {"epochs": 0}  # the unrefined template attack


def two_crowd_log(n_light=240, n_heavy=60, n_items=200, seed=0):
    """Users rate Zipf-popular items around each item's quality. Light users (10-24 items) rate
    fairly; heavy users (40-60 items, the templates of a 15-item fake: at least twice its length) are
    harsh, two points lower: a fake cut from a heavy user's profile as it is looks unlike the real
    users of its length."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    quality = rng.uniform(2.5, 5, n_items)
    rows = []
    for u in range(n_light + n_heavy):
        heavy = u >= n_light
        k = int(rng.integers(40, 61) if heavy else rng.integers(10, 25))
        items = rng.choice(n_items, k, replace=False, p=pop / pop.sum())
        raw = quality[items] - (2.0 if heavy else 0.0) + rng.normal(0, 0.5, k)
        rows += [(u, int(i), r, T0 + int(rng.integers(0, 10**6))) for i, r in zip(items, np.clip(np.round(raw), 1, 5))]
    return validate(pd.DataFrame(rows, columns=["user", "item", "weight", "timestamp"]).assign(action="rate"))


@pytest.fixture(scope="module")
def log():
    return two_crowd_log()


def fake_frame(res):
    frame = res.interactions.frame
    return frame[frame["user"].map(res.labels).to_numpy() == 1]


def test_kind_is_listed():
    assert ADVERSARIAL == "adversarial" and ADVERSARIAL in KINDS


@pytest.mark.parametrize("size, filler", [(0.05, 0.075), (0.1, 0.05)])
def test_sizes_labels_targets_and_templates(log, size, filler):
    res = inject(log, "adversarial", size=size, filler=filler, targets=2, seed=0, generator_params=FAST)
    n_real = log.frame["user"].nunique()
    fake = fake_frame(res)
    n_filler = round(filler * log.frame["item"].nunique())
    assert res.kind == "adversarial" and res.generator is None
    assert fake["user"].nunique() == round(size * n_real) == int(res.labels.sum())
    assert set(fake["user"]) == set(res.labels.index[res.labels == 1])
    assert len(res.labels) == n_real + int(res.labels.sum())
    real = res.interactions.frame[res.interactions.frame["user"].map(res.labels).to_numpy() == 0]
    pd.testing.assert_frame_equal(real.reset_index(drop=True), log.frame.assign(user=log.frame["user"].astype(str))
                                  .astype({"user": object}).reset_index(drop=True))
    heavy = {str(u) for u, k in log.frame.groupby("user").size().items() if k >= n_filler}
    by_user = {str(u): set(g["item"]) for u, g in log.frame.groupby("user")}
    for _, g in fake.groupby("user"):
        hit = g[g["item"].isin(res.targets)]
        assert sorted(hit["item"]) == sorted(res.targets) and (hit["weight"] == 5.0).all()  # pushed at the top
        filler_items = set(g["item"]) - set(res.targets)
        assert len(filler_items) == n_filler == len(g) - 2
        # the filler is a part of one real template user's profile
        assert any(filler_items <= by_user[u] for u in heavy)
    assert set(fake["weight"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    ts = log.frame["timestamp"]
    assert fake["timestamp"].between(ts.min(), ts.max()).all() and set(fake["action"]) == {"rate"}


def fresh_auc(res, seed=0):
    """AUC of a discriminator that never met the attack's generator: the targets removed (their push
    is the same in both attacks), trained on half of the users (real and fake) and scored on the other."""
    frame = res.interactions.frame
    frame = frame[~frame["item"].isin(res.targets)]
    users = res.labels.index.to_numpy()
    fit_half = set(np.random.default_rng(seed).permutation(users)[: len(users) // 2])
    mask = frame["user"].isin(fit_half)
    det = DiscriminatorDetector(seed=seed).fit(res.interactions.with_frame(frame[mask]), res.labels)
    s = det.score(res.interactions.with_frame(frame[~mask]))
    return roc_auc_score(res.labels.loc[s.index], s)


def test_refined_fakes_fool_a_fresh_discriminator_more_than_templates(log):
    template = inject(log, "adversarial", size=0.15, filler=0.075, seed=0, generator_params=TEMPLATE)
    refined = inject(log, "adversarial", size=0.15, filler=0.075, seed=0, generator_params={"epochs": 60})
    a_template, a_refined = fresh_auc(template), fresh_auc(refined)
    assert a_template > 0.85               # copied templates are easy to tell here
    assert a_refined < a_template - 0.1    # the refinement hides a good part of that
    # and it went where the real users of that length are: more popular items, higher ratings
    pop = log.frame.groupby("item")["user"].nunique()
    filler = {name: fake_frame(r)[~fake_frame(r)["item"].isin(r.targets)] for name, r in
              (("template", template), ("refined", refined))}
    assert pop[filler["refined"]["item"]].mean() > pop[filler["template"]["item"]].mean()
    assert filler["refined"]["weight"].mean() > filler["template"]["weight"].mean()


def test_template_attack_keeps_the_template_ratings(log):
    res = inject(log, "adversarial", size=0.05, filler=0.075, seed=3, generator_params=TEMPLATE)
    rated = {str(u): dict(zip(g["item"], g["weight"])) for u, g in log.frame.groupby("user")}
    for user, g in fake_frame(res).groupby("user"):
        g = g[~g["item"].isin(res.targets)]
        copied = [u for u, r in rated.items() if all(r.get(i) == w for i, w in zip(g["item"], g["weight"]))]
        assert copied, f"{user}'s filler is no real user's ratings"


def test_implicit_log():
    sim = simulate(n_users=300, n_items=150, seed=3).interactions
    res = inject(sim, "adversarial", size=0.05, filler=0.05, seed=0, generator_params=FAST)
    fake = fake_frame(res)
    assert (fake["weight"] == 1.0).all()
    assert (fake.groupby("user").size() == round(0.05 * 150) + 1).all()
    assert (fake[fake["item"].isin(res.targets)].groupby("user").size() == 1).all()


def test_same_seed_same_output(log):
    a, b = (inject(log, "adversarial", seed=5, filler=0.075, generator_params=FAST) for _ in range(2))
    pd.testing.assert_frame_equal(a.interactions.frame, b.interactions.frame)
    c = inject(log, "adversarial", seed=6, filler=0.075, generator_params=FAST)
    assert not a.interactions.frame.equals(c.interactions.frame)


def test_timing_real_applies(log):
    res = inject(log, "adversarial", filler=0.075, seed=0, timing="real", generator_params=TEMPLATE)
    assert res.timing == "real"
    real_times = set(log.frame["timestamp"])
    assert set(fake_frame(res)["timestamp"]) <= real_times


@pytest.mark.parametrize("args, words", [
    (dict(generator_params={"nope": 1}), "no hyperparameter 'nope'"),
    (dict(generator_params={"epochs": "many"}), "epochs"),
    (dict(generator_params={"epochs": -1}), "epochs must be >= 0"),
    (dict(generator_params={"lr": 0.0}), "lr must be a positive number"),
    (dict(generator_params={"hidden": 0}), "hidden must be a positive integer"),
    (dict(generator_params={"recon_weight": float("nan")}), "recon_weight"),
    (dict(generator_params=[1]), "is not a mapping"),
    (dict(filler=0.5), "only 0 real users have that many"),
    (dict(size=0), "size 0 is not a share"),
])
def test_bad_input_is_one_clear_line(log, args, words):
    with pytest.raises(DataError, match="fix:") as err:
        inject(log, "adversarial", **{"filler": 0.075, **args})
    assert words in str(err.value) and "\n" not in str(err.value)
