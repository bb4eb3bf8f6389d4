"""The synthetic-users report: every family of figures, the goals checked, a page with plots."""
import json

import pytest

from feedgan.synth.report import GOALS, assess, check_goals, write_html
from synth_standins import copy_sample, independent_sample, sim_profiles


@pytest.fixture(scope="module")
def parts():
    return sim_profiles(n_users=900, n_items=200, seed=3).split_users((0.5, 0.25, 0.25), seed=0)


def fake_utility(ratio):
    return lambda train, synth, test: {"models": {"ease": {"ratio": {"ndcg@20": ratio}},
                                                  "itemknn": {"ratio": {"ndcg@20": ratio + 0.02}}}}


def test_a_copy_of_train_fails_privacy_and_an_independent_sampler_passes_it(parts, tmp_path):
    train, holdout, test = parts
    copied = assess(train, holdout, copy_sample(train), test=test, utility=fake_utility(1.0))
    assert copied["privacy"]["exact_copies"]["synth_rate"] > 0.9
    assert copied["goals"]["membership_auc"]["met"] is False and copied["goals"]["tstr_ratio"]["value"] == 1.01
    fresh = assess(train, holdout, independent_sample(train, holdout.n_users, seed=1))
    assert fresh["goals"]["membership_auc"]["met"] is True  # it never saw anyone: ~0.5
    assert fresh["goals"]["tstr_ratio"] == {"value": None, "goal": f">= {GOALS['tstr_ratio_min']}", "met": None}
    assert set(fresh["seconds"]) == {"fidelity", "detection", "privacy"}
    write_html(tmp_path / "report.html", copied, train, holdout, copy_sample(train), "copy")
    page = (tmp_path / "report.html").read_text()
    for heading in ("Goals", "Fidelity", "Two-sample test", "Privacy", "Utility", "Time"):
        assert f"<h2>{heading}" in page
    assert page.count("<img") == 1 and "activity_1_minus_tvd" in page


def test_goals_read_the_worst_attack_and_the_mean_utility_ratio():
    result = {"detection": {"synth": {"auc_mean": 0.61}},
              "privacy": {"mia_distance": {"auc": 0.52}, "mia_shadow": {"auc": 0.57}},
              "utility": {"models": {"a": {"ratio": {"ndcg@20": 0.8}}, "b": {"ratio": {"ndcg@20": 1.0}}}}}
    goals = check_goals(result)
    assert goals["membership_auc"]["value"] == 0.57 and goals["membership_auc"]["met"] is False
    assert goals["two_sample_auc"]["met"] is False and goals["tstr_ratio"]["value"] == pytest.approx(0.9)
    assert goals["tstr_ratio"]["met"] is True


def test_cli_report_scores_a_fitted_run_and_writes_its_page(tmp_path):
    from typer.testing import CliRunner

    from feedgan.cli import app
    from feedgan.data.readers import write_table
    from feedgan.data.simulate import SimulationConfig, simulate

    runner = CliRunner()
    data = tmp_path / "log.csv"
    write_table(simulate(SimulationConfig(n_users=400, n_items=150, seed=2)).interactions, data)
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["synth", "fit", str(data), "--generator", "independent", "--runs-dir", str(runs),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["synth", "report", "1", "--runs-dir", str(runs), "--no-utility", "--shadow"])
    assert res.exit_code == 0, res.output
    run = runs / "00001-synth-independent"
    result = json.loads((run / "report.json").read_text())
    assert result["users"]["synthetic"] == result["users"]["train"]  # as many as it learned from
    assert "auc" in result["privacy"]["mia_shadow"] and result["goals"]["tstr_ratio"]["met"] is None
    assert "membership auc:" in res.output and (run / "report.html").exists()
    bad = runner.invoke(app, ["synth", "report", "1", "--runs-dir", str(runs), "--real", str(tmp_path / "no.csv")])
    assert bad.exit_code == 2 and "no.csv" in bad.output and "Traceback" not in bad.output
