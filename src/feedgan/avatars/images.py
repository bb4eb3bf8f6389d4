"""Load small square images (avatars, faces, sprites) into one uint8 array for GAN training.

Inputs (``path``):

* a folder, searched recursively; files are taken in order of their relative path;
* a ``.tar`` / ``.tar.gz`` / ``.tgz`` / ``.tar.bz2`` / ``.tar.xz`` or ``.zip`` archive of images, read in
  memory in member order (nothing is extracted to disk);
* an ``.npz`` of uint8 arrays: the array ``images`` (or the only array) shaped (N, H, W), (N, H, W, C) or
  (N, C, H, W) with C in 1, 3, 4; arrays ``labels_<key>`` of length N become labels;
* a single image file: one image, or with ``sheet="WxH"`` a sprite sheet cut row by row into tiles of
  W x H pixels; tiles whose pixels are all identical (empty cells) are skipped.

Sprite sheets are checked before they are cut (``content``: pixels more than 12 levels away from the
sheet's most common colour, its background):

* the tile must divide the sheet; an empty margin narrower than a tile at the right or bottom edge is
  dropped with a line in :attr:`ImageSet.skipped`, anything else is an error naming the nearest tile sizes
  that divide the sheet;
* the tile borders must follow the gaps between the pictures: when content lies across the tile borders
  at least half as often as across an average pixel boundary, while another grid that divides the sheet
  has its borders in the gaps (at most a tenth as often), the error names that grid. Sheets that are more
  than 90% content (photos edge to edge) have no gaps to tell, and are not checked;
* blank tiles at the end of the sheet (padding after the last picture) are dropped with one line in
  ``skipped``; if more than half of the other tiles are blank or nearly so (under 2% content), the tile
  size does not match the sheet and it is an error.

Recognised image files: .png .jpg .jpeg .bmp .gif .webp (any case, so ``x.jpg.chip.jpg`` counts). Other
files (README.txt, .DS_Store, ...) and macOS ``._*`` / ``__MACOSX`` metadata are skipped and listed in
:attr:`ImageSet.skipped`.

Conversions (Pillow): EXIF rotation is applied; transparency (RGBA, LA, palette with transparency) is
composited over ``background``; grayscale (1-bit, L, 16-bit) becomes three equal RGB channels, or stays one
channel with ``grayscale=True`` (colour is then converted to L); CMYK and other modes become RGB. 16-bit
values are scaled to 8 bits. Each image is centre-cropped to a square, then resized to ``size`` x ``size``
(LANCZOS when shrinking, BICUBIC when enlarging), so mixed sizes and shapes are fine.

Labels: names such as UTKFace's ``26_0_2_20170104023102422.jpg.chip.jpg`` (age, gender 0 male / 1 female,
race 0-4) are parsed by :func:`parse_label_name`. ``where="age>=18 and gender==1"`` keeps matching images;
it runs on names before any decoding, so filtering a large archive decodes only what is kept.

Size limits (:class:`SizeLimits`, checked before anything is decoded or read whole): the pixels of one image
(from its header; default 50 million, below Pillow's own warning at 89 million), the bytes of one encoded
image file or archive member (256 MiB, from the archive's index), and the bytes of everything read: the
images to decode of an archive or folder, or an .npz's arrays (8 GiB; an .npz header is read first, so a
header that claims more than its file holds is refused at once). ``limits=NO_LIMITS`` (CLI:
``--no-size-limits``) lifts them for files you trust.

Errors: every bad input raises :class:`ImageDataError` (a ``ValueError``) naming the file, archive member or
argument and saying how to fix it: missing path, empty folder, unreadable archive, undecodable or oversized
image (pass ``skip_bad=True`` / ``--skip-bad`` to skip those), npz of the wrong dtype or shape, sheet not a
multiple of the tile, tiles that cut through the pictures or are mostly blank, bad ``where`` expression,
sizes above the limits, or nothing left after skipping and filtering.

Example::

    from feedgan.avatars.images import load_images

    faces = load_images("UTKFace.tar.gz", size=32, where="age>=18,race!=4", limit=5000)
    faces.images.shape          # (5000, 32, 32, 3) uint8
    faces.labels["gender"][:3]  # int64 labels aligned with faces.images and faces.names
"""
from __future__ import annotations

import contextlib
import io
import math
import operator
import re
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
LABEL_KEYS = ("age", "gender", "race")
OPERATORS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}

