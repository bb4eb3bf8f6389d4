"""Image loading for the avatar GANs: every input kind, the conversions, labels, filters and bad inputs.

All images are tiny and generated here with Pillow / numpy.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from feedgan.avatars.images import ImageDataError, ImageSet, load_images, parse_label_name, parse_where

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(colour, size=(12, 12), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def assert_colour(pixels: np.ndarray, colour, tol: int = 2) -> None:
    diff = np.abs(pixels.astype(int) - np.array(colour)).max()
    assert diff <= tol, f"max channel difference {diff} from {colour}"


# ----------------------------------------------------------------------------------------------- input kinds

def test_folder_recursive_sorted_with_non_image_skipped(tmp_path):
    solid(RED).save(tmp_path / "b.png")
    solid(GREEN).save(tmp_path / "a.jpg", quality=95)
    (tmp_path / "sub").mkdir()
    solid(BLUE).save(tmp_path / "sub" / "c.PNG")
    (tmp_path / "README.txt").write_text("where these came from")
    data = load_images(tmp_path, size=8)
    assert isinstance(data, ImageSet) and len(data) == 3
    assert data.images.shape == (3, 8, 8, 3) and data.images.dtype == np.uint8
    assert data.names == ["a.jpg", "b.png", "sub/c.PNG"]
    assert data.skipped == ["README.txt: not an image file"]
    assert data.labels == {}
    assert_colour(data.images[0], GREEN, tol=4)  # JPEG
    assert_colour(data.images[1], RED)
    assert_colour(data.images[2], BLUE)


def test_tar_and_zip_archives(tmp_path):
    members = {"faces/x.png": png_bytes(solid(RED)), "faces/y.png": png_bytes(solid(BLUE)), "SOURCE.md": b"hi"}
    with tarfile.open(tmp_path / "faces.tar.gz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    for archive in ("faces.tar.gz", "faces.zip"):
        data = load_images(tmp_path / archive, size=6)
        assert data.names == ["faces/x.png", "faces/y.png"]
        assert data.skipped == ["SOURCE.md: not an image file"]
        assert data.images.shape == (2, 6, 6, 3)
        assert_colour(data.images[0], RED)
        assert_colour(data.images[1], BLUE)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    array = {"NHWC": nhwc, "NCHW": nhwc.transpose(0, 3, 1, 2), "NHW": nhwc[..., 0]}[layout]
    np.savez(tmp_path / "faces.npz", images=array, labels_smile=np.array([0, 1, 1]))
    data = load_images(tmp_path / "faces.npz", size=8)
    assert data.images.shape == (3, 8, 8, 3)
    assert data.names == ["faces.npz[0]", "faces.npz[1]", "faces.npz[2]"]
    expected = nhwc if layout != "NHW" else np.repeat(nhwc[..., :1], 3, axis=3)
    np.testing.assert_array_equal(data.images, expected)  # same size: no resampling, exact pixels
    np.testing.assert_array_equal(data.labels["smile"], [0, 1, 1])


def test_sprite_sheet_skips_blank_cells(tmp_path):
    sheet = Image.new("RGBA", (3 * 4, 2 * 5), (0, 0, 0, 0))  # 3 columns x 2 rows of 4x5 tiles
    sheet.paste(solid(RED, (4, 5), "RGBA"), (0, 0))
    sheet.paste(solid(BLUE, (4, 5), "RGBA"), (8, 5))
    sheet.putpixel((5, 1), (0, 255, 0, 255))  # one green pixel in tile r0,c1
    for x, y in ((0, 4), (8, 9)):  # a white pixel in the bottom row of the red and blue tiles: not uniform
        sheet.putpixel((x, y), (255, 255, 255, 255))
    sheet.save(tmp_path / "sheet.png")
    data = load_images(tmp_path / "sheet.png", size=4, sheet="4x5")
    assert data.names == ["sheet.png[r0,c0]", "sheet.png[r0,c1]", "sheet.png[r1,c2]"]
    assert len(data.skipped) == 3 and all("blank tile" in s for s in data.skipped)
    assert data.images.shape == (3, 4, 4, 3)
    assert_colour(data.images[0], RED, tol=0)  # 4x5 tile centre-cropped to its top 4 rows: the white pixel goes
    assert_colour(data.images[2], BLUE, tol=0)
    assert tuple(data.images[1, 1, 1]) == GREEN
    assert load_images(tmp_path / "sheet.png", size=4, sheet=(4, 5)).names == data.names


def test_single_image_file(tmp_path):
    solid(RED, (20, 20)).save(tmp_path / "me.webp", lossless=True)
    data = load_images(tmp_path / "me.webp", size=10)
    assert data.names == ["me.webp"] and data.images.shape == (1, 10, 10, 3)
    assert_colour(data.images[0], RED)


# ----------------------------------------------------------------------------------------------- conversions

def test_rgba_composited_over_background(tmp_path):
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent
    image.save(tmp_path / "a.png")
    data = load_images(tmp_path / "a.png", size=8, background=(10, 20, 30))
    assert tuple(data.images[0, 0, 0]) == (10, 20, 30)
    assert tuple(data.images[0, 4, 4]) == RED


def test_palette_transparency_composited(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.save(tmp_path / "p.gif", transparency=0)
    data = load_images(tmp_path / "p.gif", size=8, background=(0, 255, 0))
    assert tuple(data.images[0, 0, 0]) == GREEN and tuple(data.images[0, 5, 5]) == RED


def test_grayscale_expanded_and_kept(tmp_path):
    solid(100, mode="L").save(tmp_path / "gray.png")
    Image.fromarray(np.full((12, 12), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")  # 16-bit
    solid(RED).save(tmp_path / "red.bmp")
    rgb = load_images(tmp_path, size=8)
    assert rgb.images.shape == (3, 8, 8, 3)
    assert_colour(rgb.images[0], (156, 156, 156))  # 40000 / 257
    assert_colour(rgb.images[1], (100, 100, 100))
    gray = load_images(tmp_path, size=8, grayscale=True)
    assert gray.images.shape == (3, 8, 8, 1)
    assert abs(int(gray.images[1, 0, 0, 0]) - 100) <= 2
    assert abs(int(gray.images[2, 0, 0, 0]) - 76) <= 2  # ITU-R 601 luma of pure red


def test_mixed_sizes_and_non_square_centre_crop(tmp_path):
    wide = Image.new("RGB", (30, 10), BLUE)
    wide.paste(solid(RED, (10, 10)), (10, 0))  # red centre square, blue sides
    wide.save(tmp_path / "wide.png")
    solid(GREEN, (3, 3)).save(tmp_path / "tiny.png")  # upscaled
    solid(GREEN, (50, 40)).save(tmp_path / "big.png")
    data = load_images(tmp_path, size=16)
    assert data.images.shape == (3, 16, 16, 3)
    assert data.names == ["big.png", "tiny.png", "wide.png"]
    assert_colour(data.images[0], GREEN)
    assert_colour(data.images[1], GREEN)
    assert_colour(data.images[2], RED)


def test_progress_advanced_once_per_file(tmp_path):
    for i in range(3):
        solid(RED).save(tmp_path / f"{i}.png")

    class Recorder:
        def __init__(self):
            self.total, self.advanced = None, 0

        def add_task(self, description, total=None):
            self.total = total
            return 7

        def advance(self, task_id):
            assert task_id == 7
            self.advanced += 1

    progress = Recorder()
    load_images(tmp_path, size=4, progress=progress, limit=2)
    assert (progress.total, progress.advanced) == (2, 2)


# ----------------------------------------------------------------------------------------------- labels

def test_parse_label_name():
    assert parse_label_name("26_0_2_20170104023102422.jpg.chip.jpg") == {"age": 26, "gender": 0, "race": 2}
    assert parse_label_name("UTKFace/39_1_20170116174525125.jpg.chip.jpg") == {"age": 39, "gender": 1}
    assert parse_label_name("8_1_4.png") == {"age": 8, "gender": 1, "race": 4}
    assert parse_label_name("face_001.png") is None
    assert parse_label_name("2023_01_05.jpg") is None
    assert parse_label_name("42.png") is None


def utk_folder(root: Path) -> Path:
    names = ["10_0_0_20170101000000001.jpg.chip.jpg", "25_1_1_20170101000000002.jpg.chip.jpg",
             "30_1_4_20170101000000003.jpg.chip.jpg", "70_0_2_20170101000000004.jpg.chip.jpg"]
    for i, name in enumerate(names):
        solid((i * 60, 0, 0)).save(root / name, "PNG")  # PNG bytes under a .jpg name: decoded by content
    return root


def test_labels_aligned_with_images(tmp_path):
    data = load_images(utk_folder(tmp_path), size=4)
    assert set(data.labels) == {"age", "gender", "race"}
    assert all(v.dtype == np.int64 and v.shape == (4,) for v in data.labels.values())
    np.testing.assert_array_equal(data.labels["age"], [10, 25, 30, 70])
    np.testing.assert_array_equal(data.images[:, 0, 0, 0], [0, 60, 120, 180])


@pytest.mark.parametrize("expr, ages", [("age>=18", [25, 30, 70]), ("age>=18 and gender==1", [25, 30]),
                                        ("age<30,race!=4", [10, 25]), ("gender == 0 AND age > 50", [70])])
def test_where_keeps_matching_files(tmp_path, expr, ages):
    data = load_images(utk_folder(tmp_path), size=4, where=expr)
    np.testing.assert_array_equal(data.labels["age"], ages)
    assert len(data.names) == len(ages) == len(data.images)


def test_where_filters_before_decoding(tmp_path):
    utk_folder(tmp_path)
    (tmp_path / "5_0_0_broken.jpg").write_bytes(b"not a jpeg")  # filtered out, so never decoded
    assert len(load_images(tmp_path, size=4, where="age>=18")) == 3


def test_parse_where_conditions():
    flt = parse_where("age>=18, race != 4")
    assert flt.conditions == (("age", ">=", 18), ("race", "!=", 4))
    assert flt({"age": 20, "race": 1}) and not flt({"age": 20, "race": 4})


# ----------------------------------------------------------------------------------------------- bad inputs

def test_missing_path(tmp_path):
    with pytest.raises(ImageDataError, match="nope.*does not exist"):
        load_images(tmp_path / "nope")


def test_empty_folder_and_only_non_images(tmp_path):
    with pytest.raises(ImageDataError, match="is empty"):
        load_images(tmp_path)
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    with pytest.raises(ImageDataError, match=r"no images left.*\.DS_Store: not an image file"):
        load_images(tmp_path)


def test_corrupt_image_raises_or_is_skipped(tmp_path):
    solid(RED).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 garbage, not a jpeg")
    with pytest.raises(ImageDataError, match=r"bad\.jpg.*cannot decode.*skip_bad=True.*--skip-bad"):
        load_images(tmp_path, size=4)
    data = load_images(tmp_path, size=4, skip_bad=True)
    assert data.names == ["good.png"]
    assert len(data.skipped) == 1 and data.skipped[0].startswith("bad.jpg: cannot decode")


def test_all_images_corrupt_with_skip_bad(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ImageDataError, match="no images left.*bad.png: cannot decode"):
        load_images(tmp_path, skip_bad=True)


@pytest.mark.parametrize("name", ["faces.tar", "faces.zip"])
def test_unreadable_archive(tmp_path, name):
    (tmp_path / name).write_bytes(b"these bytes are no archive at all" * 20)
    with pytest.raises(ImageDataError, match=rf"archive .*{name}.*corrupt"):
        load_images(tmp_path / name)


def test_npz_float_dtype(tmp_path):
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageDataError, match=r"f\.npz.*dtype float32.*uint8"):
        load_images(tmp_path / "f.npz")


def test_npz_bad_shape(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((2, 4, 4, 2), dtype=np.uint8))
    with pytest.raises(ImageDataError, match=r"s\.npz.*shape \(2, 4, 4, 2\)"):
        load_images(tmp_path / "s.npz")


def test_sheet_not_multiple_of_tile(tmp_path):
    solid(RED, (25, 24)).save(tmp_path / "sheet.png")
    with pytest.raises(ImageDataError, match=r"sheet\.png.*25x24.*not a multiple of the 24x24 tile"):
        load_images(tmp_path / "sheet.png", sheet="24x24")
    with pytest.raises(ImageDataError, match="WIDTHxHEIGHT"):
        load_images(tmp_path / "sheet.png", sheet="24 by 24")


def test_where_on_unlabelled_names(tmp_path):
    solid(RED).save(tmp_path / "alice.png")
    with pytest.raises(ImageDataError, match=r"where='age>=18' needs label 'age'.*alice\.png"):
        load_images(tmp_path, where="age>=18")


@pytest.mark.parametrize("expr, problem", [("age=>18", "cannot parse"), ("height>3", "unknown key 'height'"),
                                           ("age>=18 or gender==1", "cannot parse"), ("", "cannot parse")])
def test_bad_where_syntax(tmp_path, expr, problem):
    with pytest.raises(ImageDataError, match=rf"{problem}.*keys: age, gender, race; operators: >=, <="):
        load_images(utk_folder(tmp_path), where=expr)


def test_where_removing_everything(tmp_path):
    with pytest.raises(ImageDataError, match="where='age>100' removed all 4 images"):
        load_images(utk_folder(tmp_path), where="age>100")


# -- size limits: checked before anything is decoded or read whole --------------------------------------
def _npz_with_header(path: Path, shape: tuple[int, ...], payload: bytes) -> Path:
    """An .npz whose images.npy header claims ``shape`` (uint8) over ``payload``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", header.getvalue() + payload)
    return path


