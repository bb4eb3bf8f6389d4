"""Artifacts under attack: damaged model folders, run folders, checkpoints and stats files.

A damaged artifact gives one error naming the file (never a traceback from json, safetensors or
torch), and one bad run folder never breaks the registry or the service.
"""
import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.data.dataset import Dataset, IdMap, Part

runner = CliRunner()


def small_dataset(n_users=30, n_items=20) -> Dataset:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32))
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    parts = {p: Part({"view": m}) for p, m in (("train", X), ("valid", empty), ("test", X))}
    return Dataset(IdMap(np.arange(100, 100 + n_users), "user"), IdMap(np.arange(n_items), "item"), parts)


@pytest.fixture(scope="module")
def saved_ease(tmp_path_factory):
    from feedgan.rec.baselines import EASE

    folder = tmp_path_factory.mktemp("model") / "ease"
    EASE(l2=5.0).fit(small_dataset()).save(folder)
    return folder


def _edit_json(file, change):
    meta = json.loads(file.read_text())
    change(meta)
    file.write_text(json.dumps(meta))


def _truncate(file, keep=0.5):
    raw = file.read_bytes()
    file.write_bytes(raw[:int(len(raw) * keep)])


# name -> (what it does to a saved EASE folder, the file the error must name, words in the error)
DAMAGE = {
    "corrupt-safetensors": (lambda m: _truncate(m / "model.safetensors"), "model.safetensors", "unreadable"),
    "truncated-json": (lambda m: _truncate(m / "model.json"), "model.json", "not valid JSON"),
    "empty-json": (lambda m: (m / "model.json").write_text(""), "model.json", "empty"),
    "json-list": (lambda m: (m / "model.json").write_text("[1, 2]"), "model.json", "list"),
    "no-model-kind": (lambda m: _edit_json(m / "model.json", lambda d: d.pop("model")), "model.json", '"model"'),
    "unknown-kind": (lambda m: _edit_json(m / "model.json", lambda d: d.update(model="ease9000")), "model.json",
                     "ease9000"),
    "swapped-kind": (lambda m: _edit_json(m / "model.json", lambda d: d.update(model="itemknn")), "model.json",
                     "no hyperparameter 'l2'"),
    "path-as-l2": (lambda m: _edit_json(m / "model.json", lambda d: d["params"].update(l2="../../etc/passwd")),
                   "model.json", "l2 must be a number"),
    "bool-as-l2": (lambda m: _edit_json(m / "model.json", lambda d: d["params"].update(l2=True)), "model.json",
                   "l2 must be a number"),
    "bad-shape": (lambda m: _edit_json(m / "model.json", lambda d: d.update(shape=[10 ** 12, 20])),
                  "model.safetensors", "shape"),
    "bad-aux": (lambda m: _edit_json(m / "model.json", lambda d: d.update(aux={"view": [1]})), "model.json", "aux"),
}
# damage the header check cannot see: it shows when the weights are loaded and one user is scored
LOAD_DAMAGE = {
    "swapped-kind-same-params": (lambda m: _edit_json(m / "model.json", lambda d: d.update(model="most-popular",
                                                                                          params={})),
                                 "model.safetensors", "most-popular"),
    "indices-out-of-range": (lambda m: _rewrite_arrays(m, lambda a: a.update({"train.indices": a["train.indices"]
                                                                             + 10 ** 6})),
                             "model.safetensors", "out of range"),
}


def _rewrite_arrays(folder, change):
    from safetensors.numpy import load_file, save_file

    arrays = dict(load_file(str(folder / "model.safetensors")))
    change(arrays)
    save_file(arrays, str(folder / "model.safetensors"))


def _damaged_copy(saved, dest, how):
    shutil.copytree(saved, dest)
    how(dest)
    return dest


@pytest.mark.parametrize("name", [*DAMAGE, *LOAD_DAMAGE])
def test_a_damaged_model_folder_fails_to_load_with_one_error_naming_the_file(saved_ease, tmp_path, name):
    from feedgan.io import ArtifactError
    from feedgan.rec.base import Recommender

    how, file, words = {**DAMAGE, **LOAD_DAMAGE}[name]
    folder = _damaged_copy(saved_ease, tmp_path / "m", how)
    with pytest.raises(ArtifactError) as err:
        Recommender.load(folder)
    message = str(err.value)
    assert str(folder / file) in message and words in message and "\n" not in message


