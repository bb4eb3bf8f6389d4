"""Avatar presets, DiffAugment, training, sampling and the CLI on tiny random images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from feedgan.avatars.augment import cutout, diff_augment, parse_policy, translation
from feedgan.avatars.cli import parse_budget
from feedgan.avatars.images import ImageSet
from feedgan.avatars.models import build
from feedgan.avatars.train import AvatarConfig, generate, interpolate, latents, load_generator, sample, train
from feedgan.cli import app

from state_check import assert_same


def tiny_set(n=24, size=16, channels=3, labels=None) -> ImageSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return ImageSet(images=images, names=[f"img{i}.png" for i in range(n)], labels=labels or {}, skipped=[])


FAST = dict(size=16, width=8, batch_size=8, max_steps=3, sample_every=2, checkpoint_every=2, device="cpu")


@pytest.mark.parametrize("preset", ["seed-mlp", "seed-avatar", "dcgan", "modern"])
@pytest.mark.parametrize("size", [16, 32])
def test_every_preset_has_consistent_shapes(preset, size):
    G, D = build(preset, size, 3, z_dim=10, n_classes=2, width=8)
    x = G(torch.randn(5, 12))
    assert x.shape == (5, 3, size, size) and x.abs().max() <= 1.0
    assert D(torch.cat([x, torch.zeros(5, 2, size, size)], 1)).shape == (5,)


def test_seed_avatar_fixes_the_sketch_shapes():
    G, D = build("seed-avatar", 64, 3, z_dim=100)
    assert G.net[-2].out_features == 64 * 64 * 3  # the sketch's G ended in 2 units
    strided = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(strided) == 4 and all(m.stride == (2, 2) for m in strided)  # 64 -> 4, not 14 halvings


def test_bad_size_is_a_clear_error():
    with pytest.raises(ValueError, match="power of two"):
        build("dcgan", 48, 3, z_dim=8)
    with pytest.raises(ValueError, match="unknown preset"):
        AvatarConfig(preset="stylegan9").resolved()


@pytest.mark.parametrize("preset", ["seed-mlp", "seed-avatar", "dcgan", "modern"])
def test_a_few_training_steps_of_each_preset(tmp_path, preset):
    channels = 1 if preset == "seed-mlp" else 3
    run = train(tiny_set(channels=channels), tmp_path / preset,
                AvatarConfig(preset=preset, channels=channels, **FAST))
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["step"] == 3 and np.isfinite(stats[-1]["d_loss"]) and stats[-1]["samples_per_s"] > 0
    assert (run / "samples" / "step-0000002.png").exists() and (run / "samples" / "latest.png").exists()
    images = sample(run, n=5, seed=1)
    assert images.shape == (5, 16, 16, channels) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, sample(run, n=5, seed=1))  # a seed gives the same avatars


def test_budget_stops_training(tmp_path):
    run = train(tiny_set(), tmp_path / "r", AvatarConfig(preset="dcgan", **{**FAST, "max_steps": 1000}, budget_s=0.0))
    assert json.loads((run / "stats.jsonl").read_text().splitlines()[-1])["step"] == 1




def _logged_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]


def test_resume_continues_from_the_checkpoint(tmp_path):
    """Stopped at step 3 and resumed to 5, a run trains only steps 4-5 and ends exactly where an
    uninterrupted 5-step run does: weights, EMA, both optimizers, step and random streams."""
    from safetensors.torch import load_file

    from feedgan.gan.checkpoint import checkpoint_path, load_state

    five = {**FAST, "max_steps": 5}
    whole = train(tiny_set(), tmp_path / "whole", AvatarConfig(preset="modern", **five))
    run = train(tiny_set(), tmp_path / "r", AvatarConfig(preset="modern", **FAST))
    logged = len(_logged_steps(run))
    assert _logged_steps(run)[-1] == 3
    train(tiny_set(), run, AvatarConfig(preset="modern", **five), resume=True)
    assert _logged_steps(run)[logged:] == [4, 5]  # continued from step 3: a fresh run would log 2, 4, 5
    a, b = load_state(checkpoint_path(whole, 5)), load_state(checkpoint_path(run, 5))
    for key in ("step", "skipped", "G", "D", "G_ema", "opt_g", "opt_d", "rng"):
        assert_same(a[key], b[key], key)
    assert_same(load_file(str(whole / "generator.safetensors")), load_file(str(run / "generator.safetensors")))


def test_conditional_run_draws_the_asked_class(tmp_path):
    labels = {"gender": np.array([0, 1] * 12)}
    run = train(tiny_set(labels=labels), tmp_path / "c", AvatarConfig(preset="dcgan", condition="gender", **FAST))
    G, cfg = load_generator(run)
    assert cfg.classes == [0, 1]
    z = latents(cfg, 4, seed=0, label=1)
    assert torch.all(z[:, -2:] == torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="not one of the run's classes"):
        latents(cfg, 4, seed=0, label=7)
    with pytest.raises(ValueError, match="cannot condition on 'age'"):
        train(tiny_set(labels=labels), tmp_path / "d", AvatarConfig(preset="dcgan", condition="age", **FAST))


def test_interpolation_walks_between_two_draws(tmp_path):
    run = train(tiny_set(), tmp_path / "r", AvatarConfig(preset="dcgan", **FAST))
    walk = interpolate(run, steps=5, rows=2, seed=3)
    G, cfg = load_generator(run)
    ends = generate(G, torch.cat([latents(cfg, 2, 3), latents(cfg, 2, 4)]))
    assert walk.shape == (10, 16, 16, 3)
    assert np.abs(walk[[0, 5]].astype(int) - ends[:2]).max() <= 1  # each row starts at the first draw
    assert np.abs(walk[[4, 9]].astype(int) - ends[2:]).max() <= 1  # and ends at the second


def test_translation_shifts_by_whole_pixels_and_cutout_zeros_a_square():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16) + 1.0  # no zeros of its own
    t = translation(x)
    for a, b in zip(x, t):  # each output is the input shifted by some (dy, dx), zero-filled
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if torch.equal(b[:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)],
                               a[:, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)])]
        assert hits
    c = cutout(x)
    zeros = (c[:, 0] == 0).sum((1, 2))
    assert torch.all(zeros <= 64) and torch.all(zeros >= 16)  # an 8x8 square, partly outside at the edges


def test_diff_augment_is_differentiable_and_policy_is_checked():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    diff_augment(x, parse_policy("color,translation,cutout")).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("color,rotate")


def test_parse_budget():
    assert parse_budget("30m") == 1800 and parse_budget("1h30m") == 5400
    assert parse_budget("90s") == 90 and parse_budget("600") == 600 and parse_budget(None) is None
    with pytest.raises(ValueError, match="bad --budget"):
        parse_budget("soon")


def _folder(tmp_path, n=12, size=20):
    rng = np.random.default_rng(1)
    d = tmp_path / "faces"
    d.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{20 + i}_{i % 2}_0_x.png")
    return d


def test_cli_train_sample_interpolate(tmp_path):
    faces = _folder(tmp_path)
    runner = CliRunner()
    args = ["avatars", "train", "--images", str(faces), "--preset", "modern", "--size", "16", "--width", "8",
            "--steps", "2", "--batch-size", "4", "--runs-dir", str(tmp_path / "runs"), "--no-progress",
            "--where", "age>=25", "--condition", "gender"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "runs").iterdir())
    meta = json.loads((run / "avatar.json").read_text())
    assert meta["n_images"] == 7 and meta["config"]["classes"] == [0, 1]  # ages 25..31 kept
    res = runner.invoke(app, ["avatars", "sample", str(run), "-n", "6", "--out", str(tmp_path / "g.png"),
                              "--scale", "1"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "g.png").size == (3 * 18 + 2, 2 * 18 + 2)
    res = runner.invoke(app, ["avatars", "sample", str(run), "-n", "3", "--each", "--out", str(tmp_path / "each")])
    assert res.exit_code == 0 and len(list((tmp_path / "each").glob("*.png"))) == 3
    res = runner.invoke(app, ["avatars", "interpolate", str(run), "--steps", "4", "--rows", "2",
                              "--out", str(tmp_path / "w.png")])
    # scaled up by 7, the smallest whole factor that makes the 74-pixel grid at least 512 wide
    assert res.exit_code == 0 and Image.open(tmp_path / "w.png").size == (7 * (4 * 18 + 2), 7 * (2 * 18 + 2))
    res = runner.invoke(app, ["avatars", "train", "--resume", str(run), "--steps", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "stats.jsonl").read_text().splitlines()[-1])["step"] == 3


@pytest.mark.parametrize("preset", ["seed-mlp", "seed-avatar", "dcgan", "modern"])
def test_cli_trains_every_preset_from_a_tar(tmp_path, preset):
    import tarfile

    faces = _folder(tmp_path, n=6)
    with tarfile.open(tmp_path / "faces.tar", "w") as tar:
        tar.add(faces, arcname="faces")
    res = CliRunner().invoke(app, ["avatars", "train", "--images", str(tmp_path / "faces.tar"), "--preset", preset,
                                   "--size", "16", "--width", "8", "--steps", "2", "--batch-size", "4",
                                   "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "runs").iterdir())
    assert (run / "generator.safetensors").exists() and (run / "samples" / "latest.png").exists()
    assert Image.open(run / "samples" / "latest.png").mode == ("L" if preset == "seed-mlp" else "RGB")


def test_cli_errors_are_one_clear_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["avatars", "train", "--images", str(tmp_path / "nope"), "--no-progress"])
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["avatars", "train", "--images", str(tmp_path), "--budget", "soon"])
    assert res.exit_code == 2 and "bad --budget" in res.output
    res = runner.invoke(app, ["avatars", "sample", str(tmp_path)])
    assert res.exit_code == 2 and "not a finished avatar run" in res.output
    res = runner.invoke(app, ["avatars", "train", "--resume", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2 and "not an avatar run" in res.output
    res = runner.invoke(app, ["avatars", "score", str(tmp_path), "--real", str(tmp_path), "-n", "5"])
    assert res.exit_code == 2 and "at least 20" in res.output
    res = runner.invoke(app, ["avatars", "interpolate", str(tmp_path), "--rows", "0"])
    assert res.exit_code == 2 and "1 row" in res.output


def test_score_images_puts_fakes_next_to_the_floor():
    from feedgan.avatars.scoring import score_images

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    floor = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)  # the same distribution
    dark = (rng.integers(0, 256, (60, 16, 16, 3)) // 4).astype(np.uint8)  # a clearly different one
    s = score_images(dark, real, floor_images=floor, train=floor)
    assert s["fake"]["kid_mean"] > 10 * abs(s["floor"]["kid_mean"])
    assert s["fake"]["fd"] > s["floor"]["fd"] and s["fake"]["swd_mean"] > s["floor"]["swd_mean"]
    assert set(s["memorisation"]) >= {"ratio", "share_closer_to_train"}
    halves = score_images(dark, real)  # no floor set: two halves of real
    assert halves["floor"]["kid_mean"] < halves["fake"]["kid_mean"]


def test_cli_score_writes_json(tmp_path):
    faces = _folder(tmp_path, n=30)
    run = train(tiny_set(), tmp_path / "r", AvatarConfig(preset="dcgan", **FAST),
                source={"path": str(faces)})
    res = CliRunner().invoke(app, ["avatars", "score", str(run), "--real", str(faces), "-n", "30",
                                   "--out", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "s.json").read_text())
    space = out["spaces"]["random-cnn"]
    assert space["n_fake"] == 30 and "kid_mean" in space["floor"] and "memorisation" in space
    res = CliRunner().invoke(app, ["avatars", "score", str(run), "--real", str(faces),
                                   "--inception-weights", str(tmp_path / "missing.pth")])
    assert res.exit_code == 2 and "missing.pth" in res.output
