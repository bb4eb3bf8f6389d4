"""The interaction table every reader produces and every later stage consumes.

An :class:`Interactions` holds one row per event::

    user       raw user id: int64 when every id of the column is a plain decimal integer that int64 holds,
               else str (ids beyond int64, "007", "+7", non-ASCII digits), so no two written ids become one
    item       raw item id, the same way
    action     categorical: view, like, comment, share, follow, or any string the log carries;
               ``impression`` (EXPOSURE) marks an item shown to the user, acted on or not
    timestamp  int64 seconds since the Unix epoch, 1970..2100, from numbers or dates (one kind per column;
               column absent when the log has none)
    weight     float32 rating or count, finite (1.0 when the log has none)
    part       optional categorical train/valid/test, for logs that ship a predefined split

plus an optional social graph (``src``, ``dst`` raw user ids, ``weight``; text when the log's users are text
ids that look like integers, so a user is the same in both).

:func:`validate` is the one place where a table becomes trusted; anything wrong becomes a
:class:`DataError` whose one-line message names the file, the row and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

ACTIONS = ("view", "like", "comment", "share", "follow")
# An exposure: the item was shown to the user, whatever they did next. Exposure rows are negatives
# for propensity models (P(action | shown)); they are never an interaction, so the union of "all
# actions" (``Part.matrix()``, ``Dataset.history``) leaves them out.
EXPOSURE = "impression"
PARTS = ("train", "valid", "test")
REQUIRED = ("user", "item")
# 1970-01-01 .. 2100-01-01: anything outside is a unit mistake (milliseconds) or garbage.
TS_MIN, TS_MAX = 0, 4_102_444_800
INT64_MAX = np.iinfo(np.int64).max
FLOAT_EXACT_MAX = 2**53  # every integer up to here has its own float64; beyond, neighbours share one
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataError(ValueError):
    """Bad input. ``str(err)`` is one line: where (file, line), what, and how to fix it."""

    def __init__(self, what: str, *, file: str | Path | None = None, line: int | None = None,
                 fix: str | None = None):
        self.what, self.file, self.line, self.fix = what, file, line, fix
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(f"{where}{what}" + (f" (fix: {fix})" if fix else ""))


@dataclass
class Interactions:
    """A validated interaction log and (optionally) a social graph between users."""

    frame: pd.DataFrame
    social: pd.DataFrame | None = None
    source: str = "<memory>"
    notes: dict = field(default_factory=dict)  # e.g. {"duplicates_merged": 12, "below_threshold": 40}

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.frame.columns

    @property
    def has_parts(self) -> bool:
        return "part" in self.frame.columns

    @property
    def actions(self) -> list[str]:
        return [str(a) for a in self.frame["action"].cat.categories]

    def with_frame(self, frame: pd.DataFrame, **notes) -> "Interactions":
        return replace(self, frame=frame.reset_index(drop=True), notes={**self.notes, **notes})


def _row_of(mask: np.ndarray, line_of: np.ndarray | None) -> int | None:
    """1-based file line of the first True in ``mask`` (``line_of`` maps row -> file line)."""
    idx = int(np.flatnonzero(mask)[0])
    return int(line_of[idx]) if line_of is not None else idx + 1


def _first(col: pd.Series, mask) -> object:
    """The value of ``col`` at the first True of ``mask``."""
    return col.iloc[int(np.flatnonzero(np.asarray(mask))[0])]


# What a cell may hold: a text, a number, a date or nothing. Lists, objects and raw bytes (nested JSON,
# parquet list or binary columns) are refused rather than turned into their repr(); so is text with a lone
# UTF-16 surrogate (a JSON escape such as "\\ud800"), which no UTF-8 file or string column can hold.
_NOT_SCALAR = (list, tuple, dict, set, bytes, bytearray, np.ndarray)


def _cell_problem(value) -> str:
    if isinstance(value, _NOT_SCALAR):
        return f"a {type(value).__name__}, not a single value"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text with a lone UTF-16 surrogate"
    return ""


def _scalars(col: pd.Series, name: str, file, line_of) -> None:
    """Refuse cells of an object column that are not one number, text or date (see _NOT_SCALAR)."""
    if col.dtype != object:
        return
    problems = col.map(_cell_problem)
    bad = (problems != "").to_numpy(dtype=bool)
    if bad.any():
        raise DataError(f"{name} holds {_first(problems, bad)}", file=file, line=_row_of(bad, line_of),
                        fix=f"give {name} one number or valid text per row")


def _not_dates(col: pd.Series, what: str, file) -> None:
    """Only timestamps may be a datetime64 column (whose text form fails for years past 9999)."""
    if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
        raise DataError(f"{what} are dates or durations ({col.dtype})", file=file,
                        fix="map that column to the right field (only timestamp holds dates)")


def _id_strings(col: pd.Series, name: str, file, line_of) -> pd.Series:
    """Ids as stripped text; blank ids and ids with a NUL character (a binary or corrupt file) are refused."""
    as_str = col.astype(str).str.strip()
    blank = (as_str == "").to_numpy()
    if blank.any():
        raise DataError(f"empty {name} id", file=file, line=_row_of(blank, line_of),
                        fix=f"every row needs a {name} id; drop or fill that row")
    bad = as_str.str.contains("\x00", regex=False).to_numpy(dtype=bool)
    if bad.any():
        raise DataError(f"{name} id {_first(as_str, bad)!r} contains a NUL character", file=file,
                        line=_row_of(bad, line_of), fix="the file is binary or corrupt; re-export it as text")
    return as_str


def _ids(col: pd.Series, name: str, file, line_of) -> pd.Series:
    """int64 when every id is an integer that int64 holds exactly, else text; never two raw ids as one."""
    missing = col.isna().to_numpy()
    if missing.any():
        raise DataError(f"empty {name} id", file=file, line=_row_of(missing, line_of),
                        fix=f"every row needs a {name} id; drop or fill that row")
    _scalars(col, name, file, line_of)
    _not_dates(col, f"{name} ids", file)
    if pd.api.types.is_unsigned_integer_dtype(col) and len(col) and col.max() > INT64_MAX:
        return _id_strings(col, name, file, line_of).astype(object)  # uint64 above int64: exact as text
    if pd.api.types.is_integer_dtype(col):
        return col.astype(np.int64)
    if pd.api.types.is_float_dtype(col):
        arr = col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataError(f"{name} id {float(arr[bad][0])} is not an integer", file=file,
                            line=_row_of(bad, line_of), fix=f"use integer or string {name} ids")
        bad = np.abs(arr) > FLOAT_EXACT_MAX
        if bad.any():  # a float that large stands for many integers: distinct ids could merge
            raise DataError(f"{name} id {float(arr[bad][0]):g} is too large to be exact as a decimal number",
                            file=file, line=_row_of(bad, line_of),
                            fix=f"write {name} ids as plain integers, without a decimal point or exponent")
        return col.astype(np.int64)
    as_str = _id_strings(col, name, file, line_of)
    # "007" and "7" are different raw ids: only plain integers without leading zeros become int64, and only
    # when int64 holds every one of them exactly (to_numeric falls back to uint64/float64 otherwise)
    plain_int = as_str.str.fullmatch(r"0|-?[1-9][0-9]{0,18}")
    if plain_int.all():
        numeric = pd.to_numeric(as_str, errors="coerce")
        if numeric.dtype == np.int64:
            return numeric
    return as_str.astype(object)


def _timestamps(col: pd.Series, file, line_of) -> pd.Series:
    """Unix seconds (numbers) or dates (datetime64, or ISO-8601 and other date text), one kind per column."""
    _scalars(col, "timestamp", file, line_of)
    if pd.api.types.is_datetime64_any_dtype(col):
        secs = _date_seconds(col, file, line_of)
    elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        secs = col.to_numpy(dtype=np.float64)
    else:
        secs = _text_seconds(col, file, line_of)
    bad = ~np.isfinite(secs)
    if bad.any():
        raise DataError("timestamp is NaN, infinite or missing", file=file, line=_row_of(bad, line_of),
                        fix="fill it or drop the timestamp column")
    bad = (secs < TS_MIN) | (secs > TS_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if pd.api.types.is_datetime64_any_dtype(col):  # numpy prints any year; pandas' str() fails past 9999
            shown, hint = str(np.datetime64(int(secs[i]), "s")), "use dates between 1970 and 2100"
        elif not _is_number_text(col.iloc[i]):
            shown, hint = repr(col.iloc[i]), "use dates between 1970 and 2100"
        else:
            shown = f"{secs[i]:.0f}"
            hint = "milliseconds? divide by 1000" if secs[i] > TS_MAX else "use Unix seconds after 1970"
        raise DataError(f"timestamp {shown} is out of range 1970..2100", file=file, line=_row_of(bad, line_of),
                        fix=hint)
    return pd.Series(secs.astype(np.int64), index=col.index)


def _date_seconds(col: pd.Series, file, line_of) -> np.ndarray:
    """datetime64 (any unit, naive = UTC) -> float64 whole seconds since the epoch, rounded down."""
    missing = col.isna().to_numpy()
    if missing.any():
        raise DataError("missing timestamp", file=file, line=_row_of(missing, line_of),
                        fix="fill it or drop the timestamp column")
    return _seconds(col)


def _seconds(col: pd.Series) -> np.ndarray:
    naive = col.dt.tz_convert("UTC").dt.tz_localize(None) if col.dt.tz is not None else col
    # integer arithmetic in the column's own unit: no nanosecond overflow for years past 2262 or before 1677
    return naive.to_numpy().astype("datetime64[s]").astype(np.int64).astype(np.float64)


def _is_number_text(value) -> bool:
    return not isinstance(value, str) or not np.isnan(pd.to_numeric(value.strip(), errors="coerce"))


# Words that date parsers read relative to the clock: a log replayed tomorrow would get other times.
_RELATIVE_DATES = {"now", "today", "tomorrow", "yesterday"}


def _text_seconds(col: pd.Series, file, line_of) -> np.ndarray:
    """Numbers or dates written as text (and mixed Python objects); a column must use one kind."""
    text = col.astype(str).str.strip()
    num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    is_num = ~np.isnan(num) | text.str.lower().isin(["nan"]).to_numpy()  # "nan" is a number, and refused later
    if is_num.all():
        return num
    secs = np.full(len(text), np.nan)
    todo = ~is_num & ~text.str.lower().isin(_RELATIVE_DATES).to_numpy()
    for fmt in ("ISO8601", "mixed"):  # ISO-8601 first, then pandas infers each remaining value's format
        rows = np.flatnonzero(todo)
        if len(rows):  # each parse made seconds on its own: the two may differ in unit (us, ns)
            parsed = pd.to_datetime(text.iloc[rows], errors="coerce", utc=True, format=fmt)
            ok = parsed.notna().to_numpy()
            secs[rows[ok]] = _seconds(parsed[ok])
            todo[rows[ok]] = False
    is_date = ~np.isnan(secs)
    neither = ~is_num & ~is_date
    if neither.any():
        raise DataError(f"timestamp {_first(col, neither)!r} is neither a number nor a date", file=file,
                        line=_row_of(neither, line_of), fix="use Unix seconds or ISO-8601 dates")
    if is_num.any():
        minority = is_num if is_num.sum() <= is_date.sum() else is_date
        raise DataError(f"timestamp {_first(col, minority)!r} is a {'number' if minority is is_num else 'date'} "
                        f"but most timestamps in this column are {'dates' if minority is is_num else 'numbers'}",
                        file=file, line=_row_of(minority, line_of),
                        fix="use one kind in the whole column: Unix seconds or ISO-8601 dates")
    return secs


def numbers(col: pd.Series) -> np.ndarray:
    """float64 values of a numeric column, or of numbers written as text (NaN where a value is not one)."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    # via text: to_numeric cannot take Python ints beyond float range, their text becomes inf
    return pd.to_numeric(col.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _weights(col: pd.Series, file, line_of) -> pd.Series:
    _scalars(col, "weight", file, line_of)
    _not_dates(col, "weights", file)
    arr = numbers(col)
    bad = np.isnan(arr)
    if bad.any():
        raw = _first(col, bad)
        what = "weight is NaN or missing" if pd.isna(raw) or str(raw).strip().lower() == "nan" \
            else f"weight {raw!r} is not a number"
        raise DataError(what, file=file, line=_row_of(bad, line_of),
                        fix="weights must be numeric (a rating or a count)")
    bad = ~(np.abs(arr) <= FLOAT32_MAX)  # stored as float32: anything larger would become inf
    if bad.any():
        raise DataError(f"weight {_first(col, bad)!r} is not finite or too large for float32", file=file,
                        line=_row_of(bad, line_of), fix=f"weights must be finite numbers below {FLOAT32_MAX:.3g}")
    return pd.Series(arr.astype(np.float32), index=col.index)


def _unique_columns(frame: pd.DataFrame, source) -> None:
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        raise DataError(f"column {dup[0]!r} appears more than once", file=source,
                        fix="keep one column of that name (or map the other to a different name)")


def _one_id_kind(frame: pd.DataFrame, social: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same user written in the log and in the social graph stays one user: when one side holds text
    ids that look like integers (too large for int64, or with leading zeros) and the other side holds
    int64 ids, the int64 side becomes text too."""
    cols = [(frame, "user"), (social, "src"), (social, "dst")]
    text = [t[c] for t, c in cols if t[c].dtype == object]
    if len(text) in (0, len(cols)) or not any(s.astype(str).str.fullmatch(r"-?[0-9]+").any() for s in text):
        return frame, social
    frame, social = frame.copy(), social.copy()
    for t, c in ((frame, "user"), (social, "src"), (social, "dst")):
        t[c] = t[c].astype(str).astype(object)
    return frame, social


def _action_names(act: pd.Series) -> pd.Series:
    """Actions as trimmed lower-case names. A categorical column (what parquet and arrow give) is
    normalised through its categories, so a row costs a code rather than a new string."""
    if not isinstance(act.dtype, pd.CategoricalDtype):
        return act.astype(str).str.strip().str.lower()
    codes = act.cat.codes.to_numpy()  # (n,), no -1: empty actions were refused above
    used = np.bincount(codes, minlength=len(act.cat.categories)) > 0  # (n_categories,): only values present
    names = pd.Index(act.cat.categories[used].astype(str)).str.strip().str.lower()
    merged, of_used = np.unique(np.asarray(names, dtype=str), return_inverse=True)  # " Like", "LIKE" -> one
    to_merged = np.zeros(len(used), dtype=np.int32)
    to_merged[used] = of_used
    return pd.Series(pd.Categorical.from_codes(to_merged[codes], categories=merged), index=act.index)


def validate(frame: pd.DataFrame, *, social: pd.DataFrame | None = None, source: str | Path = "<memory>",
             line_of: np.ndarray | None = None, default_action: str = "view") -> Interactions:
    """Check and normalise a raw table into :class:`Interactions`.

    ``line_of[i]`` is the 1-based line in ``source`` of row ``i`` (so errors point at the file);
    without it rows are numbered from 1.
    """
    if len(frame) == 0:
        raise DataError("no interactions found (empty file or every row filtered out)", file=source,
                        fix="check the path, the format name and any filters")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(frame.columns)}", file=source,
                        fix="rename the columns or pass a column mapping, e.g. --columns user=uid,item=iid")
    _unique_columns(frame, source)
    out = pd.DataFrame({"user": _ids(frame["user"], "user", source, line_of),
                        "item": _ids(frame["item"], "item", source, line_of)})
    if "action" in frame.columns:
        act = frame["action"]
        _scalars(act, "action", source, line_of)
        _not_dates(act, "actions", source)
        if act.isna().any():
            raise DataError("empty action", file=source, line=_row_of(act.isna().to_numpy(), line_of),
                            fix="fill the action column or drop it (every row then counts as a view)")
        out["action"] = _action_names(act)
    else:
        out["action"] = default_action
    known = [a for a in ACTIONS if a in set(out["action"].unique())]
    others = sorted(set(out["action"].unique()) - set(ACTIONS))
    out["action"] = pd.Categorical(out["action"], categories=known + others)
    if "timestamp" in frame.columns:
        out["timestamp"] = _timestamps(frame["timestamp"], source, line_of)
    out["weight"] = (_weights(frame["weight"], source, line_of) if "weight" in frame.columns
                     else np.ones(len(frame), dtype=np.float32))
    if "part" in frame.columns:
        _scalars(frame["part"], "part", source, line_of)
        _not_dates(frame["part"], "split parts", source)
        part = frame["part"].astype(str)
        bad = ~part.isin(PARTS).to_numpy()
        if bad.any():
            raise DataError(f"split part {part.iloc[int(np.flatnonzero(bad)[0])]!r} is not one of {PARTS}",
                            file=source, line=_row_of(bad, line_of), fix="use train, valid or test")
        out["part"] = pd.Categorical(part, categories=list(PARTS))
    if social is not None:
        social = validate_social(social, source=source)
        out, social = _one_id_kind(out, social)
    return Interactions(frame=out.reset_index(drop=True), social=social, source=str(source))


def validate_social(edges: pd.DataFrame, *, source: str | Path = "<memory>",
                    line_of: np.ndarray | None = None) -> pd.DataFrame:
    """Normalise a user->user edge table to columns ``src``, ``dst``, ``weight``."""
    missing = [c for c in ("src", "dst") if c not in edges.columns]
    if missing:
        raise DataError(f"social graph is missing column(s) {missing}; found {list(edges.columns)}",
                        file=source, fix="name the columns src and dst")
    _unique_columns(edges, source)
    out = pd.DataFrame({"src": _ids(edges["src"], "src user", source, line_of),
                        "dst": _ids(edges["dst"], "dst user", source, line_of)})
    out["weight"] = (_weights(edges["weight"], source, line_of) if "weight" in edges.columns
                     else np.ones(len(out), dtype=np.float32))
    return out.reset_index(drop=True)
