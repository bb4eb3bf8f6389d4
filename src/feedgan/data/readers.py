"""Readers: turn interaction logs on disk into a validated :class:`~feedgan.data.schema.Interactions`.

Every reader builds a raw table plus the 1-based file line of each row, then hands both to
:func:`~feedgan.data.schema.validate`, so any problem surfaces as a one-line :class:`DataError`
naming the file, the line and the fix. Formats (``read(path, format)``; ``"auto"`` guesses from the
suffix, a well-known file name or a folder's contents):

Generic tables (``columns`` maps our names user/item/action/timestamp/weight/part to the file's columns, by
name or by 0-based position; columns not mapped or recognised are ignored):
    csv       read("log.csv", columns={"user": "uid", "item": "post_id"})
              read("ratings.csv", "csv", header=False, columns={"user": 0, "item": 1, "weight": 3})
              (``sep`` is any single character or "whitespace"; a header row that looks like data is refused)
    tsv       read("log.tsv")                        # header row, tab-separated
    parquet   read("log.parquet")
              read("log/")                           # a partitioned folder (log/day=3/part-0.parquet)
    jsonl     read("log.jsonl")                      # one JSON object per line
    uir       read("ratings.txt", "uir")             # headerless ``u i r [timestamp]``, any whitespace;
              read("irgan-ml100k-split/", "uir")     # a folder of *train*/*valid*/*test* files sets ``part``
              (alias ``irgan``; IRGAN's tab-separated splits load this way)
Named public formats (rating data sets get action "rate" with weight = rating):
    movielens       read("ml-100k/", "movielens")    # u.data (tab) or ratings.dat (``::``), file or folder
    lastfm-hetrec   read("hetrec2011-lastfm-2k/", "lastfm-hetrec")  # user_artists.dat + user_friends.dat
                    (action "listen", weight = play count; friendships become the social graph)
    lightgcn        read("gowalla/", "lightgcn")     # ``u i i i ...`` lines; folder train/[valid/]test.txt
                    (action "interact", weight 1; a folder sets ``part``, a single file does not)
    multi-behaviour read("tmall-mbcgcn/", "multi-behaviour")  # view/ cart/ buy/ ..., each a lightgcn folder
                    (alias ``mbgcn``; action = sub-folder name lower-cased, ``part`` = the file; ids are
                    shared across behaviours; sub-folders without train.txt are skipped)
    cfgan           read("ML100K.train", "cfgan")    # ``u i r``; reads both X.train and X.test (``part``)
    filmtrust       read("filmtrust/", "filmtrust")  # ratings.txt ``u i r`` + trust.txt ``src dst w``
    ciao, epinions  read("ciao/", "ciao")            # same shape: rating*.txt (first 3 columns) + trust*.txt
    ciao-tang,      read("ciao/", "ciao-tang")       # Tang et al.'s ``user product category rating helpfulness
    epinions-tang                                    # [time]`` lines: the rating is the fourth column
                    (all four: comma- or whitespace-separated, ratings must lie in 1-5, and a rating outside
                    it names the line and the other layout)
    kuairand        read("log_standard_4_08_to_4_21_1k.csv", "kuairand")  # KuaiRand-1K/Pure log_*.csv
                    (every line gives one ``impression`` row, kept as a negative for propensity models, then one
                    row per flag that is 1: is_click->view, is_like->like, is_follow->follow, is_comment->comment,
                    is_forward->share, is_hate->hate, long_view, is_profile_enter->profile; flags must be 0/1;
                    timestamp = time_ms // 1000, else date + hourmin read as Beijing time; play/stay times,
                    is_rand and tab are ignored; lines with no flag are counted as impressions_without_action)
    recbole         read("ml-100k.inter", "recbole") # RecBole atomic file, header ``name:type``

``social=`` adds (or replaces) a user->user edge file: csv/tsv with a ``src,dst`` header, or two or
three whitespace-separated columns ``src dst [weight]`` without one; ``social_columns={"src": 0, "dst": 2}``
(names or positions), ``social_sep`` and ``social_header`` read other layouts. Writers :func:`write_recbole`
and :func:`write_table` go through :mod:`feedgan.io`, so an error mid-write leaves no partial file.

Anything a reader cannot read faithfully is a DataError, never another exception or a silent change: empty or
BOM-only files, NUL bytes, headers wider than MAX_COLUMNS or naming a column twice, data lines wider than the
header, duplicate JSON keys, deep or oversized JSON numbers, lone surrogates, non-UTF-8 parquet strings.
``benchmarks/fuzz.py`` checks this on 10,000 mutated files per format.
"""
from __future__ import annotations

import csv
import io
import json
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from feedgan.data.schema import EXPOSURE, DataError, Interactions, numbers, validate, validate_social
from feedgan.io import atomic_open, atomic_path

OURS = ("user", "item", "action", "timestamp", "weight", "part")
ALIASES = {  # our column -> file column names we recognise (compared lower-case), best first
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid", "post_id", "movieid", "movie_id"),
    "action": ("action",),
    "timestamp": ("timestamp", "ts", "time"),
    "weight": ("weight", "rating"),
    "part": ("part",),
}
# KuaiRand log flag column -> our action. long_view is KuaiRand's own derived watch label (play_time_ms >=
# duration_ms, or >= 18 s for videos longer than 18 s): a genuine, much-used positive signal that a click alone
# does not carry, so it is kept, under its own name, for consumers to pick or leave out.
KUAIRAND_FLAGS = {"is_click": "view", "is_like": "like", "is_follow": "follow", "is_comment": "comment",
                  "is_forward": "share", "is_hate": "hate", "long_view": "long_view", "is_profile_enter": "profile"}
BEIJING_UTC_OFFSET_S = 8 * 3600  # KuaiRand's date/hourmin are Beijing local time (UTC+8, no DST)
EDGE_HEADER_NAMES = {"src", "dst", "source", "target", "user", "user_id", "userid", "friend", "friendid",
                     "friend_id", "trustor", "trustee", "follower", "followee", "from", "to"}
