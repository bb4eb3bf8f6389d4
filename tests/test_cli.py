"""The command line end to end, on generated data and the hand-written fixtures."""
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedgan.cli import app

FIX = Path(__file__).parent / "fixtures"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_prints_counts_json():
    res = invoke("data", "inspect", FIX / "movielens" / "ml-100k" / "u.data", "--format", "movielens", "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    lines = [ln for ln in (FIX / "movielens" / "ml-100k" / "u.data").read_text().splitlines() if ln.strip()]
    assert stats["rows"] == len(lines)
    assert stats["users"] == len({ln.split()[0] for ln in lines})
    assert stats["items"] == len({ln.split()[1] for ln in lines})


def test_inspect_threshold_removes_low_ratings():
    path = FIX / "movielens" / "ml-100k" / "u.data"
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    res = invoke("data", "inspect", path, "--format", "movielens", "--positive-threshold", 4, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rows"] == sum(float(x[2]) >= 4 for x in lines)


def test_inspect_counts_rows_read_and_merged_by_the_dedup_rule(tmp_path):
    # Tang layout; user 1 rated item 2 twice (5 then 4): auto keeps 5, --dedup count makes it a pair of 2 rows
    f = tmp_path / "rating.txt"
    f.write_text("1,2,9,5,0\n1,2,9,4,1\n1,3,9,2,0\n")
    res = invoke("data", "inspect", f, "--format", "ciao-tang", "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert (stats["rows_read"], stats["rows"], stats["pairs"]) == (3, 2, 2)
    assert stats["notes"]["duplicates_merged"] == 1 and stats["notes"]["dedup"] == "rate: max"
    res = invoke("data", "inspect", f, "--format", "ciao-tang", "--dedup", "count", "--json")
    assert json.loads(res.output)["notes"]["dedup"] == "count"
    table = invoke("data", "inspect", f, "--format", "ciao-tang").output
    assert re.search(r"rows read[\s│]+3\b", table) and re.search(r"rows kept \(merged, filtered\)[\s│]+2\b", table)


def test_a_positional_rating_keeps_the_largest_of_repeated_rows_and_a_count_adds_up(tmp_path):
    f = tmp_path / "ratings.csv"  # user,item,date,rating,votes; user 1 rated item 2 twice (3, then 2)
    f.write_text("1,2,2020-01-01,3,0\n1,2,2020-02-01,2,1\n1,3,2020-01-05,5,0\n")

    def inspect(mapping, *more):
        res = invoke("data", "inspect", f, "--format", "csv", "--no-header", "--columns", mapping, "--json", *more)
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    rated = inspect("user=0,item=1,rating=3", "--positive-threshold", 4)
    assert rated["rows"] == 1 and rated["by_action"] == {"rate": 1}  # 3 and 2 stay 3: below the threshold
    assert inspect("user=0,item=1,rating=3")["notes"]["dedup"] == "rate: max"
    counted = inspect("user=0,item=1,weight=3")
    assert counted["notes"]["dedup"] == "view: sum" and counted["by_action"] == {"view": 2}  # a count adds up
    res = invoke("data", "inspect", f, "--format", "csv", "--no-header", "--columns", "user=0,item=1,rating=3,weight=4")
    assert res.exit_code == 2 and "both rating= and weight=" in res.output


def test_unknown_dedup_is_one_line_before_reading(tmp_path):
    res = invoke("data", "inspect", tmp_path / "missing.txt", "--dedup", "mean")
    assert res.exit_code != 0 and "unknown --dedup 'mean'" in res.output and "Traceback" not in res.output
    assert "max, last, sum, count" in res.output


def test_inspect_predefined_parts():
    res = invoke("data", "inspect", FIX / "lightgcn", "--format", "lightgcn", "--json")
    assert res.exit_code == 0, res.output
    parts = json.loads(res.output)["parts"]
    assert parts["train"]["pairs"] > 0 and parts["test"]["pairs"] > 0


def test_inspect_bad_format_is_one_clear_line(tmp_path):
    res = invoke("data", "inspect", FIX / "movielens" / "ml-100k" / "u.data", "--format", "movielenz")
    assert res.exit_code == 2
    assert "movielenz" in res.output and "Traceback" not in res.output


def test_inspect_bad_weight_names_file_and_line(tmp_path):
    bad = tmp_path / "log.csv"
    bad.write_text("user,item,weight\n1,2,3\n4,5,five\n")
    res = invoke("data", "inspect", bad)
    assert res.exit_code == 2
    assert "log.csv" in res.output and "line 3" in res.output and "five" in res.output


def test_simulate_then_convert_roundtrip(tmp_path):
    out = tmp_path / "sim.parquet"
    res = invoke("data", "simulate", "--users", 200, "--items", 150, "--out", out, "--social-out",
                 tmp_path / "friends.csv")
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "friends.csv").exists()
    inter = tmp_path / "sim.inter"
    assert invoke("data", "convert", out, "--out", inter).exit_code == 0
    a = json.loads(invoke("data", "inspect", out, "--json").output)
    b = json.loads(invoke("data", "inspect", inter, "--format", "recbole", "--json").output)
    assert a["interactions"] == b["interactions"] and a["by_action"] == b["by_action"]


@pytest.mark.slow
def test_demo_writes_run_folder(tmp_path):
    res = invoke("demo", "--users", 300, "--items", 200, "--seeds", 2, "--budget", 10,
                 "--models", "most-popular,itemknn,ease", "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = tmp_path / "00001-demo"
    for name in ("config.yaml", "metrics.json", "report.html"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    board = metrics["leaderboard"]
    assert {r["model"] for r in board} == {"most-popular", "itemknn", "ease"}
    assert all(r["test"]["ndcg@20"]["mean"] >= 0 for r in board)
    # the personalised models must beat popularity on a simulator with planted interests
    best = board[0]["model"]
    assert best != "most-popular", board
    html = (run / "report.html").read_text()
    assert html.count("<img") >= 3 and "Leaderboard" in html
    # a saved run can be re-scored, and gives the seed-0 numbers again
    res = invoke("evaluate", run, "--runs-dir", tmp_path)
    assert res.exit_code == 0, res.output
    rescored = json.loads((run / "evaluate.json").read_text())
    assert set(rescored) == {"most-popular", "itemknn", "ease"}


@pytest.mark.slow
def test_demo_shrinks_to_a_tiny_budget_and_says_what_it_cut(tmp_path):
    res = invoke("demo", "--users", 300, "--items", 200, "--seeds", 3, "--budget", 0.01,
                 "--models", "most-popular,ease,bpr", "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "00001-demo" / "metrics.json").read_text())
    assert [r["model"] for r in metrics["leaderboard"]] == ["most-popular"]  # the first model always runs
    assert metrics["cut"][-4:] == ["ease: left out (the time budget was spent before it started)",
                                   "bpr: left out (the time budget was spent before it started)",
                                   "per-action part left out (0 s of the budget left)",
                                   "synthetic-users part left out (0 s of the budget left)"]
    assert "cfgan" in metrics["left_out"] and "left out: cfgan" in res.output
    assert "the time budget cut: " in res.output
    html = (tmp_path / "00001-demo" / "report.html").read_text()
    assert "Cut to fit the budget" in html and "bpr: left out" in html and "Left out of the demo" in html


@pytest.mark.slow
def test_demo_reports_synthetic_users_and_copy_real_fails_privacy(tmp_path):
    res = invoke("demo", "--users", 400, "--items", 200, "--seeds", 1, "--budget", 600,
                 "--models", "most-popular", "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = tmp_path / "00001-demo"
    synth = json.loads((run / "metrics.json").read_text())["synthetic"]
    rows = {r["generator"]: r for r in synth["rows"]}
    assert list(rows) == ["independent", "vae", "copy"]
    total = synth["users"]["train"] + synth["users"]["holdout"] + synth["users"]["test"]
    assert 350 < total <= 400 and abs(synth["users"]["train"] / total - 0.6) < 0.01  # users with any event
    # copy-real is caught by every privacy figure; the popularity sampler is not
    assert rows["copy"]["exact copies (natural)"].startswith("1.000")
    assert float(rows["copy"]["membership AUC"]) > 0.9 > float(rows["independent"]["membership AUC"])
    assert float(rows["copy"]["TSTR ratio"]) > float(rows["independent"]["TSTR ratio"])
    assert f"Synthetic users: generators fitted on {synth['users']['train']} users" in res.output.replace("\n", " ")
    assert "Synthetic users" in (run / "report.html").read_text()


def test_bench_on_fixture_writes_results(tmp_path):
    res = invoke("bench", "--data", FIX / "lightgcn", "--format", "lightgcn", "--split", "predefined",
                 "--models", "most-popular,itemknn", "--seeds", 2, "--max-trials", 2, "--ks", "1,2", "--metric", "ndcg@2",
                 "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-bench"))
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"most-popular", "itemknn"}
    assert "| model |" in (run / "results.md").read_text()


def test_bench_unknown_model(tmp_path):
    res = invoke("bench", "--data", FIX / "lightgcn", "--format", "lightgcn", "--models", "cfgan9000",
                 "--runs-dir", tmp_path)
    assert res.exit_code == 2 and "cfgan9000" in res.output


def test_bench_metric_must_be_computed(tmp_path):
    res = invoke("bench", "--data", FIX / "lightgcn", "--format", "lightgcn", "--ks", "5,10", "--runs-dir", tmp_path)
    assert res.exit_code == 2 and "ndcg@20" in res.output


def test_train_saves_a_loadable_model(tmp_path):
    from feedgan.rec.base import Recommender

    res = invoke("train", "ease", "--data", FIX / "lightgcn", "--format", "lightgcn", "--split", "predefined",
                 "-p", "l2=5", "--final", "--dedup", "last", "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-train-ease"))
    assert "dedup: last" in (run / "config.yaml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params"] == {"l2": 5} and "ndcg@20" in metrics["valid"] and "ndcg@20" in metrics["test"]
    assert Recommender.load(run / "models" / "ease").l2 == 5


@pytest.mark.parametrize("model,params", [
    ("easegan", ["-p", "l2=5", "-p", "epochs=2", "-p", "eval_every=1", "-p", "batch_size=8"]),
    ("cfgan", ["-p", "epochs=2", "-p", "eval_every=1", "-p", "g_hidden=[8]", "-p", "d_hidden=[4]"]),
])
def test_train_gan_recommenders_refit_with_the_chosen_epoch(tmp_path, model, params):
    from feedgan.rec.base import Recommender

    res = invoke("train", model, "--data", FIX / "lightgcn", "--format", "lightgcn", "--split", "predefined",
                 *params, "--final", "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob(f"*-train-{model}"))
    metrics = json.loads((run / "metrics.json").read_text())
    saved = Recommender.load(run / "models" / model)
    assert "ndcg@20" in metrics["test"]
    assert saved.epochs in (0, 1, 2) and saved.epochs <= metrics["params"]["epochs"]


def test_train_unknown_hyperparameter(tmp_path):
    res = invoke("train", "ease", "--data", FIX / "lightgcn", "-f", "lightgcn", "-p", "l3=1", "--runs-dir", tmp_path)
    assert res.exit_code == 2 and "l3" in res.output and "l2" in res.output


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "sim.parquet"
    res = invoke("data", "simulate", "--users", 400, "--items", 250, "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_bench_with_a_target_reports_both_masks(sim_log, tmp_path):
    res = invoke("bench", "--data", sim_log, "--target", "like", "--aux", "view", "--models",
                 "most-popular,seen-first,ease-seen", "--seeds", 2, "--max-trials", 2, "--runs-dir", tmp_path,
                 "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-bench"))
    out = json.loads((run / "results.json").read_text())
    assert out["config"]["target_action"] == "like" and out["config"]["aux_in_train"] is True
    rows = {r["model"]: r for r in out["rows"]}
    assert set(rows) == {"most-popular", "seen-first", "ease-seen"}
    assert all("test_all" in r and "hitrate@10" in r["test"] for r in rows.values())
    # every simulated like follows a view that stays in train: the all-items mask hides every target
    assert rows["seen-first"]["test_all"]["ndcg@20"]["mean"] == 0.0
    # with the views known, the rule beats popularity by far
    assert rows["seen-first"]["test"]["ndcg@20"]["mean"] > 2 * rows["most-popular"]["test"]["ndcg@20"]["mean"]
    assert "all-items mask" in (run / "results.md").read_text()


def test_bench_without_aux_in_train(sim_log, tmp_path):
    res = invoke("bench", "--data", sim_log, "--target", "like", "--aux", "view", "--no-aux-in-train",
                 "--models", "seen-first", "--seeds", 1, "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-bench"))
    row = json.loads((run / "results.json").read_text())["rows"][0]
    # the held-out like's view is held out with it: the rule has nothing to find
    assert row["test"]["hitrate@10"]["mean"] < 0.2
    assert "split, 1 seed)" in (run / "results.md").read_text()  # one seed is not "1 seeds"


@pytest.mark.parametrize("args,needle", [
    (["--aux", "view"], "--aux needs --target"),
    (["--target", "like", "--aux", "cart"], "'cart' is not in this log"),
    (["--target", "like", "--aux", "like"], "the target itself"),
    (["--target", "like", "--aux", "friends"], "social graph"),
    (["--target", "buy"], "target action 'buy'"),
])
def test_bench_bad_actions_are_one_clear_line(sim_log, tmp_path, args, needle):
    res = invoke("bench", "--data", sim_log, *args, "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_train_with_a_target_saves_it(sim_log, tmp_path):
    from feedgan.rec.base import Recommender

    res = invoke("train", "ease-seen", "--data", sim_log, "--target", "like", "--aux", "view=0.5",
                 "--final", "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-train-ease-seen"))
    m = Recommender.load(run / "models" / "ease-seen")
    assert m.target_ == "like" and m.aux_ == {"view": 0.5}
    assert json.loads((run / "metrics.json").read_text())["target"] == "like"


def test_inspect_shows_funnel_rates():
    res = invoke("data", "inspect", FIX / "kuairand" / "log_standard_real_layout.csv", "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    lines = (FIX / "kuairand" / "log_standard_real_layout.csv").read_text().splitlines()[1:]
    header = (FIX / "kuairand" / "log_standard_real_layout.csv").read_text().splitlines()[0].split(",")
    click = header.index("is_click")
    clicked = sum(ln.split(",")[click] == "1" for ln in lines if ln.strip())
    shown = len({(ln.split(",")[0], ln.split(",")[1]) for ln in lines if ln.strip()})
    assert stats["funnel"]["view|impression"] == pytest.approx(clicked / shown)
    assert stats["by_action"]["impression"] == len([ln for ln in lines if ln.strip()])


# -- the error boundary and typed hyperparameters ------------------------------------------------------
def _lightgcn_train(tmp_path, *params):
    return invoke("train", "ease", "--data", FIX / "lightgcn", "--format", "lightgcn", "--split", "predefined",
                  *params, "--runs-dir", tmp_path / "runs", "--no-progress")


def test_hyperparameters_are_parsed_by_the_constructors_types(tmp_path):
    from feedgan.rec.base import Recommender

    res = _lightgcn_train(tmp_path, "-p", "l2=5e2")  # YAML reads 5e2 as a string
    assert res.exit_code == 0, res.output
    saved = Recommender.load(next((tmp_path / "runs").glob("*-train-ease")) / "models" / "ease")
    assert type(saved.l2) is float and saved.l2 == 500.0


def test_a_hyperparameter_of_the_wrong_type_is_one_line_and_leaves_no_run_folder(tmp_path):
    res = _lightgcn_train(tmp_path, "-p", "l2=lots")
    assert res.exit_code == 2, res.output
    assert "l2" in res.output and "number" in res.output and "'lots'" in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_boundary_turns_project_and_system_errors_into_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = invoke("data", "convert", FIX / "movielens" / "ml-100k" / "u.data", "--format", "movielens",
                 "--out", blocker / "out.csv")  # the OS refuses: the parent is a file
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1
    res = invoke("evaluate", tmp_path / "no-such-run")
    assert res.exit_code == 2 and "no run" in res.output


def test_the_boundary_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    import numpy as np

    import feedgan.data.readers as readers

    monkeypatch.setattr(readers, "read", lambda *a, **k: np.zeros(-1))  # a ValueError inside numpy: a bug
    res = invoke("data", "inspect", FIX / "movielens" / "ml-100k" / "u.data")
    assert res.exit_code == 1 and isinstance(res.exception, ValueError)
    monkeypatch.setattr(readers, "read", lambda *a, **k: {}["x"])
    res = invoke("data", "inspect", FIX / "movielens" / "ml-100k" / "u.data")
    assert res.exit_code == 1 and isinstance(res.exception, KeyError)


def test_inspect_headerless_csv_by_position():
    path = FIX / "generic" / "headerless.csv"
    rows = [ln.split(",") for ln in path.read_text().splitlines()]
    res = invoke("data", "inspect", path, "--format", "csv", "--no-header", "--columns", "user=0,item=1,weight=3",
                 "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["rows"] == len(rows)  # the first line is counted, not taken as a header
    assert (stats["users"], stats["items"]) == (len({r[0] for r in rows}), len({r[1] for r in rows}))
    res = invoke("data", "inspect", path, "--format", "csv")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "looks like data" in res.output and "--no-header" in res.output


def test_sep_option_reads_semicolons(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("uid;pid;x\n1;10;a\n2;11;b\n2;12;c\n")
    res = invoke("data", "inspect", path, "--sep", ";", "--columns", "user=uid,item=pid", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rows"] == 3
