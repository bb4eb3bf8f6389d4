"""The classifier two-sample test: about 0.5 for two samples of one population, near 1 for a clear
difference.

Tolerance for "about 0.5": each of the 5 folds scores about 120 + 120 held-out users, where an
uninformative score's ROC-AUC has standard deviation sqrt((2n + 1) / (12 n^2)) = 0.037 at n = 120;
the mean of 5 folds, about 0.017; 0.07 is about four of them."""
import sys

import numpy as np
import pytest
from synth_standins import copy_sample, independent_sample, sim_profiles

from feedgan.data.schema import DataError
from feedgan.synth import Profiles
from feedgan.synth.detect import c2st, detection, profile_features

AUC_TOL = 0.07


@pytest.fixture(scope="module")
def halves():
    return sim_profiles(n_users=1250, n_items=300).split_users((0.5, 0.5), seed=0)


@pytest.mark.parametrize("classifier", ["hgb", "logistic"])
def test_two_samples_of_one_population_are_indistinguishable(halves, classifier):
    a, b = halves
    out = c2st(a, b, classifier=classifier, seed=0)
    assert abs(out["auc_mean"] - 0.5) < AUC_TOL
    assert len(out["fold_aucs"]) == 5 and out["n_per_class"] == min(a.n_users, b.n_users)


def test_a_clearly_different_sample_is_caught(halves):
    a, b = halves
    uniform = independent_sample(b, b.n_users, seed=1, uniform=True)   # right sizes, items at random
    assert c2st(a, uniform)["auc_mean"] > 0.9
    assert c2st(a, uniform, classifier="logistic")["auc_mean"] > 0.9


def test_detection_reports_the_ceiling_and_skips_sdmetrics_cleanly(halves, monkeypatch):
    a, b = halves
    monkeypatch.setitem(sys.modules, "sdmetrics", None)  # as if not installed
    out = detection(a, copy_sample(b), reference=b)
    assert out["synth"]["auc_mean"] == pytest.approx(out["ceiling"]["auc_mean"], abs=0.05)
    assert "skipped" in out["sdmetrics"] and "sdmetrics" in out["sdmetrics"]["skipped"]


def test_features_have_names_and_refuse_other_catalogues(halves):
    a, b = halves
    xa, xb, names = profile_features(a, b)
    assert xa.shape == (a.n_users, len(names)) and xb.shape == (b.n_users, len(names))
    assert np.isfinite(xa).all() and "tail_share" in names and "log_events[like]" in names
    other = Profiles(b.users, b.items[::-1].copy(), b.actions)
    with pytest.raises(DataError, match="different item catalogues"):
        c2st(a, other)
    with pytest.raises(ValueError, match="classifier must be one of"):
        c2st(a, b, classifier="forest")