# What Pillow raises for files it cannot decode (UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
                   NotImplementedError)


class ImageDataError(ValueError):
    """A bad input to :func:`load_images`; the message names the file, member or argument and the fix."""


@dataclass(frozen=True)
class SizeLimits:
    """Caps checked before decoding (None: no cap). ``pixels``: width x height of one image, sheet or .npz
    frame; ``file_bytes``: one encoded image (a file or an archive member); ``total_bytes``: everything to
    read (the images to decode of an archive or folder, or the arrays of an .npz)."""

    pixels: int | None = 50_000_000
    file_bytes: int | None = 256 * 2**20
    total_bytes: int | None = 8 * 2**30

    def check(self, field_name: str, value: int, what: str) -> None:
        """Raise :class:`_TooLarge` when ``value`` is above the cap ``field_name``."""
        cap = getattr(self, field_name)
        if cap is not None and value > cap:
            unit = _pixels if field_name == "pixels" else _bytes
            raise _TooLarge(f"{what} {unit(value)}, above the limit of {unit(cap)} ({field_name}); if you trust "
                            f"the file, pass limits=SizeLimits({field_name}=...) or NO_LIMITS "
                            f"(CLI: --no-size-limits)")


NO_LIMITS = SizeLimits(None, None, None)


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def _pixels(n: int) -> str:
    return f"{n:,} pixels"


@dataclass
class ImageSet:
    """Decoded images with their origins.

    ``images`` is (N, size, size, C) uint8 with C = 3 (RGB) or 1 (``grayscale=True``). ``names[i]`` says
    where image i came from: a relative path, an archive member, ``"faces.npz[17]"`` or
    ``"sheet.png[r2,c5]"`` (0-based row and column). ``labels`` maps each label key present for every image
    to an int64 array of length N ({} when names carry none). ``skipped`` holds ``"name: reason"`` lines.
    """

    images: np.ndarray
    names: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class LabelFilter:
    """A parsed ``where`` expression: every (key, operator, value) condition must hold."""

    expr: str
    conditions: tuple[tuple[str, str, int], ...]

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(key for key, _, _ in self.conditions))

    def __call__(self, labels: Mapping[str, int]) -> bool:
        return all(OPERATORS[op](labels[key], value) for key, op, value in self.conditions)


@dataclass(frozen=True)
class _Item:
    """One image to decode: ``load`` returns its encoded bytes or a ready Pillow image."""

    name: str
    origin: str  # for error messages: a full path, or "archive member 'x.jpg'"
    load: Callable[[], bytes | Image.Image]
    labels: dict[str, int] | None
    size: int | None = None  # bytes ``load`` reads (from the file system or the archive index); None: in memory


class _Undecodable(Exception):
    """Internal: Pillow could not decode an image; the message is Pillow's reason."""


class _TooLarge(Exception):
    """Internal: an image or file above a :class:`SizeLimits` cap; the message says which and the override."""


# ----------------------------------------------------------------------------------------------- labels

_CONDITION = re.compile(r"([A-Za-z_]\w*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+)")
_SEPARATOR = re.compile(r"\s*,\s*|\s+and\s+", re.IGNORECASE)
_LABEL_FIELD = re.compile(r"\d{1,3}")


def parse_label_name(name: str) -> dict[str, int] | None:
    """Labels from a UTKFace-style file name ``<age>_<gender>_<race>_<date>.jpg``, or None.

    Directories are ignored. The leading underscore-separated fields of 1-3 digits are age, gender and race
    (a longer number such as the 17-digit timestamp ends them); names with only two such fields give age and
    gender. ``parse_label_name("26_0_2_20170104023102422.jpg.chip.jpg") == {"age": 26, "gender": 0, "race": 2}``
    """
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]
    values: list[int] = []
    for part in stem.split("_")[:len(LABEL_KEYS)]:
        if not _LABEL_FIELD.fullmatch(part):
            break
        values.append(int(part))
    return dict(zip(LABEL_KEYS, values)) if len(values) >= 2 else None