def test_npz_header_claiming_more_than_the_file_holds(tmp_path):
    path = _npz_with_header(tmp_path / "lie.npz", (4000, 4000, 4000), b"\0" * 100)
    with pytest.raises(ImageDataError, match=r"lie\.npz.*claims shape \(4000, 4000, 4000\).*64\.0 GB.*damaged"):
        load_images(path)


def test_npz_above_the_total_limit_and_its_override(tmp_path):
    from feedgan.avatars.images import NO_LIMITS, SizeLimits

    np.savez(tmp_path / "ok.npz", images=np.full((4, 8, 8, 3), 7, dtype=np.uint8))  # 768 bytes of pixels
    with pytest.raises(ImageDataError, match=r"ok\.npz: its arrays hold 768 bytes, above the limit of 500 bytes "
                                             r"\(total_bytes\).*--no-size-limits"):
        load_images(tmp_path / "ok.npz", size=8, limits=SizeLimits(total_bytes=500))
    with pytest.raises(ImageDataError, match=r"each image of 'images' has 64 pixels, above the limit of 10"):
        load_images(tmp_path / "ok.npz", size=8, limits=SizeLimits(pixels=10))
    assert len(load_images(tmp_path / "ok.npz", size=8, limits=NO_LIMITS)) == 4


def test_huge_archive_member_is_refused_from_the_index_without_reading_it(tmp_path):
    import tracemalloc

    class Zeros:  # 300 MB of zeros, streamed into the archive (it compresses to about 1 MB)
        left = 300 << 20

        def read(self, n):
            n = min(n, self.left)
            self.left -= n
            return b"\0" * n

    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("big.png")
        info.size = Zeros.left
        tar.addfile(info, Zeros())
    tracemalloc.start()
    try:
        with pytest.raises(ImageDataError, match=r"member 'big\.png'.*314\.6 MB, above the limit of 268\.4 MB "
                                                 r"\(file_bytes\)"):
            load_images(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20  # the member was never read into memory


def _png_header_only(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` black pixels (tiny on disk, huge decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height, 9))
            + chunk(b"IEND", b""))


def test_image_in_pillows_warning_band_is_refused_from_its_header(tmp_path):
    import warnings

    (tmp_path / "huge.png").write_bytes(_png_header_only(12000, 12000))  # 144 million pixels, 18 kB
    solid(RED).save(tmp_path / "small.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(ImageDataError, match=r"huge\.png: it is 12000x12000 = 144,000,000 pixels, above the "
                                                 r"limit of 50,000,000 pixels \(pixels\).*--skip-bad"):
            load_images(tmp_path, size=8)
        got = load_images(tmp_path, size=8, skip_bad=True)
    assert got.names == ["small.png"] and "huge.png: too large" in got.skipped[0]


def test_pixel_limit_override(tmp_path):
    from feedgan.avatars.images import SizeLimits

    solid(RED, (40, 30)).save(tmp_path / "a.png")
    with pytest.raises(ImageDataError, match=r"40x30 = 1,200 pixels, above the limit of 1,000"):
        load_images(tmp_path / "a.png", size=8, limits=SizeLimits(pixels=1000))
    assert load_images(tmp_path / "a.png", size=8, limits=SizeLimits(pixels=None)).images.shape == (1, 8, 8, 3)
    with pytest.raises(ImageDataError, match=r"the 1 images to load hold .* \(total_bytes\).*--limit"):
        load_images(tmp_path / "a.png", size=8, limits=SizeLimits(total_bytes=10))
