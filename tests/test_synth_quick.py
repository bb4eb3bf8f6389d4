"""The demo's small synthetic-users report: generators in order, cut by the time budget."""
from feedgan.eval.bench import Budget
from feedgan.synth.quick import SUMMARY_COLUMNS, quick_report
from synth_standins import sim_profiles

SMALL_VAE = {"hidden": 16, "latent": 4, "epochs": 40, "batch_size": 64}


def test_each_generator_gives_a_row_and_copy_real_fails_privacy():
    out = quick_report(sim_profiles(n_users=300, n_items=120, seed=1), Budget(600.0),
                       generators={"independent": {}, "vae": SMALL_VAE, "copy": {}})
    rows = {r["generator"]: r for r in out["rows"]}
    assert list(rows) == ["independent", "vae", "copy"] and set(out["results"]) == set(rows)
    assert all(set(r) == set(SUMMARY_COLUMNS) for r in rows.values())
    assert rows["copy"]["exact copies (natural)"].startswith("1.000")
    assert float(rows["copy"]["membership AUC"]) > 0.9 > float(rows["independent"]["membership AUC"])
    assert float(rows["copy"]["TSTR ratio"]) > float(rows["independent"]["TSTR ratio"])
    assert out["users"]["train"] == out["results"]["copy"]["users"]["synthetic"]  # as many as it learned from


def test_a_spent_budget_runs_the_first_generator_with_fewer_epochs_and_leaves_the_rest_out():
    budget = Budget(0.0)
    out = quick_report(sim_profiles(n_users=200, n_items=80, seed=2), budget,
                       generators={"vae": SMALL_VAE, "independent": {}, "copy": {}})
    assert [r["generator"] for r in out["rows"]] == ["vae"]  # the first always runs
    assert budget.cuts[0] == "vae: 1 of 40 epochs (time budget)"
    assert [c.split(" (")[0] for c in budget.cuts[1:]] == ["independent left out", "copy left out"]