def test_every_truncation_of_model_json_is_refused_cleanly(saved_ease, tmp_path):
    from feedgan.io import ArtifactError
    from feedgan.rec.base import Recommender

    raw = (saved_ease / "model.json").read_bytes()
    folder = _damaged_copy(saved_ease, tmp_path / "m", lambda m: None)
    for cut in range(0, len(raw), 7):
        (folder / "model.json").write_bytes(raw[:cut])
        with pytest.raises(ArtifactError, match="model.json"):
            Recommender.load(folder)


def _registry_root(saved, root, damages):
    """``00001-good`` plus one run per damage, in order."""
    shutil.copytree(saved, root / "00001-good" / "models" / "ease")
    for k, (name, (how, _, _)) in enumerate(damages.items(), start=2):
        _damaged_copy(saved, root / f"{k:05d}-{name}" / "models" / "ease", how)
    return root


def test_a_bad_run_folder_never_breaks_the_registry(saved_ease, tmp_path):
    from feedgan.serve.registry import Registry, UnknownModelError

    root = _registry_root(saved_ease, tmp_path / "runs", DAMAGE)
    (root / "00001-good" / "metrics.json").write_text("[]")  # metrics of the wrong shape are only not shown
    reg = Registry(root)
    assert [e.name for e in reg.entries()] == ["00001-good"]
    broken = {b["run"].split("-", 1)[1]: b["reason"] for b in reg.broken}
    assert set(broken) == set(DAMAGE)
    for name, (_, file, words) in DAMAGE.items():
        assert str(tmp_path) not in broken[name]  # no absolute paths
        assert file in broken[name] and words in broken[name], (name, broken[name])
    with pytest.raises(UnknownModelError, match="is broken: .*unreadable"):
        reg.resolve("00002-corrupt-safetensors")
    assert reg.load("ease").entry.name == "00001-good"


def test_a_model_that_fails_to_load_is_moved_to_broken(saved_ease, tmp_path):
    from feedgan.serve.registry import Registry, UnknownModelError

    root = _registry_root(saved_ease, tmp_path / "runs", LOAD_DAMAGE)
    reg = Registry(root)
    assert len(reg.entries()) == 3 and reg.broken == []  # the header check passes
    with pytest.raises(UnknownModelError, match="is broken: .*most-popular"):
        reg.load("00002-swapped-kind-same-params")
    assert "00002-swapped-kind-same-params" not in [e.name for e in reg.entries()]  # and stays out on a rescan
    assert [b["run"] for b in reg.broken] == ["00002-swapped-kind-same-params"]
    shutil.rmtree(root / "00002-swapped-kind-same-params" / "models" / "ease")  # a retrained model is tried again
    shutil.copytree(saved_ease, root / "00002-swapped-kind-same-params" / "models" / "ease")
    assert reg.load("00002-swapped-kind-same-params").model.l2 == 5.0 and reg.broken == []


def test_the_service_starts_past_broken_runs_and_lists_them(saved_ease, tmp_path):
    from test_serve import Server

    damages = {"late-broken": LOAD_DAMAGE["swapped-kind-same-params"], **DAMAGE}
    root = tmp_path / "runs"
    _damaged_copy(saved_ease, root / "00000-late-broken" / "models" / "ease", damages["late-broken"][0])
    _registry_root(saved_ease, root, DAMAGE)
    server = Server(root, tmp_path / "feed.db")  # the newest runs are broken: the newest good one serves
    try:
        status, body = server.call("GET", "/models")
        assert status == 200 and body["active"] == "00001-good"
        assert {b["run"] for b in body["broken"]} == {f"{k:05d}-{n}" for k, n in enumerate(DAMAGE, start=2)}
        status, body = server.call("POST", "/models/00000-late-broken/activate")
        assert status == 404 and "is broken" in body["error"] and "most-popular" in body["error"]
        status, body = server.call("POST", "/models/00003-truncated-json/activate")
        assert status == 404 and "not valid JSON" in body["error"]
        assert server.call("GET", "/users/101/recommendations")[1]["model"] == "00001-good"
        assert "00000-late-broken" in [b["run"] for b in server.call("GET", "/models")[1]["broken"]]
    finally:
        server.stop()