SOCIAL_COLUMNS = ("src", "dst", "weight")  # an edge file's columns, as social column mappings name them
ENCODING_FIX = "pass --encoding latin-1 (or the file's real encoding)"
# An interaction log has a handful of columns; a header far wider is a wrong separator or a corrupt file,
# and refusing it before parsing keeps such a file from costing seconds per read.
MAX_COLUMNS = 1000
STAR_SCALE = (1.0, 5.0)  # Ciao and Epinions ratings: 1 to 5 stars
WHITESPACE = "whitespace"  # the sep name for runs of spaces and tabs
# Written ids that int() reads but that are not plain decimal integers: a leading zero or "-0" (a sign and
# underscores are found by a plain substring test, non-ASCII digits by isascii).
_LEADING_ZERO = re.compile(r"^-?0[0-9]|^-0$", re.MULTILINE)


# ----------------------------------------------------------------------------------------- helpers
def _need(path: Path, what: str = "file or folder") -> Path:
    if not path.exists():
        raise DataError(f"no such {what}", file=path, fix=f"check the path (relative to {Path.cwd()})")
    return path


def _read_text(path: Path, encoding: str) -> str:
    """The whole file as text; empty files and undecodable bytes become DataErrors."""
    if _need(path, "file").is_dir():
        raise DataError("is a folder, and a file is needed here", file=path,
                        fix="pass one of the files inside it (or a format that reads a folder)")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")  # the byte-order mark UTF-16 files start with
        raise DataError(f"byte 0x{raw[err.start]:02x} is not valid {encoding}", file=path,
                        line=raw.count(b"\n", 0, err.start) + 1,
                        fix="the file is UTF-16: pass --encoding utf-16" if utf16 else ENCODING_FIX) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", file=path, fix="use e.g. utf-8 or latin-1") from None
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise DataError("file is empty", file=path, fix="check the path, or re-download the file")
    if (nul := text.find("\x00")) >= 0:
        raise DataError("the file holds a NUL byte (binary data, or UTF-16 text)", file=path,
                        line=text.count("\n", 0, nul) + 1,
                        fix="pass --encoding utf-16 if the file is UTF-16, else re-export it as text")
    return text


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _split(path: Path, text: str, *, sep: str | None = None, fields: tuple[int, int | None] = (3, 3),
           header: bool | str = False) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Split delimited text into columns of strings plus each row's file line.

    ``fields`` is the (min, max) field count; every line must have the same count as most lines.
    ``header="auto"`` skips the first line when its first field is not a number.
    """
    rows, lines = [], []
    for no, raw in enumerate(text.split("\n"), 1):
        s = raw.strip()
        if s:
            rows.append([f.strip() for f in s.split(sep)] if sep else s.split())
            lines.append(no)
    if rows and (header is True or (header == "auto" and not _is_number(rows[0][0]))):
        rows, lines = rows[1:], lines[1:]
    if not rows:
        raise DataError("no data lines (only a header?)", file=path, fix="check the path and the format name")
    n = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    lo, hi = fields
    ok = (n >= lo) & (n <= (hi or n.max()))
    if ok.any():  # the most common allowed count, ties going to the earliest line
        counts, first, freq = np.unique(n[ok], return_index=True, return_counts=True)
        expected = int(counts[np.lexsort((first, -freq))[0]])
        want, bad = f"{expected} like most lines", n != expected
    else:
        want, bad = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}", ~ok
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = text.split("\n")[lines[i] - 1].strip()[:60]
        raise DataError(f"found {n[i]} fields separated by {'whitespace' if sep is None else repr(sep)}, "
                        f"expected {want}: {shown!r}", file=path, line=lines[i], fix="fix or delete that line")
    return list(zip(*rows)), np.asarray(lines, dtype=np.int64)


def _col(values, dtype=np.int64):
    """Tokens -> an int64 array when every token is a plain decimal integer that int64 holds (ids), or a
    float64 array when every token is a number (``dtype=np.float64``); else the tokens as an object array,
    for validate() to read as text or to refuse with a message naming the line."""
    try:
        arr = np.array(values, dtype=dtype)
    except (ValueError, OverflowError):
        return np.array(values, dtype=object)
    if dtype is np.int64 and not _plain_ints(values):
        return np.array(values, dtype=object)
    return arr


def _plain_ints(tokens) -> bool:
    """Whether integer tokens are all written plainly: numpy (like int()) also reads "007", "+7", "1_000" and
    Arabic-Indic digits, which validate() keeps as text ids rather than aliasing 7, 1000 or 123."""
    joined = "\n".join(tokens)
    return joined.isascii() and "+" not in joined and "_" not in joined and not _LEADING_ZERO.search(joined)


def _finish(frame: pd.DataFrame, source: Path, line_of, *, social=None, action: str = "view",
            **notes) -> Interactions:
    inter = validate(frame, social=social, source=source, line_of=line_of, default_action=action)
    inter.notes.update(notes)
    return inter


def _combine(pieces: list[tuple[Interactions, str | None]], source: Path, social=None) -> Interactions:
    """Concatenate separately validated files (each named in its own errors) into one table."""
    frames = [p.frame.assign(part=name) if name else p.frame for p, name in pieces]
    notes: dict = {}
    for p, _ in pieces:
        for k, v in p.notes.items():
            notes[k] = notes.get(k, 0) + v if isinstance(v, (int, float)) else v
    return _finish(pd.concat(frames, ignore_index=True), source, None, social=social, **notes)


def _uir_frame(cols, lines, action: str = "rate") -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame({"user": _col(cols[0]), "item": _col(cols[1]),
                          "weight": _col(cols[2], np.float64), "action": action})
    if len(cols) > 3:
        frame["timestamp"] = _col(cols[3])
    return frame, lines


def _social(social, encoding: str, default=None):
    """The edges ``social`` names: a path (read here), an edge table already read, or None (``default``)."""
    if social is None:
        return default
    return social if isinstance(social, pd.DataFrame) else read_social(social, encoding=encoding)


def _pick(folder: Path, names: tuple[str, ...], globs: tuple[str, ...] = (), required: bool = True):
    """The first of ``names`` in ``folder``, else the single match of ``globs``."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    for pattern in globs:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DataError(f"several files match {pattern}: {[p.name for p in found]}", file=folder,
                            fix="pass the file you mean instead of the folder")
    if required:
        raise DataError(f"no {' or '.join(names + globs)} in this folder", file=folder,
                        fix="pass the folder that holds the data files, or the file itself")
    return None


