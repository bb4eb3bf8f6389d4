"""``feedgan moderate scan``: the review queue, report and summary it writes, on small generated logs."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.data.readers import read
from feedgan.moderation.detect import pca_varselect, profile_features
from test_cli_inputs import one_error_line

runner = CliRunner()
REASON = re.compile(r"^(?P<name>.+)=(?P<value>\S+) \(z=(?P<z>[+-]\d+\.\d+)\)$")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])




@pytest.fixture(scope="module")
def sim_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "log.csv"
    res = invoke("data", "simulate", "--users", 150, "--items", 120, "--out", path)
    assert res.exit_code == 0, res.output
    return path


@pytest.fixture(scope="module")
def rated_log(tmp_path_factory):
    """300 users rating 10-40 of 200 items near each item's quality (1-5 stars), with timestamps."""
    rng = np.random.default_rng(0)
    pop = rng.zipf(1.6, 200).astype(float)
    quality = rng.normal(3.5, 0.8, 200)
    parts = []
    for u in range(300):
        items = rng.choice(200, size=int(rng.integers(10, 40)), replace=False, p=pop / pop.sum())
        stars = np.clip(np.rint(quality[items] + rng.normal(0, 0.3) + rng.normal(0, 0.5, len(items))), 1, 5)
        parts.append(pd.DataFrame({"user": u, "item": items, "rating": stars,
                                   "timestamp": 1_600_000_000 + rng.integers(0, 10 ** 7, len(items))}))
    path = tmp_path_factory.mktemp("rated") / "ratings.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path


def test_scan_writes_an_ordered_queue_with_real_reasons(sim_log, tmp_path):
    res = invoke("moderate", "scan", sim_log, "--detector", "anomaly", "--out", tmp_path / "scan", "--top", 7)
    assert res.exit_code == 0, res.output
    folder = tmp_path / "scan"
    assert {p.name for p in folder.iterdir()} == {"queue.csv", "report.html", "scan.json"}
    queue = pd.read_csv(folder / "queue.csv")
    features = profile_features(read(sim_log))
    assert sorted(queue["user"]) == sorted(features.index) and queue["user"].is_unique
    assert (np.diff(queue["score"]) <= 0).all() and list(queue["rank"]) == list(range(1, len(queue) + 1))

    z = (features - features.mean()) / features.std(ddof=0).replace(0, np.nan)
    absz = z.fillna(0).abs()
    for row in queue.head(20).itertuples():
        parsed = [REASON.match(getattr(row, f"reason_{j}")) for j in (1, 2, 3)]
        assert all(parsed), row
        names = [m["name"] for m in parsed]
        assert set(names) <= set(features.columns) and len(set(names)) == 3
        # the three named features are the user's three largest |z|, largest first
        top3 = np.sort(absz.loc[row.user].to_numpy())[::-1][:3]
        assert np.allclose([abs(float(m["z"])) for m in parsed], top3, atol=0.006), (row, top3)
        assert np.isclose(float(parsed[0]["value"]), features.loc[row.user, names[0]], rtol=1e-3, atol=1e-6)

    summary = json.loads((folder / "scan.json").read_text())
    assert summary["detector"] == "anomaly" and summary["users"] == len(features) and summary["seconds"] >= 0
    assert "metrics" not in summary and "injected" not in queue
    page = (folder / "report.html").read_text()
    assert "<img" in page and "Top 7 users" in page and str(queue["user"][6]) in page
    assert f"#1 {queue['user'][0]} " in res.output       # the top users are printed


def test_pca_scan_in_a_new_run_folder_scores_like_the_library(sim_log, tmp_path):
    res = invoke("moderate", "scan", sim_log, "--detector", "pca-varselect", "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 0, res.output
    folder = tmp_path / "runs" / "00001-moderate"
    queue = pd.read_csv(folder / "queue.csv").set_index("user")
    expected = pca_varselect(read(sim_log))
    assert np.allclose(queue["score"].reindex(expected.index), expected.to_numpy())
    assert json.loads((folder / "scan.json").read_text())["detector"] == "pca-varselect"


def test_injected_random_attack_ranks_high(rated_log, tmp_path):
    res = invoke("moderate", "scan", rated_log, "-d", "anomaly", "--inject", "random", "--size", 0.05,
                 "--out", tmp_path)
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "scan.json").read_text())
    queue = pd.read_csv(tmp_path / "queue.csv")
    assert summary["attack"]["fake_users"] == 15 == queue["injected"].sum()
    assert summary["users"] == 315 == len(queue)
    assert summary["metrics"]["roc_auc"] > 0.7, summary["metrics"]
    assert queue["rank"][queue["injected"] == 1].median() < len(queue) / 4
    assert "ROC-AUC" in res.output and "Detection of the injected attack" in (tmp_path / "report.html").read_text()


def test_bad_input_is_one_line_and_leaves_nothing(sim_log, tmp_path):
    runs = tmp_path / "runs"
    one_error_line(invoke("moderate", "scan", tmp_path / "absent.csv", "-d", "anomaly", "--runs-dir", runs),
                   "absent.csv")
    one_error_line(invoke("moderate", "scan", sim_log, "-d", "lof", "--runs-dir", runs), "--detector", "anomaly")
    one_error_line(invoke("moderate", "scan", sim_log, "-d", "anomaly", "--inject", "sybil", "--runs-dir", runs),
                   "sybil")
    assert not runs.exists()
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    one_error_line(invoke("moderate", "scan", sim_log, "-d", "anomaly", "--out", taken), "taken.txt", "folder")
    assert taken.read_text() == "keep me"
