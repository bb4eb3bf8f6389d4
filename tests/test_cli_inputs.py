"""The command line with real-world inputs: a friend file beside the log, progress of long fits in a log,
paths of the wrong kind, library hints spelled as flags, and how many users a score covers."""
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedgan.cli import app

FIX = Path(__file__).parent / "fixtures"
runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_error_line(res, *needles):
    """Exit 2, one red line, no traceback, and every needle in it."""
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("error:") and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in lines[-1], res.output
    return lines[-1]


@pytest.fixture
def log(tmp_path):
    """Users 1, 2, 3 in a csv log; a tab-separated friend file whose ids sit in columns 0 and 2."""
    path = tmp_path / "log.csv"
    path.write_text("u,i,r\n1,10,5\n2,10,4\n2,11,3\n3,12,5\n")
    friends = tmp_path / "friends.tsv"
    friends.write_text("1\tx\t2\n2\tx\t3\n3\tx\t99\n")  # 99 is not a user of the log
    return path, friends


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A small simulated log and its friend graph, as files."""
    folder = tmp_path_factory.mktemp("sim")
    res = invoke("data", "simulate", "--users", 150, "--items", 120, "--out", folder / "log.csv",
                 "--social-out", folder / "friends.csv")
    assert res.exit_code == 0, res.output
    edges = [ln.split(",") for ln in (folder / "friends.csv").read_text().splitlines()[1:]]
    return folder / "log.csv", folder / "friends.csv", edges


# -- --social -----------------------------------------------------------------------------------------------
def test_inspect_reads_a_friend_file_by_position_and_counts_ids_the_log_lacks(log):
    path, friends = log
    args = ("data", "inspect", path, "--columns", "user=u,item=i,weight=r", "--social", friends,
            "--social-columns", "src=0,dst=2")
    stats = json.loads(invoke(*args, "--json").output)
    assert stats["social_edges"] == 3 and stats["social_only_users"] == 1 and stats["users"] == 3
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert re.search(r"friend edges\s*│\s*3\b", res.output)
    assert re.search(r"friend ids not in the log\s*│\s*1\b", res.output)
    assert "1 friend ids are not users of the log" in res.output


def test_a_friend_file_with_a_header_is_mapped_by_name(tmp_path, log):
    path, _ = log
    friends = tmp_path / "trust.csv"
    friends.write_text("when;trustor;trustee\n7;1;3\n8;3;2\n")
    res = invoke("data", "inspect", path, "--columns", "user=u,item=i,weight=r", "--social", friends,
                 "--social-sep", ";", "--social-columns", "src=trustor,dst=trustee", "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["social_edges"] == 2 and stats["social_only_users"] == 0


@pytest.mark.parametrize("content, extra, needles", [
    ("", (), ["empty"]),
    ("1 2\n3\n", (), ["line 2", "found 1 fields"]),
    ("1,2\n2,3\n", ("--social-columns", "src=a,dst=b"), ["line 1", "no column names", "--social-columns src=0,dst=1"]),
    ("1,2\n2,3\n", ("--social-columns", "src=0,dst=5"), ["position 5", "--social-columns"]),
    ("1,2\n2,3\n", ("--social-columns", "src=0"), ["no dst"]),
])
def test_a_bad_friend_file_is_one_line_naming_it(tmp_path, log, content, extra, needles):
    path, _ = log
    friends = tmp_path / "f.txt"
    friends.write_text(content)
    res = invoke("data", "inspect", path, "--columns", "user=u,item=i,weight=r", "--social", friends, *extra)
    one_error_line(res, str(friends), *needles)


def test_friend_options_without_a_friend_file_are_refused(log):
    res = invoke("data", "inspect", log[0], "--social-sep", ",")
    line = one_error_line(res, "--social")
    assert "social_sep=" not in line


def test_train_keeps_the_friend_graph_in_the_dataset_and_config(sim, tmp_path):
    from feedgan.config import load_yaml
    from feedgan.data.dataset import Dataset

    log_path, friends, edges = sim
    res = invoke("train", "ease", "--data", log_path, "--social", friends, "--target", "like", "--aux", "friends",
                 "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-train-ease"))
    assert Dataset.load(run / "dataset").social.nnz == len({tuple(e) for e in edges})
    assert load_yaml(run / "config.yaml")["data"]["social"] == str(friends)


def test_bench_reads_the_friend_graph(sim, tmp_path):
    log_path, friends, edges = sim
    res = invoke("bench", "--data", log_path, "--social", friends, "--models", "most-popular", "--seeds", 1,
                 "--max-trials", 1, "--runs-dir", tmp_path, "--no-progress")
    assert res.exit_code == 0, res.output
    results = json.loads(next(tmp_path.glob("*-bench/results.json")).read_text())
    assert results["data"]["social_edges"] == len({tuple(e) for e in edges})
    assert results["config"]["social"] == str(friends)


def test_serve_keeps_the_friend_graph_in_the_store(tmp_path, log, monkeypatch):
    import uvicorn

    from feedgan.serve.store import Interaction, Store

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # start up, then return instead of serving
    db = tmp_path / "s.db"
    store = Store(db)
    store.add([Interaction(1, 10), Interaction(2, 10), Interaction(3, 11)])
    store.close()
    (tmp_path / "runs").mkdir()
    args = ("serve", "--registry", tmp_path / "runs", "--db", db, "--social", log[1], "--social-columns", "src=0,dst=2")
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "3 edges (3 new, 3 stored); 1 of 4 friend ids have no stored interactions" in res.output
    res = invoke(*args)  # a second start stores nothing twice
    assert res.exit_code == 0 and "(0 new, 3 stored)" in res.output, res.output
    assert Store(db).social_count() == 3
    bad = tmp_path / "text-ids.csv"
    bad.write_text("src,dst\nann,bob\n")  # text ids in a store of integer ids
    one_error_line(invoke("serve", "--registry", tmp_path / "runs", "--db", db, "--social", bad), "social src")


# -- progress of train in a log -----------------------------------------------------------------------------
def test_train_prints_a_line_per_epoch_with_the_score_and_the_time_left(sim, tmp_path):
    res = invoke("train", "cfgan", "--data", sim[0], "-p", "epochs=3", "-p", "eval_every=1", "-p", "patience=10",
                 "--runs-dir", tmp_path, env={"FEEDGAN_PROGRESS": "lines", "FEEDGAN_NO_PROGRESS": ""})
    assert res.exit_code == 0, res.output
    epochs = re.findall(r"^GAN.*: (\d)/3, valid [\d.]+, [\d.]+s(, eta \d+s)?$", res.output, re.M)
    assert [int(e) for e, _ in epochs] == [1, 2, 3], res.output
    assert all(eta for e, eta in epochs[:-1]) and not epochs[-1][1]  # the time left, while there is some


def test_the_terminal_bar_shows_the_validation_score(monkeypatch):
    import io

    from rich.console import Console

    from feedgan import progress as progress_mod

    screen = io.StringIO()
    monkeypatch.setattr(progress_mod, "_lines_wanted", lambda: False)
    monkeypatch.setattr(progress_mod, "Console", lambda **k: Console(file=screen, force_terminal=True, width=120))
    with progress_mod.progress_bar(True) as prog:
        task = prog.add_task("fit x", total=3)
        prog.update(task, valid=0.25, advance=1)
        prog.refresh()
    assert "valid 0.2500" in screen.getvalue()


def test_train_ease_prints_its_stages_with_seconds(sim, tmp_path):
    res = invoke("train", "ease", "--data", sim[0], "--runs-dir", tmp_path,
                 env={"FEEDGAN_PROGRESS": "lines", "FEEDGAN_NO_PROGRESS": ""})
    assert res.exit_code == 0, res.output
    assert re.search(r"^fit ease: gram X\^T X: (\d+)/\1, [\d.]+s$", res.output, re.M), res.output
    assert re.search(r"^fit ease: solve .*: 1/1, [\d.]+s$", res.output, re.M), res.output


# -- a stopped or failed train leaves no run folder ---------------------------------------------------------
def test_a_fit_that_fails_leaves_no_run_folder(sim, tmp_path, monkeypatch):
    from feedgan.rec.baselines import EASE

    res = invoke("train", "ease", "--data", sim[0], "-p", "l2=-1", "--runs-dir", tmp_path, "--no-progress")
    one_error_line(res, "l2 must be a positive number")

    def boom(self, X, progress=None):
        raise RuntimeError("stopped mid-fit")

    monkeypatch.setattr(EASE, "_fit", boom)
    res = invoke("train", "ease", "--data", sim[0], "--runs-dir", tmp_path, "--no-progress")
    assert isinstance(res.exception, RuntimeError)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# -- paths of the wrong kind, bad hyperparameters -----------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("data", "inspect", "{dir}", "--format", "csv"),
    ("data", "convert", "{dir}", "--format", "csv", "--out", "{tmp}/o.csv"),
    ("data", "convert", FIX / "movielens" / "ml-100k" / "u.data", "--format", "movielens", "--out", "{dir}"),
    ("data", "simulate", "--users", "20", "--items", "20", "--out", "{dir}"),
    ("train", "ease", "--data", "{dir}", "--format", "csv", "--runs-dir", "{tmp}/runs"),
    ("bench", "--data", "{dir}", "--format", "csv", "--runs-dir", "{tmp}/runs"),
    ("train", "ease", "--data", FIX / "lightgcn", "--format", "lightgcn", "--social", "{dir}",
     "--runs-dir", "{tmp}/runs"),
])
def test_a_folder_where_a_file_is_needed_is_one_line(tmp_path, args):
    folder = tmp_path / "a.csv"
    folder.mkdir()
    res = invoke(*[str(a).format(dir=folder, tmp=tmp_path) for a in args])
    line = one_error_line(res, str(folder), "is a folder")
    assert "Errno" not in line and ".tmp" not in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "bench"])
def test_a_file_where_the_runs_folder_goes_is_refused_before_the_fit(tmp_path, monkeypatch, command):
    from feedgan.rec.baselines import EASE

    def no_fit(self, X, progress=None):
        raise AssertionError("fitted before the --runs-dir check")

    monkeypatch.setattr(EASE, "_fit", no_fit)
    blocker = tmp_path / "runs"
    blocker.write_text("")
    model = ("ease",) if command == "train" else ("--models", "ease")
    res = invoke(command, *model, "--data", FIX / "lightgcn", "--format", "lightgcn", "--split", "predefined",
                 "--runs-dir", blocker / "sub", "--no-progress")
    one_error_line(res, "is a file", "--runs-dir")


def test_serve_refuses_a_file_as_its_registry(tmp_path, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # never serve, even where the check is missing
    blocker = tmp_path / "runs"
    blocker.write_text("")
    one_error_line(invoke("serve", "--registry", blocker, "--db", tmp_path / "s.db"), "--registry", "is a file")
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("model, param, needle", [
    ("ease", "l2=abc", "must be a number"),
    ("ease", "l2=-1", "must be a positive number"),
    ("cfgan", "g_hidden=abc", "tuple of integers"),
    ("easegan", "l2=0", "must be a positive number"),
])
def test_a_bad_hyperparameter_value_is_one_line(tmp_path, model, param, needle):
    res = invoke("train", model, "--data", FIX / "lightgcn", "--format", "lightgcn", "--split", "predefined",
                 "-p", param, *(("-p", "epochs=1") if model != "ease" else ()), "--runs-dir", tmp_path / "runs",
                 "--no-progress")
    one_error_line(res, needle)
    assert not (tmp_path / "runs").exists()


# -- library hints spelled as flags -------------------------------------------------------------------------
def test_errors_name_the_flags_not_the_python_keywords(tmp_path):
    res = invoke("data", "inspect", FIX / "movielens" / "ml-100k" / "u.data", "--format", "movielens",
                 "--columns", "user=0")
    line = one_error_line(res, "--columns does not apply", "--columns works with")
    assert "columns=" not in line
    odd = tmp_path / "log.unknown"
    odd.mkdir()
    line = one_error_line(invoke("data", "inspect", odd), "pass --format one of")
    assert "format=" not in line
    line = one_error_line(invoke("data", "inspect", FIX / "movielens" / "ml-100k" / "u.data", "--format",
                                 "movielens", "--sep", ","), "--sep does not apply")
    assert "sep=" not in line.replace("--sep", "")


def test_the_cli_spelling_leaves_keywords_with_values_alone():
    from feedgan.cli import _cli_spelling

    assert _cli_spelling("pass format= one of csv; positive_threshold= and k_core= too") == \
        "pass --format one of csv; --positive-threshold and --k-core too"
    assert _cli_spelling("social_columns= needs social=") == "--social-columns needs --social"
    assert _cli_spelling("split fractions valid=0.5, test=0.6; a format=csv") == \
        "split fractions valid=0.5, test=0.6; a format=csv"
    assert _cli_spelling("fix: save one with Dataset.save") == "fix: save one with `feedgan bench --save-models`"


# -- how many users a score covers --------------------------------------------------------------------------
def test_train_prints_how_many_users_were_scored_and_skipped(sim, tmp_path):
    from feedgan.data.dataset import Dataset

    res = invoke("train", "ease", "--data", sim[0], "--split", "by-user", "--final", "--runs-dir", tmp_path,
                 "--no-progress")
    assert res.exit_code == 0, res.output
    run = next(tmp_path.glob("*-train-ease"))
    ds = Dataset.load(run / "dataset")
    for part in ("valid", "test"):
        scored = int((ds.matrix(part).getnnz(1) > 0).sum())
        assert 0 < scored < ds.n_users
        assert re.search(rf"^{part}: .*\({scored:,} users scored, {ds.n_users - scored:,} skipped: no held-out "
                         r"items\)$", res.output, re.M), res.output