# ------------------------------------------------------------------------------------ social graph
def read_social(path: str | Path, *, columns: dict[str, str | int] | None = None, sep: str | None = None,
                header: bool | None = None, encoding: str = "utf-8") -> pd.DataFrame:
    """A user->user edge file: csv/tsv with a header naming src/dst, or headerless ``src dst [weight]``.

    ``columns`` maps src / dst / weight to the file's columns by header name or 0-based position (other
    columns are ignored); ``sep`` is one character or "whitespace" (default: tab, comma or whitespace, from
    the first line); ``header`` (default: the first field is a known edge-column name, or ``columns`` names
    columns) says whether the first line holds the column names."""
    path = Path(path)
    text = _read_text(path, encoding)
    first = next(line for line in text.split("\n") if line.strip())  # _read_text refuses blank files
    if sep is None:
        sep = "\t" if "\t" in first else "," if "," in first else None
    elif _check_sep(path, sep) == WHITESPACE:
        sep = None
    names = [f.strip().lower() for f in (first.split(sep) if sep else first.split())]
    by_name = any(isinstance(v, str) for v in (columns or {}).values())
    if by_name and (header is False or all(_is_number(n) for n in names)):
        raise DataError("social columns are mapped by name but the first line holds no column names", file=path,
                        line=1, fix="map them by position, e.g. --social-columns src=0,dst=1")
    if header is None:
        header = by_name or names[0] in EDGE_HEADER_NAMES
    if header:
        _check_header(path, names)
    cols, lines = _split(path, text, sep=sep, fields=(2, None) if columns else (2, 3), header=header)
    at = _edge_columns(path, names if header else [], columns, len(cols))
    edges = pd.DataFrame({"src": _col(cols[at["src"]]), "dst": _col(cols[at["dst"]])})
    if "weight" in at:
        edges["weight"] = _col(cols[at["weight"]], np.float64)
    return validate_social(edges, source=path, line_of=lines)


def _edge_columns(path: Path, names: list[str], columns: dict[str, str | int] | None, width: int) -> dict[str, int]:
    """Position of src, dst and (optionally) weight among the ``width`` fields of an edge file."""
    if not columns:  # src/dst by header name, else the first two; a third column is the weight
        src, dst = (names.index("src"), names.index("dst")) if {"src", "dst"} <= set(names) else (0, 1)
        return {"src": src, "dst": dst, **({"weight": 3 - src - dst} if width > 2 else {})}
    at: dict[str, int] = {}
    for ours, theirs in columns.items():
        if ours not in SOCIAL_COLUMNS:
            raise DataError(f"unknown social column name {ours!r}; ours are {list(SOCIAL_COLUMNS)}", file=path,
                            fix="map ours to the file's columns, e.g. --social-columns src=0,dst=1")
        if isinstance(theirs, int):
            if not 0 <= theirs < width:
                raise DataError(f"column position {theirs} (for {ours}) is out of range: the file has {width} "
                                "columns, numbered from 0", file=path, fix="check the --social-columns positions")
            at[ours] = theirs
        elif str(theirs).strip().lower() in names:
            at[ours] = names.index(str(theirs).strip().lower())
        else:
            raise DataError(f"column {theirs!r} (for {ours}) not found; found {names}", file=path,
                            fix="check the --social-columns mapping against the file's header")
    missing = [c for c in ("src", "dst") if c not in at]
    if missing:
        raise DataError(f"the social column mapping has no {' or '.join(missing)}", file=path,
                        fix="map both ends of an edge, e.g. --social-columns src=0,dst=1")
    return at


# ---------------------------------------------------------------------------------- generic tables
def _map_columns(df: pd.DataFrame, columns: dict[str, str | int] | None, source: Path,
                 header_row: bool = False) -> tuple[pd.DataFrame, str]:
    """Rename the file's columns to ours: the mapping first (names, or 0-based positions), then ALIASES.

    ``header_row``: the names came from the file's first line, which is refused when it looks like data.
    """
    df = df.rename(columns=lambda c: str(c).strip())  # a headerless file's columns are "0", "1", ...
    _check_header(source, list(df.columns))  # " user" and "user" (or two jsonl spellings) are one name now
    rename: dict[str, str] = {}
    columns = dict(columns or {})
    rated = "rating" in columns  # rating=COL: the weight column, read as a rating (action "rate")
    if rated:
        if "weight" in columns:
            raise DataError("the mapping names both rating= and weight=", file=source,
                            fix="map the column once: rating= for a rating, weight= for a count")
        columns["weight"] = columns.pop("rating")
    for ours, theirs in columns.items():
        if ours not in OURS:
            raise DataError(f"unknown column name {ours!r} in the mapping; ours are {[*OURS, 'rating']}",
                            file=source, fix="map our names to yours, e.g. --columns user=uid,item=post_id")
        if isinstance(theirs, int):
            if not 0 <= theirs < len(df.columns):
                raise DataError(f"column position {theirs} (for {ours}) is out of range: the file has "
                                f"{len(df.columns)} columns, numbered from 0", file=source,
                                fix="check the --columns positions against the file")
            theirs = df.columns[theirs]
        elif theirs not in df.columns:
            raise DataError(f"column {theirs!r} (for {ours}) not found; found {list(df.columns)}", file=source,
                            fix="check the --columns mapping against the file's header")
        rename[theirs] = ours
    lower = {c.lower(): c for c in reversed(df.columns)}  # first spelling wins
    for ours, names in ALIASES.items():
        if ours not in rename.values():
            hit = next((lower[n] for n in names if n in lower and lower[n] not in rename), None)
            if hit is not None:
                rename[hit] = ours
    if header_row:
        _check_header_is_names(source, list(df.columns), [k for k, v in rename.items() if v in ("user", "item")])
    keep = [c for c in df.columns if c in rename or c.lower() not in OURS]
    weight_from = next((k for k, v in rename.items() if v == "weight"), "")
    action = "rate" if rated or weight_from.lower() == "rating" else "view"
    return df[keep].rename(columns=rename), action


