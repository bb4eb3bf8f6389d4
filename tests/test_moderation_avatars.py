"""Detectors of generated avatars on small generated pictures: smooth coloured blobs are the "real" ones,
the same blobs with a generator-like artefact (a checkerboard, nearest-neighbour up-sampling) the "fakes"."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from feedgan.avatars.images import ImageDataError, load_images
from feedgan.cli import app
from feedgan.moderation.avatars import (AvatarDetector, avatar_metrics, conditions, evaluate, jpeg,
                                        resize_roundtrip, spectrum_features, split, threshold_at_fpr)
from test_cli_inputs import one_error_line

runner = CliRunner()
SIZE = 16


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """uint8 (n, size, size, 3): three soft Gaussian blobs of random colour each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3))
        for _ in range(3):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(2, size / 3)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 1, 3)
        out[i] = np.clip(img / img.max() * 230 + 10, 0, 255)
    return out


def checkerboard(images: np.ndarray, amp: int = 16) -> np.ndarray:
    """The transposed-convolution artefact: +-amp in a one-pixel checkerboard."""
    side = images.shape[1]
    board = ((np.indices((side, side)).sum(0) % 2) * 2 - 1)[None, :, :, None] * amp
    return np.clip(images.astype(int) + board, 0, 255).astype(np.uint8)


def blocky(images: np.ndarray) -> np.ndarray:
    """Nearest-neighbour up-sampling from half resolution: 2x2 blocks of one colour."""
    return images[:, ::2, ::2].repeat(2, 1).repeat(2, 2)


def write_folder(folder, images, fmt="PNG", ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"img-{i:03d}.{ext}", format=fmt)
    return folder


@pytest.mark.parametrize("kind", ["cnn", "spectrum"])
def test_each_detector_separates_a_checkerboard_artefact(kind):
    det = AvatarDetector(kind, seed=0, epochs=4).fit(blobs(300, 0), checkerboard(blobs(300, 1)))
    det.calibrate(blobs(200, 2))
    m = avatar_metrics(det.score(blobs(200, 3)), det.score(checkerboard(blobs(200, 4))), det.threshold)
    assert m["roc_auc"] > 0.9 and m["tpr_at_threshold"] > 0.5, m
    assert m["fpr_at_threshold"] <= 0.05 and m["n_real"] == m["n_fake"] == 200


def test_metrics_per_generator_and_condition_tell_a_seen_artefact_from_no_artefact():
    det = AvatarDetector("spectrum").fit(blobs(300, 0), checkerboard(blobs(300, 1)))
    det.calibrate(blobs(200, 2))
    fakes = {"checker": checkerboard(blobs(150, 4)), "blocky": blocky(blobs(150, 5)), "none": blobs(150, 6)}
    out = evaluate(det, blobs(200, 3), fakes)
    assert set(out) == set(fakes)
    assert all(set(per) == {"clean", "jpeg95", "jpeg75", "jpeg50", "resize12", "resize32"} for per in out.values())
    assert out["checker"]["clean"]["roc_auc"] > 0.95
    assert 0.3 < out["none"]["clean"]["roc_auc"] < 0.7      # the same pictures: nothing to find
    assert out["none"]["clean"]["tpr_at_threshold"] < 0.1
    # shrinking to 12 pixels and back wipes out a one-pixel checkerboard, on real and fake pictures alike
    assert out["checker"]["resize12"]["roc_auc"] < 0.7 and out["checker"]["resize12"]["fpr_at_threshold"] < 0.05
    # an artefact it was not trained on is not found at the threshold
    assert out["blocky"]["clean"]["tpr_at_threshold"] < 0.2


def test_jpeg_and_resize_keep_shape_and_dtype_and_degrade_in_order():
    x = checkerboard(blobs(20, 0))
    err = {}
    for q in (95, 75, 50):
        y = jpeg(x, q)
        assert y.shape == x.shape and y.dtype == np.uint8
        err[q] = np.abs(y.astype(int) - x).mean()
    assert 0 < err[95] < err[75] < err[50]
    down, up = resize_roundtrip(x, 8), resize_roundtrip(x, 32)
    assert down.shape == up.shape == x.shape and down.dtype == up.dtype == np.uint8
    high = lambda im: spectrum_features(im).reshape(len(im), 3, -1)[:, :, -3:].mean()  # the corners' energy
    assert high(down) < high(up) < high(x)
    with pytest.raises(ValueError, match="quality"):
        jpeg(x, 0)
    with pytest.raises(ImageDataError, match=r"uint8 RGB images shaped \(N, S, S, 3\)"):
        jpeg(x.astype(np.float32), 75)


def test_threshold_flags_at_most_the_asked_share_of_real_scores():
    scores = np.random.default_rng(0).normal(size=1000)
    t = threshold_at_fpr(scores, 0.01)
    assert (scores > t).sum() == 10
    assert (scores > threshold_at_fpr(scores[:50], 0.01)).mean() <= 0.02  # 50 scores: none above the max


def test_split_parts_are_disjoint_and_cover_everything():
    parts = split(20, seed=3)
    assert [len(p) for p in parts] == [12, 4, 4]
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))


