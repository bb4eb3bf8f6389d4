"""Avatar inputs at the edges: sprite sheets for scoring, single images, wrong tile sizes, grid scaling,
help texts that match the presets, and the steps a preset needs before its scores mean much."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from feedgan.avatars.grid import make_grid, save_grid
from feedgan.avatars.images import ImageDataError, load_images
from feedgan.avatars.train import PRESETS, AvatarConfig, train
from feedgan.cli import app

from test_avatar_train import FAST, tiny_set


def sprite_sheet(cols: int, rows: int, cell: int, filled: int | None = None, seed: int = 0) -> np.ndarray:
    """(rows * cell, cols * cell, 3) uint8: white background, a noisy sprite in each of the first ``filled``
    cells (default all), each inside a random margin of 1 to 4 pixels, like a packed sprite sheet."""
    rng = np.random.default_rng(seed)
    sheet = np.full((rows * cell, cols * cell, 3), 255, dtype=np.uint8)
    for i in range(cols * rows if filled is None else filled):
        r, c = divmod(i, cols)
        top, left, bottom, right = rng.integers(1, 5, 4)
        y0, x0 = r * cell + top, c * cell + left
        h, w = cell - top - bottom, cell - left - right
        sheet[y0:y0 + h, x0:x0 + w] = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
    return sheet


def save(pixels: np.ndarray, path) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A dcgan run of 3 steps on 16x16 images."""
    return train(tiny_set(), tmp_path_factory.mktemp("edges") / "run", AvatarConfig(preset="dcgan", **FAST))


# ----------------------------------------------------------------------------------------------- score --sheet

