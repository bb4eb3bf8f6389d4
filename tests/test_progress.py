"""Progress in a log: plain lines off a terminal (bench, train), silence on request, and what the
demo's GAN rows really are."""
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedgan import progress as progress_mod
from feedgan.cli import app
from feedgan.demo import model_label

FIX = Path(__file__).parent / "fixtures"
runner = CliRunner()
DATA = ["--data", str(FIX / "lightgcn"), "--format", "lightgcn", "--split", "predefined"]


@pytest.fixture
def lines_every_time(monkeypatch):
    """Progress on (as for a user), every line printed (no throttling)."""
    monkeypatch.delenv("FEEDGAN_NO_PROGRESS", raising=False)
    monkeypatch.delenv("FEEDGAN_PROGRESS", raising=False)
    monkeypatch.setattr(progress_mod, "LINE_EVERY_S", 0.0)


def test_bench_off_a_terminal_prints_a_line_per_setting_and_per_model(tmp_path, lines_every_time):
    res = runner.invoke(app, ["bench", *DATA, "--models", "most-popular,ease", "--seeds", "1", "--max-trials", "2",
                              "--ks", "1,2", "--metric", "ndcg@2", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for model in ("most-popular", "ease"):
        tried = re.findall(rf"^tune {model}: (\d+)/(\d+), best valid ndcg@2 [\d.]+, [\d.]+s$", res.output, re.M)
        assert tried and tried[-1][0] == tried[-1][1], res.output  # the last line: every setting tried
        scored = r"[\d,]+ users scored \([\d,]+ skipped: no held-out items\)"
        assert re.search(rf"^{model}: ndcg@2 [\d.]+ ± [\d.]+ over 1 run, {scored}, [\d.]+s \(params .*\)$",
                         res.output, re.M)


def test_train_off_a_terminal_prints_a_line_per_epoch_with_the_validation_score(tmp_path, lines_every_time):
    res = runner.invoke(app, ["train", "easegan", *DATA, "-p", "l2=5", "-p", "epochs=3", "-p", "eval_every=1",
                              "-p", "batch_size=8", "-p", "patience=10", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    ticks = re.findall(r"^(?:GAN|fit).*: (\d+)/(\d+), valid ([\d.]+), [\d.]+s(?:, eta \d+s)?$", res.output, re.M)
    assert [int(done) for done, _, _ in ticks] == list(range(1, int(ticks[-1][1]) + 1)), res.output
    assert re.search(r"^evaluate easegan on valid: \d+/\d+, [\d.]+s$", res.output, re.M)
    assert re.search(r"^chosen on validation: epochs=\d+$", res.output, re.M)


def test_line_progress_is_throttled_but_keeps_the_last_line(capsys):
    prog = progress_mod.LineProgress(every_s=3600)
    task = prog.add_task("fit x", total=4)
    for _ in range(4):
        prog.update(task, advance=1, valid=0.5)
    assert re.fullmatch(r"fit x: 4/4, valid 0\.5000, [\d.]+s\n", capsys.readouterr().err)


def test_no_progress_env_silences_training(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDGAN_NO_PROGRESS", "1")
    monkeypatch.setattr(progress_mod, "LINE_EVERY_S", 0.0)
    res = runner.invoke(app, ["train", "easegan", *DATA, "-p", "l2=5", "-p", "epochs=2", "-p", "eval_every=1",
                              "-p", "batch_size=8", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "fit easegan:" not in res.output and "evaluate " not in res.output


def _row(model, *epochs):
    return {"model": model, "params": {"l2": 5.0, "epochs": epochs[0]},
            "params_by_seed": [{"l2": 5.0, "epochs": e} for e in epochs]}


def test_demo_labels_a_gan_whose_adversarial_training_validation_switched_off():
    assert model_label(_row("easegan", 0, 0)) == "easegan (= ease: adversarial training switched off by validation)"
    assert model_label(_row("easegan", 0, 4)) == \
        "easegan (adversarial training switched off by validation on 1 of 2 seeds)"
    assert model_label(_row("easegan", 4, 2)) == "easegan"
    assert model_label(_row("cfgan", 3, 3)) == "cfgan"
    assert model_label({"model": "ease", "params": {"l2": 5.0}}) == "ease"