def parse_where(expr: str) -> LabelFilter:
    """Parse ``"age>=18 and gender==1"`` / ``"age<30,race!=4"`` (comma means and) into a :class:`LabelFilter`.

    Keys: age, gender, race. Operators: >=, <=, ==, !=, >, <. Right-hand sides are integers.
    """
    usage = (f"write KEY OP INTEGER conditions joined by ',' or 'and', e.g. 'age>=18 and gender==1'; "
             f"keys: {', '.join(LABEL_KEYS)}; operators: {', '.join(OPERATORS)}")
    conditions = []
    for part in _SEPARATOR.split(expr.strip()):
        match = _CONDITION.fullmatch(part.strip())
        if match is None:
            raise ImageDataError(f"where={expr!r}: cannot parse {part.strip()!r}; {usage}")
        key, op, value = match.groups()
        if key.lower() not in LABEL_KEYS:
            raise ImageDataError(f"where={expr!r}: unknown key {key!r}; {usage}")
        conditions.append((key.lower(), op, int(value)))
    return LabelFilter(expr, tuple(conditions))


# ----------------------------------------------------------------------------------------------- sources

def _skip_reason(name: str) -> str | None:
    """Why a folder/archive entry is not loaded, or None for an image file."""
    base = name.rsplit("/", 1)[-1]
    if base.startswith("._") or "__MACOSX/" in name:
        return "macOS metadata, not an image"
    if not base.lower().endswith(IMAGE_EXTENSIONS):
        return "not an image file"
    return None


def _triage(entries: Sequence[tuple[str, str, Callable[[], bytes], int]], skipped: list[str]) -> list[_Item]:
    """Turn (name, origin, read, size in bytes) entries into items, listing non-images in ``skipped``."""
    items = []
    for name, origin, read, size in entries:
        reason = _skip_reason(name)
        if reason:
            skipped.append(f"{name}: {reason}")
        else:
            items.append(_Item(name, origin, read, parse_label_name(name), size))
    return items