def test_score_takes_a_sprite_sheet_for_the_real_images(short_run, tmp_path):
    sheet = save(sprite_sheet(6, 5, 16), tmp_path / "real.png")
    out = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["avatars", "score", str(short_run), "--real", sheet, "--sheet", "16x16",
                                   "-n", "30", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["spaces"]["random-cnn"]["n_real"] == 30  # all 30 tiles
    res = CliRunner().invoke(app, ["avatars", "score", str(short_run), "--real", sheet, "-n", "30"])
    assert res.exit_code == 2 and "one image" in res.output and "--sheet" in res.output


# ----------------------------------------------------------------------------------------------- train on one image

def test_train_refuses_a_single_image_without_sheet(tmp_path):
    one = save(sprite_sheet(4, 4, 16), tmp_path / "sheet.png")
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["avatars", "train", "--images", one, "--size", "16", "--steps", "1",
                                   "--runs-dir", str(runs), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "holds one image" in res.output and "--sheet WxH" in res.output
    assert not runs.exists() or not any(runs.iterdir())  # no run folder left behind
    folder = tmp_path / "one"
    folder.mkdir()
    save(sprite_sheet(1, 1, 16), folder / "a.png")
    res = CliRunner().invoke(app, ["avatars", "train", "--images", str(folder), "--size", "16", "--steps", "1",
                                   "--runs-dir", str(runs), "--no-progress"])
    assert res.exit_code == 2 and "1 image" in res.output, res.output


def test_train_warns_about_a_small_set(tmp_path):
    sheet = save(sprite_sheet(4, 4, 16), tmp_path / "sheet.png")
    res = CliRunner().invoke(app, ["avatars", "train", "--images", sheet, "--sheet", "16x16", "--size", "16",
                                   "--width", "8", "--steps", "1", "--batch-size", "4", "--preset", "dcgan",
                                   "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "16 images is few" in res.output


# ----------------------------------------------------------------------------------------------- tile sizes

def test_a_tile_that_does_not_divide_the_sheet_names_the_sizes_that_do(tmp_path):
    sheet = save(sprite_sheet(2, 2, 24), tmp_path / "s.png")  # 48x48
    with pytest.raises(ImageDataError) as err:
        load_images(sheet, size=16, sheet="25x25")
    message = str(err.value)
    assert "48x48" in message and "25x25" in message and "24x24" in message and "48x48 tile" not in message


def test_a_misaligned_tile_that_divides_the_sheet_is_refused(tmp_path):
    sheet = save(sprite_sheet(25, 25, 24), tmp_path / "grid24.png")  # 600x600: 25 divides it too
    with pytest.raises(ImageDataError) as err:
        load_images(sheet, size=16, sheet="25x25")
    assert "cut through" in str(err.value) and "24x24" in str(err.value)
    with pytest.raises(ImageDataError, match="a 24x24 grid"):  # 48x48 fits too, but 24x24 is the grid
        load_images(sheet, size=16, sheet="40x40")
    assert len(load_images(sheet, size=16, sheet="24x24")) == 625  # the right grid loads
    assert len(load_images(sheet, size=16, sheet="120x120")) == 25  # so does a multiple of it (5x5 sprites)


def test_photos_without_a_background_are_not_taken_for_misaligned(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert len(load_images(save(noise, tmp_path / "n.png"), size=8, sheet="16x16")) == 16


def test_a_sheet_of_mostly_blank_tiles_is_refused(tmp_path):
    pixels = np.full((32, 32, 3), 255, dtype=np.uint8)
    rng = np.random.default_rng(0)
    for k in range(4):  # the diagonal of a 4x4 grid of 8x8 tiles; the last tile is filled, so none is padding
        pixels[8 * k:8 * k + 8, 8 * k:8 * k + 8] = rng.integers(0, 200, (8, 8, 3), dtype=np.uint8)
    with pytest.raises(ImageDataError) as err:
        load_images(save(pixels, tmp_path / "d.png"), size=8, sheet="8x8")
    assert "12 of 16" in str(err.value) and "blank" in str(err.value)


def test_padding_at_the_end_of_a_sheet_is_dropped_with_a_note(tmp_path):
    pixels = np.full((4 * 16 + 5, 3 * 16, 3), 255, dtype=np.uint8)  # 4 rows of 16x16 tiles, 5 px of margin
    pixels[:64] = sprite_sheet(3, 4, 16, filled=5)  # the last 7 tiles are empty
    data = load_images(save(pixels, tmp_path / "p.png"), size=16, sheet="16x16")
    assert len(data) == 5
    assert any("5 empty pixel rows" in line for line in data.skipped)
    assert any("7 blank tiles at the end" in line for line in data.skipped)


def test_a_non_empty_margin_is_still_an_error(tmp_path):
    pixels = np.zeros((37, 32, 3), dtype=np.uint8)
    pixels[:32] = sprite_sheet(2, 2, 16)
    pixels[33, 3] = 200  # something in the 5 px strip below the tiles
    with pytest.raises(ImageDataError, match="32x37"):
        load_images(save(pixels, tmp_path / "m.png"), size=16, sheet="16x16")


# ----------------------------------------------------------------------------------------------- grids

def test_grids_are_scaled_up_by_a_whole_factor(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    raw = make_grid(images)
    assert raw.shape[1] == 274  # 8 columns of 32 px and 2 px gaps
    path = save_grid(images, tmp_path / "g.png")
    scaled = np.asarray(Image.open(path))
    factor = scaled.shape[1] // raw.shape[1]
    assert scaled.shape[1] >= 512 and scaled.shape[:2] == (raw.shape[0] * factor, raw.shape[1] * factor)
    np.testing.assert_array_equal(scaled[::factor, ::factor], raw)  # nearest neighbour: every pixel a block
    raw_file = np.asarray(Image.open(save_grid(images, tmp_path / "raw.png", scale=1)))
    np.testing.assert_array_equal(raw_file, raw)


def test_cli_sample_scale_and_training_grids(short_run, tmp_path):
    latest = Image.open(short_run / "samples" / "latest.png")
    assert latest.size[0] >= 512  # 64 samples of 16 px: 146 px raw
    res = CliRunner().invoke(app, ["avatars", "sample", str(short_run), "-n", "4", "--out", str(tmp_path / "a.png"),
                                   "--scale", "1"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "a.png").size == (2 * 18 + 2, 2 * 18 + 2)
    res = CliRunner().invoke(app, ["avatars", "sample", str(short_run), "-n", "4", "--out", str(tmp_path / "b.png")])
    assert res.exit_code == 0 and Image.open(tmp_path / "b.png").size[0] >= 512, res.output


# ----------------------------------------------------------------------------------------------- help and steps

def test_help_says_what_the_presets_do():
    from feedgan.avatars.cli import PRESET_HELP, avatars_app
    from feedgan.avatars.train import SCORE_AFTER_STEPS

    assert "64x64 faces" not in avatars_app.info.help
    for name, preset in PRESETS.items():
        size = f"{preset['size']}x{preset['size']}"
        assert size in avatars_app.info.help
        line = next(part for part in PRESET_HELP.split("; ") if part.startswith(name))
        assert size in line and f"{SCORE_AFTER_STEPS[name]:,}" in line


def test_a_size_the_preset_cannot_draw_is_refused_before_a_run_folder(tmp_path):
    sheet = save(sprite_sheet(5, 5, 16), tmp_path / "s.png")
    runs = tmp_path / "runs"
    base = ["avatars", "train", "--images", sheet, "--sheet", "16x16", "--steps", "1", "--runs-dir", str(runs),
            "--no-progress"]
    res = CliRunner().invoke(app, base + ["--size", "48", "--preset", "dcgan"])
    assert res.exit_code == 2 and "--size" in res.output and "power of two" in res.output, res.output
    assert not runs.exists() or not any(runs.iterdir())
    res = CliRunner().invoke(app, base + ["--size", "20", "--preset", "seed-mlp", "--batch-size", "4"])
    assert res.exit_code == 0, res.output  # the dense preset draws any size


def test_score_notes_a_run_too_short_to_score(short_run, tmp_path):
    from feedgan.avatars.train import SCORE_AFTER_STEPS

    faces = save(sprite_sheet(6, 5, 16), tmp_path / "real.png")
    res = CliRunner().invoke(app, ["avatars", "score", str(short_run), "--real", faces, "--sheet", "16x16",
                                   "-n", "30"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "trained 3 steps" in text and f"about {SCORE_AFTER_STEPS['dcgan']:,} steps" in text