def test_serve_start_names_the_broken_run_not_the_store(saved_ease, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(saved_ease, root / "00001-good" / "models" / "ease")
    _damaged_copy(saved_ease, root / "00002-late" / "models" / "ease", LOAD_DAMAGE["swapped-kind-same-params"][0])
    res = runner.invoke(app, ["serve", "--registry", str(root), "--db", str(tmp_path / "feed.db")])
    assert res.exit_code == 2, res.output
    assert "00002-late" in res.output and "is broken" in res.output and "feed.db" not in res.output


def _bench_like_run(saved, folder):
    small_dataset().save(folder / "dataset")
    shutil.copytree(saved, folder / "models" / "ease")
    return folder


@pytest.mark.parametrize("name", ["corrupt-safetensors", "truncated-json", "no-model-kind", "path-as-l2"])
def test_evaluate_names_the_damaged_file(saved_ease, tmp_path, name):
    run = _bench_like_run(saved_ease, tmp_path / "00001-bench")
    assert runner.invoke(app, ["evaluate", str(run)]).exit_code == 0  # intact, it re-scores
    how, file, words = DAMAGE[name]
    how(run / "models" / "ease")
    res = runner.invoke(app, ["evaluate", str(run)])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert file in res.output and words in res.output


def test_stored_hyperparameters_are_checked_by_the_constructors_types():
    from feedgan.params import ParamError, check_params, parse_params
    from feedgan.rec.cfgan import CFGAN

    assert parse_params(CFGAN, {"lr_g": "1e-4", "g_hidden": "400,400", "d_hidden": "[125]", "patience": "none",
                                "adversarial": "false", "epochs": "1e3"}) == \
        {"lr_g": 1e-4, "g_hidden": (400, 400), "d_hidden": (125,), "patience": None, "adversarial": False,
         "epochs": 1000}
    assert check_params(CFGAN, {"g_hidden": [400, 400], "l2": 0}) == {"g_hidden": (400, 400), "l2": 0.0}
    for bad in ({"epochs": "1.5"}, {"g_hidden": "a,b"}, {"adversarial": "maybe"}, {"l2": "nan"}, {"l2": "1e400"}):
        with pytest.raises(ParamError, match=f"{next(iter(bad))} must be"):
            parse_params(CFGAN, bad)
    for bad in ({"epochs": True}, {"epochs": 2.0}, {"g_hidden": [1, "x"]}, {"l2": 10 ** 400}, {"mode": 3}):
        with pytest.raises(ParamError, match=f"{next(iter(bad))} must be"):
            check_params(CFGAN, bad)
    with pytest.raises(ParamError, match="has no hyperparameter 'lr'"):
        check_params(CFGAN, {"lr": 1.0})


# -- avatar runs: damaged files, resume, checkpoints ----------------------------------------------------
def tiny_images(n=16, size=16):
    from feedgan.avatars.images import ImageSet

    pixels = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return ImageSet(images=pixels, names=[f"img{i}.png" for i in range(n)])


def tiny_config(**kw):
    from feedgan.avatars.train import AvatarConfig

    base = dict(preset="dcgan", size=16, width=8, batch_size=4, max_steps=3, sample_every=1, checkpoint_every=1,
                device="cpu")
    return AvatarConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def avatar_run(tmp_path_factory):
    from feedgan.avatars.train import train

    return train(tiny_images(), tmp_path_factory.mktemp("avatars") / "run", tiny_config())


def _steps(run):
    return [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]


AVATAR_DAMAGE = {
    "truncated-avatar-json": (lambda r: _truncate(r / "avatar.json"), "avatar.json", "not valid JSON"),
    "no-config": (lambda r: _edit_json(r / "avatar.json", lambda d: d.pop("config")), "avatar.json", '"config"'),
    "path-as-size": (lambda r: _edit_json(r / "avatar.json", lambda d: d["config"].update(size="../../etc")),
                     "avatar.json", "size must be an integer"),
    "unknown-preset": (lambda r: _edit_json(r / "avatar.json", lambda d: d["config"].update(preset="gan9000")),
                       "avatar.json", "unknown preset"),
    "swapped-preset": (lambda r: _edit_json(r / "avatar.json", lambda d: d["config"].update(preset="modern")),
                       "generator.safetensors", "does not fit the modern generator"),
    "corrupt-weights": (lambda r: _truncate(r / "generator.safetensors"), "generator.safetensors", "unreadable"),
}


@pytest.mark.parametrize("name", AVATAR_DAMAGE)
def test_avatars_sample_names_the_damaged_file(avatar_run, tmp_path, name):
    how, file, words = AVATAR_DAMAGE[name]
    run = _damaged_copy(avatar_run, tmp_path / "run", how)
    res = runner.invoke(app, ["avatars", "sample", str(run), "-n", "2", "--out", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert file in res.output and words in res.output
    assert not (tmp_path / "g.png").exists()


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_cleans_up(avatar_run, tmp_path):
    from feedgan.avatars.train import train
    from feedgan.gan.checkpoint import list_checkpoints, load_state

    run = _damaged_copy(avatar_run, tmp_path / "run", lambda r: None)
    assert [s for s, _ in list_checkpoints(run)] == [1, 2, 3] and _steps(run) == [1, 2, 3]
    _truncate(run / "checkpoints" / "ckpt-00000003.pt")  # killed while the disk was failing
    orphans = [run / "checkpoints" / ".ckpt-00000004.pt.k2j4_x9a.tmp", run / ".stats.jsonl.0abcdefg.tmp",
               run / ".generator.safetensors.zz9xq1w2.tmp"]
    for f in orphans:
        f.write_bytes(b"half a file")
    keep = run / "notes.tmp"  # not something a writer of ours left
    keep.write_text("mine")
    with pytest.warns(UserWarning, match=r"skipping the damaged checkpoint .*ckpt-00000003\.pt"):
        train(tiny_images(), run, tiny_config(max_steps=5), resume=True)
    assert _steps(run) == [1, 2, 3, 4, 5]  # resumed after step 2: its lines 3 and on were written again
    assert load_state(run / "checkpoints" / "ckpt-00000003.pt")["step"] == 3  # rewritten, intact
    assert not any(f.exists() for f in orphans) and keep.exists()


def test_a_torn_last_stats_line_is_dropped_and_other_bad_lines_name_the_file(avatar_run, tmp_path):
    from feedgan.avatars.train import train
    from feedgan.io import ArtifactError

    run = _damaged_copy(avatar_run, tmp_path / "run", lambda r: None)
    with open(run / "stats.jsonl", "a") as fh:
        fh.write('{"step": 4, "d_lo')  # the process died mid-line
    with pytest.warns(UserWarning, match=r"stats\.jsonl, line 4: dropped a torn last line"):
        train(tiny_images(), run, tiny_config(max_steps=4), resume=True)
    assert _steps(run) == [1, 2, 3, 4]
    lines = (run / "stats.jsonl").read_text().splitlines()
    (run / "stats.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ArtifactError, match=r"stats\.jsonl: line 2 is not a stats record"):
        train(tiny_images(), run, tiny_config(max_steps=5), resume=True)


def test_a_run_killed_before_its_first_checkpoint_starts_again(avatar_run, tmp_path):
    from feedgan.avatars.train import train

    run = _damaged_copy(avatar_run, tmp_path / "run", lambda r: shutil.rmtree(r / "checkpoints"))
    with pytest.warns(UserWarning, match="no checkpoint yet"):
        train(tiny_images(), run, tiny_config(max_steps=2), resume=True)
    assert _steps(run) == [1, 2]  # not the killed attempt's lines followed by a second step 1


def _faces(folder, n=8):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_avatars_cli_checkpoint_every(tmp_path):
    from feedgan.gan.checkpoint import list_checkpoints

    args = ["avatars", "train", "--images", str(_faces(tmp_path / "faces")), "--preset", "dcgan", "--size", "16",
            "--width", "8", "--batch-size", "4", "--steps", "3", "--checkpoint-every", "1", "--no-progress",
            "--runs-dir", str(tmp_path / "runs")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "runs").iterdir())
    assert [s for s, _ in list_checkpoints(run)] == [1, 2, 3]
    assert json.loads((run / "avatar.json").read_text())["config"]["checkpoint_every"] == 1


def test_a_nan_before_the_first_checkpoint_is_one_clear_line(tmp_path, monkeypatch):
    from feedgan.avatars.train import AvatarTask

    monkeypatch.setattr(AvatarTask, "d_input", lambda self, x, batch: x * float("nan"))
    res = runner.invoke(app, ["avatars", "train", "--images", str(_faces(tmp_path / "faces")), "--preset", "dcgan",
                              "--size", "16", "--width", "8", "--batch-size", "4", "--steps", "3", "--no-progress",
                              "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "non-finite" in res.output and "step 1" in res.output and "restored" in res.output