def test_the_file_format_is_not_what_it_detects(tmp_path):
    """The same distribution of pixels stored as .jpg (real) and as .png (fake): the reader decodes both to
    the same arrays, so the detector is at chance; and one picture scores the same in either format."""
    write_folder(tmp_path / "real", blobs(120, 0), "JPEG", "jpg")       # quality 75, Pillow's default
    write_folder(tmp_path / "fake", jpeg(blobs(120, 1), 75))            # the pixels such a JPEG decodes to
    real = load_images(tmp_path / "real", size=SIZE).images
    fake = load_images(tmp_path / "fake", size=SIZE).images
    det = AvatarDetector("spectrum").fit(real[:80], fake[:80])
    auc = avatar_metrics(det.score(real[80:]), det.score(fake[80:]))["roc_auc"]
    assert 0.25 < auc < 0.75, auc
    same = load_images(write_folder(tmp_path / "as-png", real[:5]), size=SIZE).images
    np.testing.assert_array_equal(det.score(same), det.score(real[:5]))


@pytest.mark.parametrize("kind", ["cnn", "spectrum"])
def test_save_and_load_give_the_same_scores_and_threshold(kind, tmp_path):
    det = AvatarDetector(kind, epochs=1).fit(blobs(64, 0), blocky(blobs(64, 1)))
    det.calibrate(blobs(50, 2))
    back = AvatarDetector.load(det.save(tmp_path / "d.safetensors"))
    x = blobs(10, 3)
    np.testing.assert_allclose(back.score(x), det.score(x))
    assert back.threshold == det.threshold and back.kind == kind and back.size == SIZE


def test_bad_input_gets_one_clear_error(tmp_path):
    det = AvatarDetector("spectrum")
    with pytest.raises(ValueError, match="not trained"):
        det.score(blobs(2, 0))
    with pytest.raises(ImageDataError, match="real images are 16x16 but generated ones are 32x32"):
        det.fit(blobs(10, 0), blobs(10, 1, size=32))
    det.fit(blobs(10, 0), blocky(blobs(10, 1)))
    with pytest.raises(ImageDataError, match="the detector works on 16x16: load them with size=16"):
        det.score(blobs(3, 0, size=32))
    with pytest.raises(ImageDataError, match="no images"):
        det.score(np.zeros((0, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown detector 'svm'"):
        AvatarDetector("svm")
    (tmp_path / "junk.safetensors").write_bytes(b"not a detector")
    with pytest.raises(ValueError, match="junk.safetensors"):
        AvatarDetector.load(tmp_path / "junk.safetensors")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("avatars")
    write_folder(root / "real", blobs(60, 0), "JPEG", "jpg")
    write_folder(root / "gan-a", checkerboard(blobs(60, 1)))
    write_folder(root / "gan-b", blocky(blobs(40, 2)))
    write_folder(root / "uploads", np.concatenate([blobs(5, 3), checkerboard(blobs(5, 4))]))
    return root


def test_cli_trains_reports_per_generator_and_scores_a_folder(folders, tmp_path):
    res = runner.invoke(app, ["moderate", "avatars", "--real", str(folders / "real"), "--fake",
                              str(folders / "gan-a"), "--heldout", str(folders / "gan-b"), "--detector", "spectrum",
                              "--size", str(SIZE), "--score", str(folders / "uploads"), "--out", str(tmp_path / "o"),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert set(report["metrics"]) == {"gan-a", "gan-b"}
    assert report["test"] == {"real": 12, "gan-a": 12, "gan-b": 40}
    assert report["trained_on"] == {"real": 36, "generated": 36, "generator": "gan-a"}
    assert set(report["metrics"]["gan-b"]) == set(conditions(SIZE))
    assert report["metrics"]["gan-a"]["clean"]["roc_auc"] > 0.9
    scores = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert len(scores) == 10 and (np.diff(scores["score"]) <= 0).all()
    assert list(scores["rank"]) == list(range(1, 11)) and set(scores["flagged"]) <= {0, 1}
    det = AvatarDetector.load(tmp_path / "o" / "detector.safetensors")
    uploads = load_images(folders / "uploads", size=SIZE)
    by_name = dict(zip(uploads.names, det.score(uploads.images)))
    np.testing.assert_allclose(scores["score"], [by_name[n] for n in scores["image"]])
    assert det.threshold == report["threshold"]
    assert report["validation"]["n_real"] == report["validation"]["n_fake"] == 12


def test_cli_names_the_empty_folder_and_the_unreadable_file(folders, tmp_path):
    (tmp_path / "empty").mkdir()
    base = ["moderate", "avatars", "--real", str(folders / "real"), "--size", str(SIZE), "--out", str(tmp_path / "o"),
            "--no-progress", "--detector", "spectrum"]
    one_error_line(runner.invoke(app, base + ["--fake", str(tmp_path / "empty")]), f"{tmp_path / 'empty'} is empty")
    bad = write_folder(tmp_path / "bad", blobs(6, 0))
    (bad / "broken.png").write_bytes(b"\x89PNG not really")
    one_error_line(runner.invoke(app, base + ["--fake", str(bad)]), "broken.png", "--skip-bad")
    few = write_folder(tmp_path / "few", blobs(3, 0))
    one_error_line(runner.invoke(app, base + ["--fake", str(few)]), "3 images", "at least 5")
    one_error_line(runner.invoke(app, base + ["--fake", str(folders / "gan-a"), "--detector", "svm"]), "svm")
    twin = write_folder(tmp_path / "other" / "gan-a", blobs(6, 0))
    one_error_line(runner.invoke(app, base + ["--fake", str(folders / "gan-a"), "--heldout", str(twin)]), "'gan-a'")
    assert not (tmp_path / "o").exists()   # nothing written by a failed run
