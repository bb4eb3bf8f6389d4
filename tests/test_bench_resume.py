"""``feedgan bench`` keeps each finished model's rows on disk as it goes, and ``--resume`` finishes
a stopped run without redoing what it has."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.rec.baselines import ItemKNN

FIX = Path(__file__).parent / "fixtures"
DATA = ["--data", str(FIX / "lightgcn"), "--format", "lightgcn", "--split", "predefined"]
SMALL = ["--seeds", "2", "--max-trials", "2", "--ks", "1,2", "--metric", "ndcg@2", "--no-progress"]
runner = CliRunner()


class Stopped(RuntimeError):
    """Stands in for a run killed part way (Ctrl-C, a lost machine)."""


@pytest.fixture
def stopped_run(tmp_path, monkeypatch):
    """A bench run of three models stopped while fitting the third."""
    def boom(self, *a, **k):
        raise Stopped("stopped")

    monkeypatch.setattr(ItemKNN, "fit", boom)
    res = runner.invoke(app, ["bench", *DATA, "--models", "most-popular,ease,itemknn", *SMALL, "--save-models",
                              "--runs-dir", str(tmp_path)])
    assert isinstance(res.exception, Stopped), res.output
    monkeypatch.undo()
    return next(tmp_path.glob("*-bench"))


def test_a_stopped_bench_keeps_the_models_it_finished(stopped_run):
    results = json.loads((stopped_run / "results.json").read_text())
    assert results["complete"] is False and results["models"] == ["most-popular", "ease", "itemknn"]
    assert sorted(r["model"] for r in results["rows"]) == ["ease", "most-popular"]
    assert "2 of 3 models so far" in (stopped_run / "results.md").read_text()
    assert sorted(p.name for p in (stopped_run / "models").iterdir()) == ["ease", "most-popular"]


def test_resume_runs_only_the_missing_models(stopped_run, tmp_path):
    before = json.loads((stopped_run / "results.json").read_text())["rows"]
    res = runner.invoke(app, ["bench", "--resume", str(stopped_run), "--runs-dir", str(tmp_path),
                              "--progress"], env={"FEEDGAN_PROGRESS": "lines"})
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output and "2 of 3 models done (most-popular, ease)" in res.output
    assert re.search(r"^itemknn: ndcg@2 ", res.output, re.M)
    assert not re.search(r"^(ease|most-popular): ndcg@2 ", res.output, re.M)  # not redone
    results = json.loads((stopped_run / "results.json").read_text())
    assert results["complete"] is True and len(results["rows"]) == 3
    kept = {r["model"]: r for r in results["rows"]}
    for row in before:  # the finished rows are kept as they were
        assert kept[row["model"]]["test"] == row["test"]
    assert (stopped_run / "models" / "itemknn" / "model.json").exists()
    assert len(list(tmp_path.glob("*-bench"))) == 1  # no new run folder
    # a complete run is not resumed again
    again = runner.invoke(app, ["bench", "--resume", str(stopped_run), "--runs-dir", str(tmp_path)])
    assert again.exit_code == 2 and "is complete" in again.output


def test_resume_refuses_other_data_and_folders_that_are_not_bench_runs(stopped_run, tmp_path):
    other = runner.invoke(app, ["bench", "--resume", str(stopped_run), "--data", str(FIX / "movielens"),
                                "--runs-dir", str(tmp_path)])
    assert other.exit_code == 2 and "is not the data of" in other.output and "Traceback" not in other.output
    (tmp_path / "00007-demo").mkdir()
    res = runner.invoke(app, ["bench", "--resume", "7", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 2 and "is not a bench run" in res.output


def test_bench_needs_data_or_resume(tmp_path):
    res = runner.invoke(app, ["bench", "--models", "ease", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--data" in res.output


def test_markdown_printed_off_a_terminal_is_never_wrapped(tmp_path):
    res = runner.invoke(app, ["bench", *DATA, "--models", "most-popular,itemknn", *SMALL, "--runs-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    table = [line for line in res.output.splitlines() if line.startswith("|")]
    assert len(table) == 4 and max(map(len, table)) > 120  # wider than the console: still one line per row
    assert all(line.endswith("|") for line in table)


def test_evaluate_without_a_run_takes_the_newest_with_saved_models(tmp_path):
    empty = runner.invoke(app, ["evaluate", "--runs-dir", str(tmp_path)])
    assert empty.exit_code == 2 and "no run under" in empty.output and "--save-models" in empty.output
    for models in ("most-popular", "ease"):
        res = runner.invoke(app, ["bench", *DATA, "--models", models, *SMALL, "--save-models",
                                  "--runs-dir", str(tmp_path)])
        assert res.exit_code == 0, res.output
    runner.invoke(app, ["bench", *DATA, "--models", "itemknn", *SMALL, "--runs-dir", str(tmp_path)])  # no models
    res = runner.invoke(app, ["evaluate", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "00002-bench" in res.output
    assert set(json.loads((tmp_path / "00002-bench" / "evaluate.json").read_text())) == {"ease"}