def _read_file(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ImageDataError(f"{path}: cannot read the file ({exc}); check its permissions") from exc
    return read


def _folder_items(root: Path, skipped: list[str]) -> list[_Item]:
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    return _triage([(rel, str(p), _read_file(p), _file_size(p)) for rel, p in files], skipped)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise ImageDataError(f"{path}: cannot read the file ({exc}); check its permissions") from exc


def _archive_error(path: Path, exc: BaseException, member: str | None = None) -> ImageDataError:
    where = f"member {member!r} of archive {path}" if member else f"archive {path}"
    reason = " ".join(str(exc).split())  # tarfile's messages span several lines
    return ImageDataError(f"cannot read {where} ({type(exc).__name__}: {reason}); the file is corrupt, truncated or "
                          f"not a {_archive_suffix(path)} archive: re-download it or repack the images")


def _archive_suffix(path: Path) -> str:
    name = path.name.lower()
    return next((ext for ext in (*TAR_EXTENSIONS, ".zip") if name.endswith(ext)), "")


def _tar_items(path: Path, stack: contextlib.ExitStack, skipped: list[str]) -> list[_Item]:
    try:
        archive = stack.enter_context(tarfile.open(path, "r:*"))
        members = [m for m in archive.getmembers() if m.isfile()]
    except _ARCHIVE_ERRORS as exc:
        raise _archive_error(path, exc) from exc

    def reader(member: tarfile.TarInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                return archive.extractfile(member).read()
            except _ARCHIVE_ERRORS as exc:
                raise _archive_error(path, exc, member.name) from exc
        return read

    return _triage([(m.name, f"{path} member {m.name!r}", reader(m), m.size) for m in members], skipped)


def _zip_items(path: Path, stack: contextlib.ExitStack, skipped: list[str]) -> list[_Item]:
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
        members = [info for info in archive.infolist() if not info.is_dir()]
    except _ARCHIVE_ERRORS as exc:
        raise _archive_error(path, exc) from exc

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                return archive.read(info)
            except _ARCHIVE_ERRORS as exc:
                raise _archive_error(path, exc, info.filename) from exc
        return read

    # a zip member never yields more than its declared file_size (a larger stream fails its CRC check)
    return _triage([(i.filename, f"{path} member {i.filename!r}", reader(i), i.file_size) for i in members],
                   skipped)


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _npz_arrays(path: Path, limits: SizeLimits) -> dict[str, np.ndarray]:
    """Every array of an .npz, after its .npy headers are checked against the member sizes and the limits."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
            claimed = {info.filename: _npy_bytes(path, archive, info) for info in members}
            try:
                limits.check("total_bytes", sum(claimed.values()), "its arrays hold")
            except _TooLarge as exc:
                raise ImageDataError(f"{path}: {exc}") from None
            arrays = {}
            for info in members:
                with archive.open(info) as fh:
                    arrays[info.filename.removesuffix(".npy")] = np.lib.format.read_array(fh, allow_pickle=False)
            return arrays
    except ImageDataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ImageDataError(f"{path}: cannot read the .npz ({exc}); "
                             f"save it with numpy.savez(path, images=uint8_array)") from exc


def _npy_bytes(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes an .npy member's header says its array holds; more than the member's size is a lie."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in _NPY_HEADERS:
            raise ValueError(f"array {info.filename!r} has .npy format version {version}, not 1.0 or 2.0")
        shape, _, dtype = _NPY_HEADERS[version](fh)
    if dtype.hasobject:
        raise ImageDataError(f"{path}: array {info.filename!r} holds Python objects; save uint8 pixels instead")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > info.file_size:
        raise ImageDataError(f"{path}: array {info.filename!r} claims shape {shape} of {dtype} ({_bytes(claimed)}) "
                             f"but the file holds {_bytes(info.file_size)}; the .npz is damaged: save it again")
    return claimed


def _npz_images(path: Path, arrays: dict[str, np.ndarray], limits: SizeLimits) -> np.ndarray:
    """The image array as (N, H, W) or (N, H, W, C) with C in 1, 3, 4."""
    candidates = [key for key in arrays if not key.startswith("labels_")]
    if "images" in arrays:
        key = "images"
    elif len(candidates) == 1:
        key = candidates[0]
    else:
        raise ImageDataError(f"{path}: expected an array named 'images' or a single array, found {candidates}; "
                             f"save the pictures as numpy.savez(path, images=array)")
    images = arrays[key]
    if images.dtype != np.uint8:
        raise ImageDataError(f"{path}: array {key!r} has dtype {images.dtype}, expected uint8 pixels 0-255; convert "
                             f"it first, e.g. (x * 255).round().clip(0, 255).astype(numpy.uint8) for floats in [0, 1]")
    if images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[3] > 4:
        images = images.transpose(0, 2, 3, 1)  # channel-first -> channel-last
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (3, 4)) or 0 in images.shape[1:]:
        raise ImageDataError(f"{path}: array {key!r} has shape {images.shape}; expected (N, H, W), (N, H, W, C) or "
                             f"(N, C, H, W) with C = 1, 3 or 4")
    try:
        limits.check("pixels", images.shape[1] * images.shape[2], f"each image of {key!r} has")
    except _TooLarge as exc:
        raise ImageDataError(f"{path}: {exc}") from None
    return images


def _npz_labels(path: Path, arrays: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    labels = {}
    for key, values in arrays.items():
        if not key.startswith("labels_"):
            continue
        if values.shape != (n,) or not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
            raise ImageDataError(f"{path}: {key!r} must be a 1-D integer array with one value per image ({n}), "
                                 f"got shape {values.shape} and dtype {values.dtype}")
        labels[key.removeprefix("labels_")] = values.astype(np.int64)
    return labels


def _npz_items(path: Path, limits: SizeLimits) -> list[_Item]:
    arrays = _npz_arrays(path, limits)
    images = _npz_images(path, arrays, limits)
    labels = _npz_labels(path, arrays, len(images))

    def item(i: int) -> _Item:
        name = f"{path.name}[{i}]"
        per_image = {key: int(values[i]) for key, values in labels.items()} or None
        return _Item(name, f"{path}[{i}]", lambda: Image.fromarray(images[i]), per_image)

    return [item(i) for i in range(len(images))]


def _parse_tile(sheet: str | tuple[int, int]) -> tuple[int, int]:
    """``"24x24"`` or ``(24, 24)`` -> (width, height) of one tile in pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", sheet) if isinstance(sheet, str) else None
    if match:
        width, height = int(match[1]), int(match[2])
    elif isinstance(sheet, tuple) and len(sheet) == 2 and all(isinstance(v, int) for v in sheet):
        width, height = sheet
    else:
        raise ImageDataError(f"sheet={sheet!r}: give the tile size as 'WIDTHxHEIGHT' in pixels, e.g. '24x24'")
    if width <= 0 or height <= 0:
        raise ImageDataError(f"sheet={sheet!r}: tile width and height must be positive")
    return width, height


def _sheet_items(path: Path, tile: tuple[int, int], background: tuple[int, int, int], grayscale: bool,
                 limits: SizeLimits, skipped: list[str]) -> list[_Item]:
    """The tiles of a sprite sheet, after the checks of :func:`_trim_margin`, :func:`_check_alignment`
    and :func:`_check_blanks`; blank tiles are listed in ``skipped``."""
    try:
        limits.check("file_bytes", _file_size(path), "the sheet's file is")
        sheet = _decode(_read_file(path)(), background, grayscale, limits)
    except _Undecodable as exc:
        raise ImageDataError(f"{path}: cannot decode the sprite sheet ({exc}); check that it is a valid image"
                             ) from exc
    except _TooLarge as exc:
        raise ImageDataError(f"{path}: {exc}") from None
    pixels = np.asarray(sheet)  # (H, W, 3), or (H, W) with grayscale
    notes: list[str] = []
    content = _content_mask(pixels)
    pixels, content = _trim_margin(path, pixels, content, tile, notes)
    _check_alignment(path, content, tile)
    (tile_w, tile_h), (rows, cols) = tile, (pixels.shape[0] // tile[1], pixels.shape[1] // tile[0])
    cells = [(r, c, pixels[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w])
             for r in range(rows) for c in range(cols)]
    blank = [bool((cell == cell[0, 0]).all()) for _, _, cell in cells]
    used = len(blank) - next((i for i, b in enumerate(reversed(blank)) if not b), len(blank))  # before the padding
    if used < len(cells):
        r, c, _ = cells[used]
        notes.append(f"{path.name}[r{r},c{c}] on: {len(cells) - used} blank tiles at the end of the sheet "
                     f"(padding) dropped")
    _check_blanks(path, content, tile, cells[:used], blank[:used])
    skipped.extend(notes)
    items = []
    for (row, col, cell), is_blank in zip(cells[:used], blank):
        name = f"{path.name}[r{row},c{col}]"
        if is_blank:
            skipped.append(f"{name}: blank tile (every pixel the same colour)")
        else:
            tile_image = Image.fromarray(cell)
            items.append(_Item(name, f"{path} tile r{row},c{col}", lambda im=tile_image: im, None))
    return items


def _trim_margin(path: Path, pixels: np.ndarray, content: np.ndarray, tile: tuple[int, int],
                 notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The sheet and its content mask without an empty (background) margin narrower than a tile at the right
    or bottom edge (noted in ``notes``); any other sheet that is not a whole number of tiles is an error
    naming the tile sizes that fit."""
    (height, width), (tile_w, tile_h) = pixels.shape[:2], tile
    extra_w, extra_h = width % tile_w, height % tile_h
    if not extra_w and not extra_h:
        return pixels, content
    margin = content[:, width - extra_w:].any() or content[height - extra_h:].any()
    if width < tile_w or height < tile_h or margin or not content.any():
        fits = " and ".join(f"{w}x{h}" for w, h in _nearest_tiles(width, height, tile))
        raise ImageDataError(f"{path}: the sheet is {width}x{height} pixels, not a multiple of the {tile_w}x{tile_h} "
                             f"tile; the nearest tile sizes that divide it are {fits}: pass the right sheet='WxH' "
                             f"(CLI: --sheet WxH) or crop the sheet to whole tiles")
    for extra, what in ((extra_w, "columns at the right"), (extra_h, "rows at the bottom")):
        if extra:
            notes.append(f"{path.name}: {extra} empty pixel {what} dropped (narrower than a tile)")
    return pixels[:height - extra_h, :width - extra_w], content[:height - extra_h, :width - extra_w]


def _nearest_tiles(width: int, height: int, tile: tuple[int, int]) -> list[tuple[int, int]]:
    """Up to two tile sizes that divide a ``width`` x ``height`` sheet: the nearest below and above ``tile``."""
    def around(side: int, wanted: int) -> tuple[int, int]:
        divisors = [d for d in range(1, side + 1) if side % d == 0]
        below = max((d for d in divisors if d <= wanted), default=divisors[0])
        above = min((d for d in divisors if d >= wanted), default=divisors[-1])
        return below, above

    (w_lo, w_hi), (h_lo, h_hi) = around(width, tile[0]), around(height, tile[1])
    return list(dict.fromkeys([(w_lo, h_lo), (w_hi, h_hi)]))


# A pixel is content when a channel differs from the sheet's most common colour by more than this (JPEG noise).
_CONTENT_TOLERANCE = 12
# A sheet where fewer pixels than this are background has no gaps between its pictures to check cuts against.
_MAX_CONTENT_SHARE = 0.9
# Cuts "go through" content when content lies on both sides of them at least this often, relative to an
# average column or row boundary; a fitting grid's cuts at most this often.
_MISFIT, _FIT = 0.5, 0.1


def _content_mask(pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels that are not the sheet's background (its most common colour)."""
    flat = pixels.reshape(-1, 1) if pixels.ndim == 2 else pixels.reshape(-1, pixels.shape[2])
    packed = flat.astype(np.int32) @ (256 ** np.arange(flat.shape[1], dtype=np.int32))
    values, counts = np.unique(packed[::max(1, len(packed) // 1_000_000)], return_counts=True)  # a sample suffices
    background = flat[np.flatnonzero(packed == values[counts.argmax()])[0]].astype(np.int16)
    return (np.abs(flat.astype(np.int16) - background) > _CONTENT_TOLERANCE).any(1).reshape(pixels.shape[:2])


def _check_alignment(path: Path, content: np.ndarray, tile: tuple[int, int]) -> None:
    """Refuse tiles whose borders run through the pictures when another grid follows the gaps between them."""
    if content.mean() > _MAX_CONTENT_SHARE:
        return  # no background to tell gaps from pictures
    # crossings[i]: the share of rows with content on both sides of the boundary after column i
    fits = [_grid_fit((content[:, :-1] & content[:, 1:]).mean(0), tile[0]),
            _grid_fit((content[:-1] & content[1:]).mean(1), tile[1])]
    if fits != [None, None]:
        fit_w, fit_h = (f or t for f, t in zip(fits, tile))
        raise ImageDataError(f"{path}: the {tile[0]}x{tile[1]} tiles cut through the pictures (their borders run "
                             f"through content), while a {fit_w}x{fit_h} grid follows the gaps between them: pass "
                             f"sheet='{fit_w}x{fit_h}' (CLI: --sheet {fit_w}x{fit_h}) if that is the sprite size")


def _grid_fit(crossings: np.ndarray, tile: int) -> int | None:
    """For one axis (``crossings`` of the side - 1 boundaries): a tile side whose cuts follow the gaps, when
    ``tile``'s cuts go through content; None when ``tile`` looks right or no side clearly fits better."""
    side = len(crossings) + 1
    average = crossings.mean() if side > 1 else 0.0
    if side // tile < 2 or average * len(crossings) < 1 or crossings[tile - 1::tile].mean() < _MISFIT * average:
        return None
    fitting = [p for p in range(4, side // 3 + 1)  # at least two cuts
               if side % p == 0 and crossings[p - 1::p].mean() <= _FIT * average]
    if not fitting:
        return None
    nearest = min(fitting, key=lambda p: (abs(p - tile), p))
    return min(p for p in fitting if nearest % p == 0)  # the grid itself rather than a multiple of it


def _check_blanks(path: Path, content: np.ndarray, tile: tuple[int, int], cells: list, blank: list[bool]) -> None:
    """Refuse a sheet whose tiles (before any padding at the end) are mostly blank: one colour, or less than
    2% content; a tile size that does not match the sheet's grid."""
    tile_w, tile_h = tile
    near_blank = [b or content[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w].mean() < 0.02
                  for (r, c, _), b in zip(cells, blank)]
    if sum(near_blank) * 2 > len(cells):
        raise ImageDataError(f"{path}: {sum(near_blank)} of {len(cells)} {tile_w}x{tile_h} tiles are blank or nearly "
                             f"so; the tile size probably does not match the sheet's grid: check sheet='WxH' "
                             f"(CLI: --sheet WxH), or crop the sheet to its pictures")


def _list_items(path: Path, sheet, background: tuple[int, int, int], grayscale: bool, limits: SizeLimits,
                stack: contextlib.ExitStack, skipped: list[str]) -> list[_Item]:
    """Every candidate image under ``path`` (nothing decoded yet, except a sprite sheet)."""
    lower = path.name.lower()
    if sheet is not None:
        if not path.is_file():
            raise ImageDataError(f"sheet={sheet!r} needs a single image file, but {path} is a folder")
        return _sheet_items(path, _parse_tile(sheet), background, grayscale, limits, skipped)
    if path.is_dir():
        return _folder_items(path, skipped)
    if lower.endswith(TAR_EXTENSIONS):
        return _tar_items(path, stack, skipped)
    if lower.endswith(".zip"):
        return _zip_items(path, stack, skipped)
    if lower.endswith(".npz"):
        return _npz_items(path, limits)
    if lower.endswith(IMAGE_EXTENSIONS):
        return [_Item(path.name, str(path), _read_file(path), parse_label_name(path.name), _file_size(path))]
    raise ImageDataError(f"{path}: not a folder, archive ({', '.join(TAR_EXTENSIONS)}, .zip), .npz or image file "
                         f"({', '.join(IMAGE_EXTENSIONS)})")


def is_single_image(path: str | Path, sheet=None) -> bool:
    """Whether :func:`load_images` reads ``path`` as one picture: an image file without ``sheet``."""
    path = Path(path)
    return sheet is None and path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS)


# ----------------------------------------------------------------------------------------------- decoding

def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit grayscale (I;16, I, F) as L; values above 255 are taken as 16-bit and scaled down."""
    values = np.asarray(image, dtype=np.float64)
    if values.max(initial=0) > 255:
        values = values / 257
    return Image.fromarray(values.round().clip(0, 255).astype(np.uint8))


def _flatten(image: Image.Image, background: tuple[int, int, int], grayscale: bool) -> Image.Image:
    """Any Pillow mode -> RGB (or L with ``grayscale``), transparency composited over ``background``."""
    if image.has_transparency_data:
        base = Image.new("RGBA", image.size, (*background, 255))
        image = Image.alpha_composite(base, image.convert("RGBA"))
    elif image.mode.startswith(("I", "F")):
        image = _to_8bit_gray(image)
    target = "L" if grayscale else "RGB"
    return image if image.mode == target else image.convert(target)


def _decode(raw: bytes | Image.Image, background: tuple[int, int, int], grayscale: bool,
            limits: SizeLimits) -> Image.Image:
    """Fully decode ``raw`` and flatten it; raises :class:`_Undecodable` with Pillow's reason, or
    :class:`_TooLarge` when the header's width x height is above ``limits.pixels`` (nothing decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the cap that counts is ours
            image = Image.open(io.BytesIO(raw)) if isinstance(raw, bytes) else raw
        width, height = image.size
        limits.check("pixels", width * height, f"it is {width}x{height} =")
        image.load()
        return _flatten(ImageOps.exif_transpose(image), background, grayscale)
    except Image.DecompressionBombError as exc:  # beyond twice Pillow's own cap, whatever ours is
        raise _TooLarge(str(exc)) from exc
    except _PIL_ERRORS as exc:
        raise _Undecodable(f"{type(exc).__name__}: {exc}") from exc


def _square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size`` x ``size``."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side == size:
        return image
    resample = Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC
    return image.resize((size, size), resample)


def _decode_all(items: list[_Item], size: int, background: tuple[int, int, int], grayscale: bool, skip_bad: bool,
                limits: SizeLimits, skipped: list[str], progress) -> tuple[list[np.ndarray], list[_Item]]:
    """Decode items in order; undecodable or oversized ones raise, or are skipped with ``skip_bad``."""
    task = progress.add_task("Decoding images", total=len(items)) if progress is not None else None
    arrays, kept = [], []
    for item in items:
        try:
            if item.size is not None:
                limits.check("file_bytes", item.size, "the file is")
            image = _square(_decode(item.load(), background, grayscale, limits), size)
        except _Undecodable as exc:
            if not skip_bad:
                raise ImageDataError(f"{item.origin}: cannot decode the image ({exc}); remove or replace the file, "
                                     f"or pass skip_bad=True (CLI: --skip-bad) to skip unreadable images") from exc
            skipped.append(f"{item.name}: cannot decode ({exc})")
        except _TooLarge as exc:
            if not skip_bad:
                raise ImageDataError(f"{item.origin}: {exc}; or pass skip_bad=True (CLI: --skip-bad) to skip it"
                                     ) from None
            skipped.append(f"{item.name}: too large ({exc})")
        else:
            pixels = np.asarray(image, dtype=np.uint8)
            arrays.append(pixels[..., None] if grayscale else pixels)
            kept.append(item)
        if task is not None:
            progress.advance(task)
    return arrays, kept


# ----------------------------------------------------------------------------------------------- selection

def _apply_where(items: list[_Item], where: LabelFilter) -> list[_Item]:
    """Items whose labels satisfy ``where``; an item without a needed label is an error."""
    for item in items:
        missing = [key for key in where.keys if item.labels is None or key not in item.labels]
        if missing:
            found = ", ".join(item.labels or {}) or "none"
            raise ImageDataError(
                f"where={where.expr!r} needs label {missing[0]!r}, but {item.origin} has none "
                f"(labels found: {found}); "
                f"file names must start with <age>_<gender>_<race>_ (UTKFace style), an .npz needs labels_<key> "
                f"arrays, or drop the where filter")
    kept = [item for item in items if where(item.labels)]
    if not kept:
        raise ImageDataError(f"where={where.expr!r} removed all {len(items)} images; loosen the filter")
    return kept


def _stack_labels(items: list[_Item]) -> dict[str, np.ndarray]:
    """Int64 arrays for the label keys every item has; {} if any item has none."""
    if not items or any(item.labels is None for item in items):
        return {}
    keys = [key for key in items[0].labels if all(key in item.labels for item in items)]
    return {key: np.array([item.labels[key] for item in items], dtype=np.int64) for key in keys}


def _nothing_left(path: Path, skipped: list[str]) -> ImageDataError:
    if not skipped:
        return ImageDataError(f"{path} is empty: no files to load; add {', '.join(IMAGE_EXTENSIONS)} images")
    shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    return ImageDataError(f"{path}: no images left to load, all {len(skipped)} entries were skipped ({shown}); "
                          f"image files must end in {', '.join(IMAGE_EXTENSIONS)}")


def _check_args(size: int, background, limit: int | None) -> tuple[int, int, int]:
    """Validate the scalar arguments; returns ``background`` as an RGB tuple."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ImageDataError(f"size={size!r}: must be a positive integer (pixels per side)")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ImageDataError(f"limit={limit!r}: must be a positive integer or None")
    rgb = tuple(background) if isinstance(background, (tuple, list)) else ()
    if len(rgb) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in rgb):
        raise ImageDataError(f"background={background!r}: must be an (R, G, B) tuple of integers 0-255")
    return tuple(int(v) for v in rgb)


def load_images(path: str | Path, size: int = 64, *, sheet: str | tuple[int, int] | None = None,
                where: str | None = None, grayscale: bool = False,
                background: tuple[int, int, int] = (255, 255, 255), limit: int | None = None,
                skip_bad: bool = False, limits: SizeLimits = SizeLimits(), progress=None) -> ImageSet:
    """Load a folder, archive, .npz, sprite sheet or single image as ``size`` x ``size`` uint8 images.

    ``sheet``: tile size ``"WxH"`` / ``(w, h)`` to cut a single image file into tiles. ``where``: label filter
    (see :func:`parse_where`), applied to names before decoding. ``grayscale``: one channel instead of RGB.
    ``background``: RGB colour under transparent pixels. ``limit``: keep the first ``limit`` images after
    filtering (counted before decoding, so with ``skip_bad`` fewer may come back). ``skip_bad``: skip
    undecodable or oversized images instead of raising. ``limits``: the :class:`SizeLimits` checked before
    decoding (``NO_LIMITS`` for none). ``progress``: a Rich ``Progress``, advanced once per decoded file.
    Raises :class:`ImageDataError` for any bad input (see the module docstring).
    """
    rgb = _check_args(size, background, limit)
    where_filter = parse_where(where) if where is not None else None
    path = Path(path)
    if not path.exists():
        raise ImageDataError(f"{path} does not exist; give a folder, .tar/.zip archive, .npz or image file")
    skipped: list[str] = []
    with contextlib.ExitStack() as stack:
        items = _list_items(path, sheet, rgb, grayscale, limits, stack, skipped)
        if not items:
            raise _nothing_left(path, skipped)
        if where_filter is not None:
            items = _apply_where(items, where_filter)
        items = items[:limit]
        try:
            limits.check("total_bytes", sum(item.size or 0 for item in items), f"the {len(items)} images to load hold")
        except _TooLarge as exc:
            raise ImageDataError(f"{path}: {exc}; or load fewer with limit=N (CLI: --limit)") from None
        arrays, kept = _decode_all(items, size, rgb, grayscale, skip_bad, limits, skipped, progress)
    if not kept:
        raise _nothing_left(path, skipped)
    return ImageSet(np.stack(arrays), [item.name for item in kept], _stack_labels(kept), skipped)
