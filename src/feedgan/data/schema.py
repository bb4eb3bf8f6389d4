"""The interaction table every reader produces and every later stage consumes.

An :class:`Interactions` holds one row per event::

    user       raw user id (int64 or str)
    item       raw item id (int64 or str)
    action     categorical: view, like, comment, share, follow, or any string the log carries;
               ``impression`` (EXPOSURE) marks an item shown to the user, acted on or not
    timestamp  int64 seconds since the Unix epoch (column absent when the log has none)
    weight     float32 rating or count (1.0 when the log has none)
    part       optional categorical train/valid/test, for logs that ship a predefined split

plus an optional social graph (``src``, ``dst`` raw user ids, ``weight``).

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


def _ids(col: pd.Series, name: str, file, line_of) -> pd.Series:
    missing = col.isna().to_numpy()
    if missing.any():
        raise DataError(f"empty {name} id", file=file, line=_row_of(missing, line_of),
                        fix=f"every row needs a {name} id; drop or fill that row")
    if pd.api.types.is_integer_dtype(col):
        return col.astype(np.int64)
    if pd.api.types.is_float_dtype(col):
        arr = col.to_numpy()
        bad = arr != np.round(arr)
        if bad.any():
            raise DataError(f"{name} id {float(arr[bad][0])} is not an integer", file=file,
                            line=_row_of(bad, line_of), fix=f"use integer or string {name} ids")
        return col.astype(np.int64)
    as_str = col.astype(str).str.strip()
    blank = (as_str == "").to_numpy()
    if blank.any():
        raise DataError(f"empty {name} id", file=file, line=_row_of(blank, line_of),
                        fix=f"every row needs a {name} id; drop or fill that row")
    numeric = pd.to_numeric(as_str, errors="coerce")
    # "007" and "7" are different raw ids: only plain integers without leading zeros become int64
    plain_int = as_str.str.fullmatch(r"-?(0|[1-9][0-9]*)")
    if plain_int.all() and numeric.notna().all():
        return numeric.astype(np.int64)
    return as_str.astype(object)


def _timestamps(col: pd.Series, file, line_of) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        if col.isna().any():
            mask = col.isna().to_numpy()
            raise DataError("missing timestamp", file=file, line=_row_of(mask, line_of),
                            fix="fill it or drop the timestamp column")
        naive = col.dt.tz_convert("UTC").dt.tz_localize(None) if col.dt.tz is not None else col
        # unit-agnostic (pandas may store ns or us): whole seconds since the epoch
        secs = (naive - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
        return secs.astype(np.int64)
    num = pd.to_numeric(col, errors="coerce")
    if num.isna().any() and not pd.api.types.is_numeric_dtype(col):
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
        if parsed.isna().any():  # not all ISO-8601: let pandas infer each value's format
            parsed = parsed.fillna(pd.to_datetime(col.where(parsed.isna()), errors="coerce", utc=True,
                                                  format="mixed"))
        if parsed.notna().all():
            return _timestamps(parsed, file, line_of)
        bad = (num.isna() & parsed.isna()).to_numpy()
        raise DataError(f"timestamp {col.iloc[int(np.flatnonzero(bad)[0])]!r} is neither a number nor a date",
                        file=file, line=_row_of(bad, line_of),
                        fix="use Unix seconds or ISO-8601 dates")
    arr = num.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError("timestamp is NaN or missing", file=file, line=_row_of(bad, line_of),
                        fix="fill it or drop the timestamp column")
    bad = (arr < TS_MIN) | (arr > TS_MAX)
    if bad.any():
        val = arr[bad][0]
        hint = "milliseconds? divide by 1000" if val > TS_MAX else "use Unix seconds after 1970"
        raise DataError(f"timestamp {val:.0f} is out of range 1970..2100", file=file,
                        line=_row_of(bad, line_of), fix=hint)
    return pd.Series(arr.astype(np.int64), index=col.index)


def _weights(col: pd.Series, file, line_of) -> pd.Series:
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw = col.iloc[i]
        what = "weight is NaN or missing" if pd.isna(raw) else f"weight {raw!r} is not a number"
        raise DataError(what, file=file, line=_row_of(bad, line_of),
                        fix="weights must be numeric (a rating or a count)")
    arr = num.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(f"weight {arr[bad][0]} is not finite", file=file, line=_row_of(bad, line_of),
                        fix="weights must be finite numbers")
    return pd.Series(arr.astype(np.float32), index=col.index)


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
    out = pd.DataFrame({"user": _ids(frame["user"], "user", source, line_of),
                        "item": _ids(frame["item"], "item", source, line_of)})
    if "action" in frame.columns:
        act = frame["action"]
        if act.isna().any():
            raise DataError("empty action", file=source, line=_row_of(act.isna().to_numpy(), line_of),
                            fix="fill the action column or drop it (every row then counts as a view)")
        out["action"] = act.astype(str).str.strip().str.lower()
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
        part = frame["part"].astype(str)
        bad = ~part.isin(PARTS).to_numpy()
        if bad.any():
            raise DataError(f"split part {part.iloc[int(np.flatnonzero(bad)[0])]!r} is not one of {PARTS}",
                            file=source, line=_row_of(bad, line_of), fix="use train, valid or test")
        out["part"] = pd.Categorical(part, categories=list(PARTS))
    if social is not None:
        social = validate_social(social, source=source)
    return Interactions(frame=out.reset_index(drop=True), social=social, source=str(source))


def validate_social(edges: pd.DataFrame, *, source: str | Path = "<memory>",
                    line_of: np.ndarray | None = None) -> pd.DataFrame:
    """Normalise a user->user edge table to columns ``src``, ``dst``, ``weight``."""
    missing = [c for c in ("src", "dst") if c not in edges.columns]
    if missing:
        raise DataError(f"social graph is missing column(s) {missing}; found {list(edges.columns)}",
                        file=source, fix="name the columns src and dst")
    out = pd.DataFrame({"src": _ids(edges["src"], "src user", source, line_of),
                        "dst": _ids(edges["dst"], "dst user", source, line_of)})
    out["weight"] = (_weights(edges["weight"], source, line_of) if "weight" in edges.columns
                     else np.ones(len(out), dtype=np.float32))
    return out.reset_index(drop=True)