def _check_header_is_names(path: Path, header: list[str], id_columns: list[str]) -> None:
    """Refuse a first line that looks like data (its user/item fields, or all of it, are numbers): read as a
    header, its row would be lost without a word."""
    looked_at = id_columns or header
    if looked_at and all(_is_number(name) for name in looked_at):
        positions = ",".join(f"{ours}={no}" for no, ours in enumerate(("user", "item", "weight")[:len(header)]))
        raise DataError(f"the first line {','.join(header)!r} looks like data, not column names", file=path, line=1,
                        fix=f"for a file without a header pass --no-header --columns {positions},...")


def _check_header(path: Path, names: list[str]) -> None:
    """Refuse a header wider than MAX_COLUMNS or naming a column twice (else one of the two silently wins)."""
    if len(names) > MAX_COLUMNS:
        raise DataError(f"the header has {len(names):,} columns (at most {MAX_COLUMNS:,} are read)", file=path,
                        line=1, fix="check the separator, or keep only the columns the log needs")
    seen: dict[str, int] = {}
    for no, name in enumerate(names, 1):
        if name in seen and name:
            raise DataError(f"column {name!r} appears twice (columns {seen[name]} and {no})", file=path, line=1,
                            fix="rename or drop one of them")
        seen.setdefault(name, no)


def _first_wider_line(text: str, sep: str, width: int) -> tuple[int, int] | None:
    """(file line, field count) of the first data record with more than ``width`` fields, quotes respected;
    None when there is none. Raises csv.Error where the csv module cannot split the text."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)  # newline="": \r ends a line, as for pandas
    next(reader)
    start = reader.line_num + 1  # a quoted field may span lines: a record starts after the previous one
    for row in reader:
        if len(row) > width:
            return start, len(row)
        start = reader.line_num + 1
    return None


def _check_widths(path: Path, text: str, sep: str, width: int) -> bool:
    """Refuse a data line wider than the header; True when every line is known to fit in ``width`` fields.

    Separators are counted per line with numpy; only when some line has more than ``width - 1`` of them (a
    wider line, or separators inside quotes) does the csv module split the text to find out.
    """
    if len(sep) != 1 or not sep.isascii():
        return False
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    seps = np.flatnonzero(raw == ord(sep))  # byte offsets, sorted
    bounds = np.concatenate(([0], np.flatnonzero(raw == ord("\n")), [len(raw)]))
    if np.diff(np.searchsorted(seps, bounds)).max() <= width - 1:  # separators on each line
        return True
    try:
        wider = _first_wider_line(text, sep, width)
    except csv.Error:  # e.g. a quoted field over the csv module's limit: pandas alone decides
        return False
    if wider:
        raise DataError(f"expected {width} fields separated by {sep!r}, found {wider[1]}", file=path, line=wider[0],
                        fix="fix or delete that line (or pass the right --sep)")
    return True


def _read_delimited(path: Path, text: str, sep: str, header: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """pandas.read_csv with blank lines kept, so row i sits on file line ``line_of[i]``.

    ``sep`` is one character or WHITESPACE; without a ``header`` the columns are numbered 0, 1, ... and the
    first line sets how many fields a line may have.
    """
    first = re.match(r"[^\r\n]*", text).group()
    try:  # the first line alone, as pandas will split it (quotes included)
        names = first.split() if sep == WHITESPACE else next(csv.reader([first], delimiter=sep))
    except (csv.Error, StopIteration) as err:
        raise DataError(f"cannot parse the first line: {err}", file=path, line=1,
                        fix="check the separator") from None
    if header:
        _check_header(path, [h.strip() for h in names])
    # no line wider than the first: pandas reads only its columns (a stray 40,000-field line would otherwise
    # cost it seconds); else it reads them all and the warning below refuses the wider line
    usecols = range(len(names)) if _check_widths(path, text, sep, len(names)) else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", "Length of header", pd.errors.ParserWarning)
            # index_col=False: without it pandas takes the extra leading fields as the index, shifting the data
            df = pd.read_csv(io.StringIO(text), sep=r"\s+" if sep == WHITESPACE else sep, skip_blank_lines=False,
                             index_col=False, usecols=usecols, header=0 if header else None)
    except pd.errors.EmptyDataError:
        raise DataError("no header line", file=path, fix="the first line must name the columns") from None
    except pd.errors.ParserWarning:
        raise DataError(f"a data line has more fields than the header's {len(header)}", file=path,
                        fix="fix or delete that line (or pass the right --sep)") from None
    except pd.errors.ParserError as err:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if not m:
            raise DataError(f"cannot parse: {' '.join(str(err).split())}", file=path,
                            fix="check the separator") from None
        raise DataError(f"expected {m[1]} fields separated by {sep!r}, found {m[3]}", file=path, line=int(m[2]),
                        fix="fix or delete that line (or pass the right --sep)") from None
    blank = df.isna().all(axis=1).to_numpy()
    return df[~blank], np.flatnonzero(~blank) + 1 + header  # +1 for 1-based, +1 for a header


def _parquet_names(path: Path) -> list[str]:
    if path.is_dir():  # a partitioned data set, e.g. day=3/part-0.parquet: the keys become columns
        return pads.dataset(path, format="parquet", partitioning="hive").schema.names
    return pq.read_schema(path).names


def _parquet_table(path: Path):
    if path.is_dir():
        return pads.dataset(path, format="parquet", partitioning="hive").to_table()
    return pq.read_table(path)


def _read_parquet(path: Path) -> pd.DataFrame:
    """A parquet file, or a folder of them, as a DataFrame; its strings are checked to be UTF-8
    (arrow does not check on read)."""
    try:
        names = _parquet_names(path)
    except Exception as err:  # pyarrow raises several types for non-parquet or damaged input
        raise DataError(f"not a readable parquet file ({type(err).__name__})", file=path,
                        fix="check the file, or pass the right format") from None
    _check_header(path, [name.strip() for name in names])
    try:
        table = _parquet_table(path)
        table.validate(full=True)
        frame = table.to_pandas(split_blocks=True, self_destruct=True)  # frees each column once converted
    except Exception as err:
        why = "a string column holds bytes that are not UTF-8" if "UTF8" in str(err) else type(err).__name__
        raise DataError(f"not a readable parquet file ({why})", file=path,
                        fix="check the file, or pass the right format") from None
    del table
    pa.default_memory_pool().release_unused()  # hand arrow's freed buffers back (a GB per 10M rows)
    return frame


def _json_object(path: Path, no: int, raw: str) -> dict:
    """One jsonl line as a dict; duplicate keys and lone surrogates (no UTF-8 text can hold one) are refused."""
    try:
        rec = _JSON.decode(raw)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, >4300-digit integers, deep nesting
        what = err.msg if isinstance(err, json.JSONDecodeError) else (
            "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0])
        raise DataError(f"invalid JSON ({what})", file=path, line=no, fix="each line must be one flat JSON object") \
            from None
    if not isinstance(rec, dict):
        raise DataError("line is not a JSON object", file=path, line=no, fix='write {"user": ..., ...}')
    if "\\u" in raw:  # only an escape can spell a lone surrogate
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError("a string holds a lone UTF-16 surrogate escape (such as \\ud800)", file=path, line=no,
                            fix="write valid Unicode text") from None
    return rec


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json object hook: a key given twice is an error (json.loads would keep the last silently)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {dup!r} appears twice in one object")
    return out


_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)  # built once: json.loads(**kw) builds one per call


def _read_jsonl(path: Path, text: str) -> tuple[pd.DataFrame, np.ndarray]:
    records, lines, keys = [], [], set()
    for no, raw in enumerate(text.split("\n"), 1):
        if raw.strip():
            records.append(_json_object(path, no, raw))
            lines.append(no)
            keys.update(records[-1])
            if len(keys) > MAX_COLUMNS:  # the columns are the union of every line's keys
                raise DataError(f"the lines so far have {len(keys):,} different keys (at most {MAX_COLUMNS:,} "
                                "are read)", file=path, line=no, fix="keep only the fields the log needs")
    return pd.DataFrame.from_records(records), np.asarray(lines)


def _check_sep(path: Path, sep: str) -> str:
    if len(sep) != 1 and sep != WHITESPACE or sep in "\r\n\"":
        raise DataError(f"unusable separator {sep!r}", file=path,
                        fix=f"pass one character (e.g. --sep ';' or --sep '|') or --sep {WHITESPACE}")
    return sep


def read_table(path: str | Path, *, columns: dict[str, str | int] | None = None, social=None,
               sep: str | None = None, header: bool = True, encoding: str = "utf-8",
               kind: str | None = None) -> Interactions:
    """csv / tsv / parquet / jsonl with named columns (``kind`` defaults to the suffix); csv / tsv take a
    ``sep`` and, with ``header=False``, columns mapped by position."""
    path = _need(Path(path))
    kind = kind or {".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                    ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower(), "csv")
    if kind == "parquet":
        df = _read_parquet(path)
        lines = np.arange(1, len(df) + 1)
    elif kind == "jsonl":
        df, lines = _read_jsonl(path, _read_text(path, encoding))
    else:
        sep = _check_sep(path, sep or ("\t" if kind == "tsv" else ","))
        df, lines = _read_delimited(path, _read_text(path, encoding), sep, header)
        if not header and not columns:
            raise DataError("a file without a header needs its columns mapped by position", file=path,
                            fix="pass e.g. --columns user=0,item=1,weight=2")
    frame, action = _map_columns(df, columns, path, header_row=header and kind in ("csv", "tsv"))
    return _finish(frame.reset_index(drop=True), path, lines, social=_social(social, encoding), action=action)


def read_uir(path: str | Path, *, social=None, sep: str | None = None, encoding: str = "utf-8") -> Interactions:
    """Headerless ``user item rating [timestamp]`` lines; a folder of *train*/*valid*/*test* files sets part."""
    path = _need(Path(path))
    if path.is_dir():
        parts = [(p, name) for name in ("train", "valid", "test")
                 if (p := _pick(path, (), (f"*{name}*",), required=name == "train"))]
        pieces = [(read_uir(p, sep=sep, encoding=encoding), name) for p, name in parts]
        return _combine(pieces, path, social=_social(social, encoding))
    cols, lines = _split(path, _read_text(path, encoding), sep=None if sep == WHITESPACE else sep, fields=(3, 4))
    frame, lines = _uir_frame(cols, lines)
    return _finish(frame, path, lines, social=_social(social, encoding))


# --------------------------------------------------------------------------------- named formats
def read_movielens(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """ML-100K ``u.data`` (tab) or ML-1M/10M ``ratings.dat`` (``::``): user item rating timestamp."""
    path = _need(Path(path))
    if path.is_dir():
        path = _pick(path, ("u.data", "ratings.dat"), ("*/u.data", "*/ratings.dat"))
    text = _read_text(path, encoding)
    cols, lines = _split(path, text, sep="::" if "::" in text[:1000] else None, fields=(4, 4))
    frame, lines = _uir_frame(cols, lines)
    return _finish(frame, path, lines, social=_social(social, encoding))


def read_lastfm_hetrec(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """HetRec 2011 Last.fm: user_artists.dat (userID artistID weight) + user_friends.dat as social graph."""
    path = _need(Path(path))
    folder = path if path.is_dir() else path.parent
    plays = _pick(folder, ("user_artists.dat",)) if path.is_dir() else path
    friends = _pick(folder, ("user_friends.dat",), required=False)
    cols, lines = _split(plays, _read_text(plays, encoding), sep="\t", fields=(3, 3), header="auto")
    frame, lines = _uir_frame(cols, lines, action="listen")
    edges = _social(social, encoding, read_social(friends, encoding=encoding) if friends else None)
    return _finish(frame, plays, lines, social=edges)


def read_lightgcn(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """``user item item ...`` per line; a folder with train.txt, test.txt [valid.txt] sets part."""
    path = _need(Path(path))
    if path.is_dir():
        files = [(_pick(path, (f"{part}.txt",), required=part != "valid"), part)
                 for part in ("train", "valid", "test")]
        pieces = [(read_lightgcn(f, encoding=encoding), part) for f, part in files if f is not None]
        return _combine(pieces, path, social=_social(social, encoding))
    users, counts, items, lines, empty = [], [], [], [], 0
    for no, raw in enumerate(_read_text(path, encoding).split("\n"), 1):
        tok = raw.split()
        if len(tok) == 1:
            empty += 1  # a user with no items in this file
        elif tok:
            users.append(tok[0])
            counts.append(len(tok) - 1)
            items.extend(tok[1:])
            lines.append(no)
    frame = pd.DataFrame({"user": np.repeat(_col(users), counts), "item": _col(items)})
    return _finish(frame, path, np.repeat(lines, counts), social=_social(social, encoding), action="interact",
                   users_without_items=empty)


def read_multi_behaviour(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """One lightgcn folder per behaviour (``view/``, ``cart/``, ``buy/``...): action = sub-folder name."""
    path = _need(Path(path))
    fix = "pass the folder holding one sub-folder per behaviour (view/, cart/, buy/), each with train.txt, test.txt"
    if not path.is_dir():
        raise DataError("multi-behaviour data is a folder, not a file", file=path, fix=fix)
    subs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "train.txt").is_file())
    if not subs:
        raise DataError("no behaviour sub-folder with a train.txt in this folder", file=path, fix=fix)
    pieces = []
    for sub in subs:
        inter = read_lightgcn(sub, encoding=encoding)
        pieces.append((inter.with_frame(inter.frame.assign(action=sub.name.lower())), None))
    return _combine(pieces, path, social=_social(social, encoding))


def read_cfgan(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """The CFGAN authors' splits: ``X.train`` + ``X.test`` (``u i r``, whitespace); path is either or ``X``."""
    path = Path(path)
    if path.is_dir():
        path = _pick(path, (), ("*.train",))
    prefix = path.with_suffix("") if path.suffix in (".train", ".test") else path
    pieces = []
    for name in ("train", "test"):
        f = prefix.with_name(f"{prefix.name}.{name}")
        if not f.is_file():
            raise DataError(f"CFGAN split {f.name} not found (both .train and .test are needed)", file=f,
                            fix="pass the X.train/X.test prefix, or read one file with format uir")
        frame, lines = _uir_frame(*_split(f, _read_text(f, encoding), fields=(3, 3)))
        pieces.append((_finish(frame, f, lines), name))
    return _combine(pieces, prefix, social=_social(social, encoding))


def _check_scale(path: Path, weights: np.ndarray, lines: np.ndarray, scale: tuple[float, float], column: int,
                 fix: str) -> None:
    """Refuse a rating outside ``scale`` (lo, hi), naming its line: a wrong column read as the rating."""
    lo, hi = scale
    bad = ~((weights >= lo) & (weights <= hi)) if weights.dtype.kind == "f" else np.zeros(len(weights), bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"rating {weights[i]:g} in column {column + 1} is outside the {lo:g}-{hi:g} scale",
                        file=path, line=int(lines[i]), fix=fix)


def _sep_of(text: str) -> str | None:
    """"," when the first data line holds a comma, else None (runs of whitespace)."""
    first = next((ln for ln in text.split("\n") if ln.strip()), "")
    return "," if "," in first else None


def read_ratings_trust(path: str | Path, *, social=None, encoding: str = "utf-8", layout: str = "librec",
                       scale: tuple[float, float] | None = None) -> Interactions:
    """FilmTrust / Ciao / Epinions ratings + trust ``src dst [w]``, comma- or whitespace-separated.

    ``layout="librec"``: ``u i r ...`` (rating third); ``layout="tang"``: ``user product category rating
    helpfulness [time]`` (rating fourth, time sixth). ``scale`` bounds the ratings (None: unchecked)."""
    path = _need(Path(path))
    folder = path if path.is_dir() else path.parent
    ratings = _pick(folder, ("ratings.txt", "rating.txt"), ("rating*.txt",)) if path.is_dir() else path
    trust = _pick(folder, ("trust.txt",), ("trust*.txt",), required=False)
    text = _read_text(ratings, encoding)
    tang = layout == "tang"
    cols, lines = _split(ratings, text, sep=_sep_of(text), fields=(5, 6) if tang else (3, None))
    picked = ([cols[0], cols[1], cols[3]] + ([cols[5]] if len(cols) > 5 else [])) if tang else cols[:3]
    frame, lines = _uir_frame(picked, lines)
    if scale is not None:
        other = "the LibRec layout (user item rating): use ciao or epinions" if tang else \
            "the Tang layout (user product category rating helpfulness [time]): use ciao-tang or epinions-tang"
        _check_scale(ratings, frame["weight"].to_numpy(), lines, scale, 3 if tang else 2,
                     fix=f"the file may be in {other}")
    edges = _social(social, encoding, read_social(trust, encoding=encoding) if trust else None)
    return _finish(frame, ratings, lines, social=edges)


def read_kuairand(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """KuaiRand log CSV: one ``impression`` row per log line, then one row per feedback flag that is 1."""
    path = _need(Path(path))
    df, lines = _read_delimited(path, _read_text(path, encoding), ",")
    flags = [f for f in KUAIRAND_FLAGS if f in df.columns]
    missing = [c for c in ("user_id", "video_id") if c not in df.columns] + ([] if flags else ["is_click"])
    if missing:
        raise DataError(f"missing KuaiRand column(s) {missing}; found {list(df.columns)}", file=path, line=1,
                        fix="pass a KuaiRand log_*.csv file (or use format csv with --columns)")
    np_errors = np.errstate(invalid="ignore", over="ignore")  # inf and NaN: validate() names the line
    if "time_ms" in df.columns:
        with np_errors:
            ts = numbers(df["time_ms"]) // 1000
    elif {"date", "hourmin"} <= set(df.columns):  # YYYYMMDD + HHMM in Beijing time, made UTC like time_ms
        day = pd.to_datetime(df["date"].astype(str), format="%Y%m%d", errors="coerce").to_numpy()
        # whole days in the column's own unit (no nanosecond overflow); NaT stays NaN for validate()
        day_s = np.where(np.isnat(day), np.nan, day.astype("datetime64[s]").astype(np.int64))
        hm = numbers(df["hourmin"])
        with np.errstate(invalid="ignore", over="ignore"):
            bad = np.isfinite(hm) & ((hm < 0) | (hm // 100 > 23) | (hm % 100 > 59) | (hm != np.floor(hm)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"hourmin is {df['hourmin'].iloc[i]!r}, not a time of day HHMM", file=path,
                            line=int(lines[i]), fix="hourmin must run from 0 (00:00) to 2359 (23:59)")
        with np_errors:
            ts = day_s + (hm // 100) * 3600 + (hm % 100) * 60 - BEIJING_UTC_OFFSET_S
    else:
        ts = None
    # shown[i, 0]: line i was an impression (always); shown[i, 1 + k]: flag k is 1 on line i
    shown = np.ones((len(df), 1 + len(flags)), dtype=bool)
    for k, flag in enumerate(flags, 1):
        raw = df[flag]
        col = numbers(raw)
        bad = ~np.isin(col, [0, 1])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "empty" if pd.isna(raw.iloc[i]) else repr(str(raw.iloc[i]))
            raise DataError(f"{flag} is {what}, expected 0 or 1", file=path, line=int(lines[i]),
                            fix="feedback flags must be 0 or 1")
        shown[:, k] = col == 1
    row, kind = np.nonzero(shown)  # row-major: each line's impression, then its flags in KUAIRAND_FLAGS order
    names = [EXPOSURE] + [KUAIRAND_FLAGS[f] for f in flags]
    frame = pd.DataFrame({"user": df["user_id"].to_numpy()[row], "item": df["video_id"].to_numpy()[row],
                          "action": pd.Categorical.from_codes(kind, categories=names)})
    if ts is not None:
        frame["timestamp"] = ts[row]
    return _finish(frame, path, lines[row], social=_social(social, encoding),
                   impressions_without_action=int((~shown[:, 1:].any(axis=1)).sum()))


def read_recbole(path: str | Path, *, social=None, encoding: str = "utf-8") -> Interactions:
    """RecBole atomic ``.inter``: tab-separated, header ``name:type`` (user_id, item_id, rating, timestamp...)."""
    path = _need(Path(path))
    if path.is_dir():
        path = _pick(path, (), ("*.inter",))
    df, lines = _read_delimited(path, _read_text(path, encoding), "\t")
    fields = {}
    for head in df.columns:
        name, colon, kind = str(head).strip().partition(":")
        if not colon:
            raise DataError(f"header field {head!r} has no :type", file=path, line=1,
                            fix="RecBole headers look like user_id:token<TAB>item_id:token<TAB>rating:float")
        if name in fields:  # e.g. user_id:token and user_id:float; else the second would silently win
            raise DataError(f"field {name!r} appears twice in the header ({fields[name][0]!r}, {head!r})",
                            file=path, line=1, fix="keep one column per field name")
        fields[name] = (head, kind)
    rename = {fields[k][0]: v for k, v in (("user_id", "user"), ("item_id", "item"), ("timestamp", "timestamp"),
                                          ("action", "action"), ("part", "part")) if k in fields}
    weight = next((n for n in ("weight", "rating", "count") if n in fields and fields[n][1] == "float"), None)
    if weight:
        rename[fields[weight][0]] = "weight"
    frame = df.rename(columns=rename).reset_index(drop=True)
    return _finish(frame, path, lines, social=_social(social, encoding),
                   action="rate" if weight == "rating" else "view")


FORMATS: dict[str, Callable[..., Interactions]] = {
    **{kind: partial(read_table, kind=kind) for kind in ("csv", "tsv", "parquet", "jsonl")},
    "uir": read_uir, "irgan": read_uir,
    "movielens": read_movielens,
    "lastfm-hetrec": read_lastfm_hetrec,
    "lightgcn": read_lightgcn,
    "cfgan": read_cfgan,
    "filmtrust": read_ratings_trust,
    **{name: partial(read_ratings_trust, scale=STAR_SCALE) for name in ("ciao", "epinions")},
    **{f"{name}-tang": partial(read_ratings_trust, layout="tang", scale=STAR_SCALE) for name in ("ciao", "epinions")},
    "kuairand": read_kuairand,
    "recbole": read_recbole,
    "multi-behaviour": read_multi_behaviour, "multi-behavior": read_multi_behaviour, "mbgcn": read_multi_behaviour,
}
_TAKES_COLUMNS = {"csv", "tsv", "parquet", "jsonl"}
_TAKES_SEP = {"csv", "tsv", "uir", "irgan"}
_TAKES_NO_HEADER = {"csv", "tsv"}


def detect_format(path: str | Path) -> str:
    """Guess a format name from a file's suffix or name, or from the files inside a folder."""
    path = Path(path)
    if not path.exists() and path.with_name(f"{path.name}.train").is_file():
        return "cfgan"  # the X prefix of X.train / X.test
    if _need(path).is_dir():
        names = {p.name.lower() for p in path.iterdir()}
        globbed = lambda pattern: any(path.glob(pattern))  # noqa: E731
        checks = [("u.data" in names or "ratings.dat" in names, "movielens"),
                  ("user_artists.dat" in names, "lastfm-hetrec"),
                  ("train.txt" not in names and any((p / "train.txt").is_file() and (p / "test.txt").is_file()
                                                    for p in path.iterdir() if p.is_dir()), "multi-behaviour"),
                  ({"train.txt", "test.txt"} <= names, "lightgcn"),
                  (globbed("rating*.txt") and globbed("trust*.txt"), "filmtrust"),
                  (globbed("*.inter"), "recbole"), (globbed("*.train"), "cfgan"),
                  (globbed("*.parquet") or globbed("*=*/*.parquet"), "parquet"), (globbed("*train*"), "uir")]
        found = next((fmt for hit, fmt in checks if hit), None)
    else:
        name, suffix = path.name.lower(), path.suffix.lower()
        found = {"u.data": "movielens", "ratings.dat": "movielens", "user_artists.dat": "lastfm-hetrec"}.get(name)
        found = found or {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                          ".jsonl": "jsonl", ".ndjson": "jsonl", ".inter": "recbole", ".train": "cfgan",
                          ".test": "cfgan"}.get(suffix)
        if found == "csv" and path.stat().st_size:
            with open(path, "rb") as fh:
                found = "kuairand" if b"is_click" in fh.readline() else "csv"
    if found is None:
        raise DataError("cannot tell the format from the name or contents", file=path,
                        fix=f"pass format= one of {', '.join(FORMATS)}")
    return found


def read(path: str | Path, format: str = "auto", *, columns: dict[str, str | int] | None = None,
         social: str | Path | None = None, sep: str | None = None, header: bool = True,
         encoding: str = "utf-8", social_columns: dict[str, str | int] | None = None,
         social_sep: str | None = None, social_header: bool | None = None) -> Interactions:
    """Read an interaction log in ``format`` (see the module docstring) into validated Interactions.

    ``header=False`` (csv / tsv only) reads the first line as data; map the columns by position then.
    ``social`` adds (or replaces) the friend graph, read by :func:`read_social` with ``social_columns``,
    ``social_sep`` and ``social_header``; its user ids are the log's (edges to users the log lacks add
    users without interactions, counted as ``social_only_users`` by :meth:`Dataset.stats`)."""
    path, name = Path(path), format.strip().lower().replace("_", "-")
    if social is None and (social_columns or social_sep or social_header is not None):
        raise DataError("social_columns=, social_sep= and social_header= describe a social file, and none is given",
                        file=path, fix="add social= (the friend edge file), or drop them")
    if name != "auto" and name not in FORMATS:
        raise DataError(f"unknown format {format!r}", file=path, fix=f"use auto or one of {', '.join(FORMATS)}")
    if name == "auto":
        name = detect_format(path)
    elif name != "cfgan":  # cfgan accepts the X prefix, which is not a file
        _need(path)
    kwargs: dict = {"social": social, "encoding": encoding}
    for key, value, allowed in (("columns", columns, _TAKES_COLUMNS), ("sep", sep, _TAKES_SEP),
                                ("header", not header, _TAKES_NO_HEADER)):
        if value and name not in allowed:  # an empty mapping or separator counts as not given
            raise DataError(f"{key}= does not apply to format {name}", file=path,
                            fix=f"{key}= works with {', '.join(sorted(allowed))}; drop it")
        if value:
            kwargs[key] = header if key == "header" else value
    if social is not None:  # read once here, with its own options; every reader takes the edge table
        kwargs["social"] = read_social(social, columns=social_columns, sep=social_sep, header=social_header,
                                       encoding=encoding)
    return FORMATS[name](path, **kwargs)


# ------------------------------------------------------------------------------------------ writers
def write_recbole(inter: Interactions, path: str | Path) -> None:
    """RecBole atomic ``.inter``: user_id, item_id, action, weight [, timestamp] [, part] (tab-separated)."""
    f = inter.frame
    cols = {"user_id:token": f["user"], "item_id:token": f["item"], "action:token": f["action"],
            "weight:float": f["weight"]}
    if "timestamp" in f.columns:
        cols["timestamp:float"] = f["timestamp"]
    if "part" in f.columns:
        cols["part:token"] = f["part"]
    out = pd.DataFrame(cols)
    for name in ("user_id:token", "item_id:token", "action:token"):
        if out[name].dtype == object and out[name].astype(str).str.contains(r"[\t\n\r]").any():
            raise DataError(f"a {name.split(':')[0]} contains a tab or newline", file=path,
                            fix="RecBole tokens cannot hold tabs or newlines; clean the ids first")
    with atomic_open(path) as fh:
        out.to_csv(fh, sep="\t", index=False, lineterminator="\n")


def write_table(inter: Interactions, path: str | Path) -> None:
    """Write the interaction table as .parquet, .csv, .tsv or .jsonl (chosen by suffix), atomically."""
    suffix = Path(path).suffix.lower()
    frame = inter.frame
    if suffix in (".parquet", ".pq"):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    elif suffix in (".csv", ".tsv"):
        with atomic_open(path) as fh:
            frame.to_csv(fh, sep="," if suffix == ".csv" else "\t", index=False, lineterminator="\n")
    elif suffix in (".jsonl", ".ndjson"):
        with atomic_open(path) as fh:
            frame.to_json(fh, orient="records", lines=True)
    else:
        raise DataError(f"cannot write a {suffix or 'suffix-less'} file", file=path,
                        fix="use a .parquet, .csv, .tsv or .jsonl path")
