"""Fuzz the readers: every mutated log either loads as a valid table or fails with a DataError.

    python benchmarks/fuzz.py                 # 10,000 cases per format -> docs/benchmarks/fuzz.json, docs/fuzz.md
    python benchmarks/fuzz.py --format csv --format jsonl --cases 2000 --seed 1

Each case writes a small valid log in one format (random ids, ratings, timestamps, actions), applies one to
three mutations (a nasty value in a cell or a whole column, a duplicated or renamed column, a very wide
header, byte flips, truncation, BOM, NUL, bad UTF-8, deep JSON nesting, odd parquet types...) and reads it
back with ``feedgan.data.readers.read``. Outcomes per format:

    loaded   the reader returned Interactions that pass :func:`check_table`
    clean    the reader raised DataError with a one-line, printable message
    crash    anything else: another exception type, a multi-line or unprintable message, a table that breaks
             the schema's invariants, or a case slower than ``--case-timeout`` seconds

Runs in one process on one core (pyarrow is limited to one thread). Case ``k`` of format ``f`` is drawn
from ``random.Random(f"{seed}:{f}:{k}")``, so a crash is reproduced with ``--format f --only k``.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feedgan.data.readers import read
from feedgan.data.schema import PARTS, TS_MAX, TS_MIN, DataError, Interactions

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_600_000_000

# Values that broke (or could break) a parser somewhere: non-finite and huge numbers, integer-limit edges,
# Unicode digits, dates outside pandas' nanosecond range or before 1970, control characters and blanks.
NASTY = ["inf", "-inf", "Infinity", "nan", "NaN", "NA", "null", "None", "", " ", "1e400", "-1e400", "1e-400",
         "1e308", "3.5e38", "3.4028236e38", "1e19", "9" * 400, "-" + "9" * 400, "9" * 5000,
         "18446744073709551615", "18446744073709551616", "9223372036854775807", "9223372036854775808",
         "-9223372036854775808", "-9223372036854775809", "4294967296", "1.5", "-0", "+7", "007", "0x1f", "1_000",
         "--5", "١٢٣", "²", "①", "٣.٥", "1e10", "1e18", "-1", "0", "1.0", "true", "False",
         "2020-01-01", "2020-01-01T00:00:00Z", "2262-04-12", "2262-04-11T23:47:16.854775808", "1677-09-21",
         "1677-09-21T00:12:43.145224191", "9999-12-31T23:59:59", "0001-01-01", "1969-12-31", "1900-01-01",
         "2100-01-02", "2020-02-30", "2020-13-01", "2020-01-01T25:00:00", "2020-01-01T00:00:00+25:00",
         "20200101", "Jan 1 2020", "now", "today", "\x00", "1\x002", "\ufeff", "\ufeff1", "\u200b1", "\u00a0",
         "a\u0301", "\U0001f600", '"', "'", '"1"', ",", "\t", "::", ";", "\\", "\r", "x" * 3000]
# Raw JSON fragments for a value: non-standard literals, huge and deep values, escapes of lone surrogates.
JSON_NASTY = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 400, "9" * 5000, "18446744073709551615",
              "-9223372036854775809", "1.5", "true", "null", "[]", "[1, 2]", "{}", '{"a": 1}', '"\\ud800"',
              '"a\\udc80b"', '"\\u0000"', '"1\\u00002"', '"١٢٣"', '""', '" "', '"2262-04-12"', '"1677-09-21"',
              '"9999-12-31"', '"1969-12-31"', '"2020-01-01"', '"1e400"', "1e18", "-1", "0",
              "[" * 100_000 + "]" * 100_000, "[" * 3000 + "]" * 3000, '{"a":' * 3000 + "1" + "}" * 3000]
ID_NAMES = {"user": ("user", "user_id", "uid", "User", " user "), "item": ("item", "item_id", "post_id", "iid")}


# ------------------------------------------------------------------------------------- valid bases
@dataclass
class Table:
    """A small delimited log as tokens: ``header`` (or None) and ``rows`` of strings, joined by ``sep``."""

    header: list[str] | None
    rows: list[list[str]]
    sep: str
    name: str  # file name inside the case folder

    def text(self) -> str:
        lines = ([self.sep.join(self.header)] if self.header is not None else []) + [self.sep.join(r)
                                                                                    for r in self.rows]
        return "\n".join(lines) + "\n"


def _ids(rnd: random.Random, n: int, strings: bool) -> list[str]:
    pool = ["alice", "bob", "carol", "d4", "e"] if strings else [str(i) for i in range(rnd.randint(2, 6))]
    return [rnd.choice(pool) for _ in range(n)]


def _timestamps(rnd: random.Random, n: int, dates: bool) -> list[str]:
    secs = [T0 + rnd.randrange(10**6) for _ in range(n)]
    if dates:
        return [pd.Timestamp(s, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ") for s in secs]
    return [str(s) for s in secs]


def _ratings(rnd: random.Random, n: int) -> list[str]:
    return [rnd.choice(["1", "2", "3", "4", "5", "0.5", "3.5"]) for _ in range(n)]


def _generic(rnd: random.Random, sep: str, name: str) -> Table:
    n = rnd.randint(1, 8)
    cols = {"user": _ids(rnd, n, rnd.random() < 0.3), "item": _ids(rnd, n, rnd.random() < 0.3)}
    if rnd.random() < 0.5:
        cols["action"] = [rnd.choice(["view", "like", "share", "Comment"]) for _ in range(n)]
    if rnd.random() < 0.6:
        cols["timestamp"] = _timestamps(rnd, n, rnd.random() < 0.4)
    if rnd.random() < 0.6:
        cols[rnd.choice(["weight", "rating"])] = _ratings(rnd, n)
    if rnd.random() < 0.2:
        cols["part"] = [rnd.choice(PARTS) for _ in range(n)]
    names = list(cols)
    rnd.shuffle(names)
    return Table(names, [[cols[c][i] for c in names] for i in range(n)], sep, name)


def _uir(rnd: random.Random, name: str, *, ts: bool | None = None, sep: str = " ") -> Table:
    n = rnd.randint(1, 8)
    ts = rnd.random() < 0.5 if ts is None else ts
    cols = [_ids(rnd, n, False), _ids(rnd, n, False), _ratings(rnd, n)] + ([_timestamps(rnd, n, False)]
                                                                           if ts else [])
    return Table(None, [list(r) for r in zip(*cols)], sep, name)


def _lightgcn(rnd: random.Random, name: str) -> Table:
    rows = [[str(u)] + [str(rnd.randrange(20)) for _ in range(rnd.randint(0, 4))] for u in range(rnd.randint(1, 5))]
    return Table(None, rows, " ", name)


def _kuairand(rnd: random.Random) -> Table:
    n = rnd.randint(1, 6)
    flags = rnd.sample(["is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view"],
                       rnd.randint(1, 4))
    header = ["user_id", "video_id"] + (["time_ms"] if rnd.random() < 0.6 else ["date", "hourmin"]) + flags
    rows = []
    for _ in range(n):
        row = [str(rnd.randrange(5)), str(rnd.randrange(10**6))]
        if "time_ms" in header:
            row.append(str(T0 * 1000 + rnd.randrange(10**9)))
        else:
            row += [f"202204{rnd.randint(8, 21):02d}", f"{rnd.randrange(24)}{rnd.randrange(60):02d}"]
        rows.append(row + [rnd.choice("01") for _ in flags])
    return Table(header, rows, ",", "log_standard_fuzz.csv")


def _recbole(rnd: random.Random) -> Table:
    n = rnd.randint(1, 6)
    header = ["user_id:token", "item_id:token", "rating:float"] + (["timestamp:float"] if rnd.random() < 0.6 else [])
    cols = [_ids(rnd, n, rnd.random() < 0.3), _ids(rnd, n, False), _ratings(rnd, n), _timestamps(rnd, n, False)]
    return Table(header, [list(r) for r in zip(*cols[:len(header)])], "\t", "fuzz.inter")


@dataclass
class Case:
    """The files of one case (name -> Table, rendered as text, JSON lines or parquet) and how to read them."""

    files: dict[str, Table]
    format: str
    target: str = "."  # what read() gets, relative to the case folder
    notes: list[str] = field(default_factory=list)  # the mutations applied, for the report


def base_case(fmt: str, rnd: random.Random) -> Case:
    """A valid small log in ``fmt``."""
    if fmt in ("csv", "tsv"):
        t = _generic(rnd, "," if fmt == "csv" else "\t", f"log.{fmt}")
        return Case({t.name: t}, fmt, t.name)
    if fmt == "uir":
        return Case({"r.txt": _uir(rnd, "r.txt", sep=rnd.choice([" ", "\t"]))}, fmt, "r.txt")
    if fmt == "movielens":
        one_m = rnd.random() < 0.5
        t = _uir(rnd, "ratings.dat" if one_m else "u.data", ts=True, sep="::" if one_m else "\t")
        return Case({t.name: t}, fmt)
    if fmt == "lastfm-hetrec":
        plays = _uir(rnd, "user_artists.dat", ts=False, sep="\t")
        plays.header = ["userID", "artistID", "weight"]
        friends = Table(["userID", "friendID"], [[u, v] for u, v, _ in plays.rows], "\t", "user_friends.dat")
        return Case({plays.name: plays, friends.name: friends}, fmt)
    if fmt == "lightgcn":
        parts = ["train.txt", "test.txt"] + (["valid.txt"] if rnd.random() < 0.3 else [])
        return Case({p: _lightgcn(rnd, p) for p in parts}, fmt)
    if fmt == "multi-behaviour":
        files = {f"{b}/{p}": _lightgcn(rnd, p) for b in rnd.sample(["view", "cart", "buy"], rnd.randint(1, 3))
                 for p in ("train.txt", "test.txt")}
        return Case(files, fmt)
    if fmt == "cfgan":
        return Case({n: _uir(rnd, n, ts=False) for n in ("X.train", "X.test")}, fmt, "X")
    if fmt == "filmtrust":
        ratings = _uir(rnd, "ratings.txt", ts=False)
        trust = Table(None, [[u, str(rnd.randrange(6)), "1"] for u, _, _ in ratings.rows], " ", "trust.txt")
        return Case({ratings.name: ratings, trust.name: trust}, fmt)
    if fmt in ("ciao-tang", "epinions-tang"):  # user product category rating helpfulness [time]
        t = _uir(rnd, "rating.txt", sep=rnd.choice([",", " "]))
        t.rows = [[u, i, str(rnd.randrange(30)), r, str(rnd.randrange(6))] + rest for u, i, r, *rest in t.rows]
        return Case({t.name: t}, fmt, t.name)
    if fmt == "kuairand":
        t = _kuairand(rnd)
        return Case({t.name: t}, fmt, t.name)
    if fmt == "recbole":
        t = _recbole(rnd)
        return Case({t.name: t}, fmt, t.name)
    if fmt == "jsonl":
        t = _generic(rnd, ",", "log.jsonl")
        return Case({t.name: t}, fmt, t.name)  # rendered as JSON objects by _render_jsonl
    if fmt == "parquet":
        t = _generic(rnd, ",", "log.parquet")
        return Case({t.name: t}, fmt, t.name)  # rendered by _parquet_bytes
    raise ValueError(f"no base for {fmt}")


# ---------------------------------------------------------------------------------------- mutations
def _nasty(rnd: random.Random, extra: tuple[str, ...] = ()) -> str:
    roll = rnd.random()
    if extra and roll < 0.3:
        return rnd.choice(extra)
    if roll < 0.75:
        return rnd.choice(NASTY)
    if roll < 0.9:  # random printable and non-printable code points, lone surrogates excluded (not encodable)
        return "".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0x80, 0xD800),
                                       rnd.randrange(0xE000, 0x110000), rnd.randrange(0, 32)]))
                       for _ in range(rnd.randint(1, 6)))
    return rnd.choice(["", "-"]) + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(15, 25)))


def _cell(t: Table, rnd: random.Random) -> tuple[int, int] | None:
    if not t.rows:
        return None
    r = rnd.randrange(len(t.rows))
    return (r, rnd.randrange(len(t.rows[r]))) if t.rows[r] else None


def mutate_table(t: Table, rnd: random.Random, json_values: bool = False, extra: tuple[str, ...] = ()) -> str:
    """One token-level mutation of ``t`` in place; returns its name. ``extra`` joins the nasty values."""
    kind = rnd.choice(["cell", "cell", "cell", "column", "mixed_ts", "dup_column", "header", "drop_column",
                       "extra_column", "wide_header", "wide_row", "rows"])
    width = len(t.header) if t.header is not None else max((len(r) for r in t.rows), default=0)
    if kind == "cell" and (rc := _cell(t, rnd)):
        t.rows[rc[0]][rc[1]] = (rnd.choice(JSON_NASTY) if json_values and rnd.random() < 0.5
                                 else _nasty(rnd, extra))
    elif kind == "column" and width:
        c, v = rnd.randrange(width), _nasty(rnd, extra)
        for r in t.rows:
            if c < len(r):
                r[c] = v
    elif kind == "mixed_ts" and t.rows:  # one cell of the same column becomes the other kind of time
        c = (t.header.index("timestamp") if t.header and "timestamp" in t.header else rnd.randrange(width or 1))
        r = rnd.choice(t.rows)
        if c < len(r):
            r[c] = rnd.choice(["2021-03-02", "2021-03-02T10:00:00Z", "1614643200", "1e9", "1969-07-20"])
    elif kind == "dup_column" and width:
        c = rnd.randrange(width)
        if t.header is not None:
            t.header.append(t.header[c] if rnd.random() < 0.7 else t.header[c].upper())
        for r in t.rows:
            if c < len(r):
                r.append(r[c] if rnd.random() < 0.5 else _nasty(rnd))
    elif kind == "header" and t.header:
        c = rnd.randrange(len(t.header))
        names = [n for group in ID_NAMES.values() for n in group] + ["timestamp", "weight", "rating", "action",
                                                                    "part", "user:token", "rating:token", ""]
        t.header[c] = rnd.choice(names + [_nasty(rnd)])
    elif kind == "drop_column" and width > 1:
        c = rnd.randrange(width)
        if t.header is not None:
            del t.header[c]
        for r in t.rows:
            if c < len(r):
                del r[c]
    elif kind == "extra_column":
        if t.header is not None:
            t.header.append(rnd.choice(["extra", "timestamp", "weight", "part", "x:float"]))
        for r in t.rows:
            r.append(_nasty(rnd) if rnd.random() < 0.3 else str(rnd.randrange(100)))
    elif kind == "wide_header":
        n = rnd.choice([1000, 5000, 40_000])
        if t.header is not None:
            t.header += [""] * n
        elif t.rows:
            t.rows[0] += ["1"] * n
    elif kind == "wide_row" and t.rows:
        rnd.choice(t.rows).extend(["7"] * rnd.choice([100, 40_000]))
    elif kind == "rows" and t.rows:
        op = rnd.choice(["delete", "duplicate", "blank", "many"])
        i = rnd.randrange(len(t.rows))
        if op == "delete":
            del t.rows[i]
        elif op == "duplicate":
            t.rows.insert(i, list(t.rows[i]))
        elif op == "blank":
            t.rows.insert(i, [])
        else:
            n = rnd.randint(100, 2000) if len(t.rows[i]) < 100 else rnd.randint(1, 3)  # keep files < 1 MB
            t.rows.extend(list(t.rows[i]) for _ in range(n))
    return kind


def mutate_bytes(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """One byte-level mutation."""
    kind = rnd.choice(["flip", "truncate", "insert", "nul", "bom", "bom_only", "empty", "bad_utf8", "crlf",
                       "utf16"])
    pos = rnd.randrange(len(data) + 1)
    if kind == "flip" and data:
        i = rnd.randrange(len(data))
        data = data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:]
    elif kind == "truncate":
        data = data[:pos]
    elif kind == "insert":
        data = data[:pos] + bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8))) + data[pos:]
    elif kind == "nul":
        data = data[:pos] + b"\x00" + data[pos:]
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "bom_only":
        data = b"\xef\xbb\xbf" + rnd.choice([b"", b"\n", b"\n\n  \n"])
    elif kind == "empty":
        data = rnd.choice([b"", b"\n", b" \t\n"])
    elif kind == "bad_utf8":  # lone surrogate, overlong NUL, stray continuation, truncated sequence
        data = data[:pos] + rnd.choice([b"\xed\xa0\x80", b"\xc0\x80", b"\x80", b"\xe2\x82", b"\xff"]) + data[pos:]
    elif kind == "crlf":
        data = data.replace(b"\n", b"\r\n") if rnd.random() < 0.5 else data.replace(b"\n", b"\r")
    elif kind == "utf16":
        data = data.decode("utf-8", "replace").encode("utf-16")
    return data, kind


# ------------------------------------------------------------------------------------------ render
def _json_value(token: str) -> str:
    """A token as a JSON value: raw JSON fragments and numbers as they are, anything else as a string."""
    if token in JSON_NASTY:
        return token
    try:
        json.loads(token)
        return token
    except (ValueError, RecursionError):
        return json.dumps(token)


def _render_jsonl(t: Table, rnd: random.Random) -> bytes:
    lines = []
    for r in t.rows:
        keys = list(t.header or [])
        pairs = [f"{json.dumps(k)}: {_json_value(v)}" for k, v in zip(keys, r)]
        lines.append("{" + ", ".join(pairs) + "}")
    roll = rnd.random()
    if lines and roll < 0.15:  # a line that is not one object
        lines[rnd.randrange(len(lines))] = rnd.choice(JSON_NASTY + ['{"user": 1', "[{}]", '"x"', "{}"])
    elif lines and roll < 0.25:  # the same key twice in one object
        i = rnd.randrange(len(lines))
        lines[i] = lines[i][:-1] + ', "user": ' + _json_value(_nasty(rnd)) + "}"
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def _parquet_column(values: list[str], rnd: random.Random) -> pa.Array:
    """Tokens as one arrow column of a randomly chosen type (numbers where they parse, else text)."""
    kind = rnd.choice(["auto", "auto", "string", "float", "uint64", "timestamp", "date", "binary", "bad_utf8",
                       "list", "bool", "dictionary"])
    n = len(values)
    if kind == "float":
        return pa.array([rnd.choice([1.0, 2.5, float("inf"), float("nan"), 1e300, -1e19, 2.0**63, 3e38])
                         for _ in range(n)], pa.float64())
    if kind == "uint64":
        return pa.array([rnd.choice([0, 1, 2**63, 2**64 - 1, 2**63 - 1]) for _ in range(n)], pa.uint64())
    if kind == "timestamp":
        unit = rnd.choice(["s", "ms", "us", "ns"])
        span = {"s": 10**11, "ms": 10**14, "us": 10**17, "ns": 9 * 10**18}[unit]
        tz = rnd.choice([None, "UTC", "Asia/Shanghai"])
        return pa.array([rnd.randrange(-span, span) for _ in range(n)], pa.timestamp(unit, tz=tz))
    if kind == "date":
        return pa.array([rnd.randrange(-10**6, 10**6) for _ in range(n)], pa.date32())
    if kind == "binary":
        return pa.array([v.encode("utf-8", "surrogatepass") for v in values], pa.binary())
    if kind == "bad_utf8":  # a string column whose bytes are not UTF-8 (arrow does not check on write)
        raw = [v.encode() + rnd.choice([b"\xff", b"\xed\xa0\x80", b"\xc3"]) for v in values]
        offsets = np.cumsum([0] + [len(b) for b in raw]).astype(np.int32)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()),
                                                       pa.py_buffer(b"".join(raw))])
    if kind == "list":
        return pa.array([[v] for v in values], pa.list_(pa.string()))
    if kind == "bool":
        return pa.array([rnd.random() < 0.5 for _ in range(n)], pa.bool_())
    if kind == "dictionary":
        return pa.array(values, pa.string()).dictionary_encode()
    if kind == "auto":
        for conv, typ in ((int, pa.int64()), (float, pa.float64())):
            try:
                return pa.array([conv(v) for v in values], typ)
            except (ValueError, OverflowError, pa.ArrowException):
                pass
    return pa.array([v.encode("utf-8", "replace").decode("utf-8") for v in values], pa.string())


def _parquet_bytes(t: Table, rnd: random.Random) -> bytes:
    names = list(t.header or [])
    cols = [_parquet_column([r[c] if c < len(r) else "" for r in t.rows], rnd) for c in range(len(names))]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(cols, names=names), buf)  # duplicate names are allowed by arrow
    return buf.getvalue()


def make_case(fmt: str, rnd: random.Random, extra: tuple[str, ...] = ()) -> tuple[Case, dict[str, bytes]]:
    """A mutated case and its files as bytes; ``extra`` values join the nasty ones for cell mutations."""
    case = base_case(fmt, rnd)
    names = sorted(case.files)
    for _ in range(rnd.randint(1, 3)):
        name = rnd.choice(names)
        if rnd.random() < 0.65:
            kind = mutate_table(case.files[name], rnd, json_values=fmt == "jsonl", extra=extra)
            case.notes.append(f"{name}:{kind}")
        else:
            case.notes.append(f"{name}:bytes")  # applied after rendering, below
    out = {}
    for name in names:
        t = case.files[name]
        data = (_render_jsonl(t, rnd) if fmt == "jsonl" else _parquet_bytes(t, rnd) if fmt == "parquet"
                else t.text().encode("utf-8", "surrogatepass"))
        for i, note in enumerate(case.notes):  # parquet: mostly left intact, else it rarely gets parsed
            if note == f"{name}:bytes" and (fmt != "parquet" or rnd.random() < 0.2):
                data, kind = mutate_bytes(data, rnd)
                case.notes[i] = f"{name}:{kind}"
        out[name] = data
    return case, out


# ------------------------------------------------------------------------------------------ checks
def check_table(inter: Interactions) -> list[str]:
    """The schema's promises about a validated table; an empty list means it keeps them all."""
    f, bad = inter.frame, []
    if len(f) == 0:
        bad.append("empty table")
    for col in ("user", "item"):
        s = f[col]
        if s.dtype == np.int64:
            continue
        if s.dtype != object or not all(type(v) is str for v in s):
            bad.append(f"{col} has dtype {s.dtype} / non-str values")
        elif any(v == "" or "\x00" in v or v.strip() != v for v in s):
            bad.append(f"{col} has a blank, NUL or unstripped id")
        else:
            try:
                "".join(s).encode("utf-8")
            except UnicodeEncodeError:
                bad.append(f"{col} has a lone surrogate")
    if not isinstance(f["action"].dtype, pd.CategoricalDtype) or f["action"].isna().any():
        bad.append("action is not a complete categorical")
    w = f["weight"]
    if w.dtype != np.float32 or not np.isfinite(w.to_numpy()).all():
        bad.append(f"weight dtype {w.dtype} or non-finite")
    if "timestamp" in f.columns:
        ts = f["timestamp"]
        if ts.dtype != np.int64 or ((ts < TS_MIN) | (ts > TS_MAX)).any():
            bad.append("timestamp not int64 in range")
    if "part" in f.columns and (f["part"].isna().any() or not set(f["part"].astype(str)) <= set(PARTS)):
        bad.append("part outside train/valid/test")
    return bad


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout()


@dataclass
class Outcome:
    kind: str  # loaded | clean | crash
    detail: str = ""  # crash: exception type and message, or the broken invariant
    where: str = ""  # crash: the innermost project frame and the innermost frame
    seconds: float = 0.0


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "feedgan" in f.filename]
    pick = [ours[-1]] if ours else []
    if frames and (not ours or frames[-1] is not ours[-1]):
        pick.append(frames[-1])
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(pick))


def _timed_read(path: Path, fmt: str, timeout: float | None) -> Interactions:
    """read() under a SIGALRM timer (installed by main(); None: no timer, e.g. under pytest-timeout)."""
    if timeout is None:
        return read(path, fmt)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return read(path, fmt)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # an alarm due right now still raises, in the caller's try


def run_case(folder: Path, case: Case, files: dict[str, bytes], timeout: float | None = None) -> Outcome:
    shutil.rmtree(folder, ignore_errors=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    t0 = time.perf_counter()
    try:
        inter = _timed_read(folder / case.target, case.format, timeout)
        out = Outcome("loaded")
        if bad := check_table(inter):
            out = Outcome("crash", "invalid table: " + "; ".join(bad))
    except DataError as err:
        msg = str(err)
        out = Outcome("clean")
        if "\n" in msg or "\r" in msg:
            out = Outcome("crash", "multi-line DataError: " + msg[:200].encode("unicode_escape").decode())
        else:
            try:
                msg.encode("utf-8")
            except UnicodeEncodeError:
                out = Outcome("crash", "DataError message not printable as UTF-8", _where(err))
    except CaseTimeout:
        out = Outcome("crash", f"slower than {timeout:g} s")
    except Exception as err:  # noqa: BLE001 - counting exactly these is the point
        out = Outcome("crash", f"{type(err).__name__}: {str(err)[:160]}", _where(err))
    out.seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------- driver
FORMATS = ["csv", "tsv", "jsonl", "parquet", "uir", "movielens", "lastfm-hetrec", "lightgcn", "multi-behaviour",
           "cfgan", "filmtrust", "ciao-tang", "epinions-tang", "kuairand", "recbole"]


def fuzz_format(fmt: str, cases: int, seed: int, timeout: float, only: int | None = None,
                progress: Callable[[str], None] = lambda s: None) -> dict:
    counts: Counter = Counter()
    crashes: Counter = Counter()
    examples: dict[str, dict] = {}
    slowest = (0.0, -1)
    with tempfile.TemporaryDirectory(prefix="feedgan-fuzz-") as tmp:
        folder = Path(tmp) / "case"
        for k in ([only] if only is not None else range(cases)):
            rnd = random.Random(f"{seed}:{fmt}:{k}")
            case, files = make_case(fmt, rnd)
            out = run_case(folder, case, files, timeout)
            counts[out.kind] += 1
            slowest = max(slowest, (out.seconds, k))
            if out.kind == "crash":
                key = f"{out.detail.split(':')[0]} at {out.where}" if out.where else out.detail[:80]
                crashes[key] += 1
                examples.setdefault(key, {"case": k, "mutations": case.notes, "detail": out.detail,
                                          "where": out.where})
            if (k + 1) % 1000 == 0:
                progress(f"{fmt}: {k + 1} cases, {counts['crash']} crashes")
    return {"cases": sum(counts.values()), "loaded": counts["loaded"], "clean_errors": counts["clean"],
            "crashes": counts["crash"], "slowest_case_s": round(slowest[0], 3), "slowest_case": slowest[1],
            "crash_kinds": [{"count": n, **examples[key]} for key, n in crashes.most_common(5)]}


def write_report(results: dict, args: argparse.Namespace, path_json: Path, path_md: Path) -> None:
    from feedgan.io import atomic_open, write_json

    cmd = "python benchmarks/fuzz.py" + ("" if args.cases == 10_000 else f" --cases {args.cases}") + \
          ("" if args.seed == 0 else f" --seed {args.seed}")
    write_json(path_json, {"command": cmd, "seed": args.seed, "cases_per_format": args.cases,
                           "case_timeout_s": args.case_timeout, "formats": results})
    lines = ["# Reader fuzzing", "",
             "Mutated small logs in every format the readers take (byte flips, truncation, BOM, NUL, bad UTF-8,",
             "non-finite and huge numbers, Unicode digits, extreme dates, duplicated columns, very wide headers, deep",
             "JSON nesting, odd parquet types). A case *loads* (a table that keeps the schema's promises), fails",
             "*cleanly* (a one-line `DataError`), or *crashes* (any other exception, a broken table, or slower than",
             f"{args.case_timeout:g} s). Reproduce with:", "", "```", f"PYTHONPATH=src {cmd}", "```", "",
             "| format | cases | loaded | clean errors | crashes | slowest case (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for fmt, r in results.items():
        lines.append(f"| {fmt} | {r['cases']:,} | {r['loaded']:,} | {r['clean_errors']:,} | {r['crashes']:,} | "
                     f"{r['slowest_case_s']:.2f} |")
    kinds = [(fmt, c) for fmt, r in results.items() for c in r["crash_kinds"]]
    if kinds:
        lines += ["", "Crashes (first case of each kind):", ""]
        lines += [f"- {fmt} case {c['case']} ({c['count']}x): {c['detail'][:120]} at {c['where']}" for fmt, c in kinds]
    with atomic_open(path_md) as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=10_000, help="cases per format")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", action="append", choices=FORMATS, help="repeatable; default: every format")
    p.add_argument("--only", type=int, help="run just this case number (to reproduce a crash)")
    p.add_argument("--case-timeout", type=float, default=5.0, help="seconds before a case counts as a crash")
    p.add_argument("--merge", action="store_true", help="add to the formats already in the report")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "fuzz.json")
    p.add_argument("--md", type=Path, default=ROOT / "docs" / "fuzz.md")
    args = p.parse_args(argv)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    signal.signal(signal.SIGALRM, _alarm)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    results = {}
    if args.merge and args.out.exists():
        results = json.loads(args.out.read_text())["formats"]
    for fmt in args.format or FORMATS:
        t0 = time.perf_counter()
        r = fuzz_format(fmt, args.cases, args.seed, args.case_timeout, args.only,
                        progress=lambda s: print(s, file=sys.stderr, flush=True))
        r["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{fmt:16s} cases {r['cases']:6d}  loaded {r['loaded']:6d}  clean {r['clean_errors']:6d}  "
              f"crashes {r['crashes']:5d}  slowest {r['slowest_case_s']:.2f}s  ({r['seconds']} s)", flush=True)
        for c in r["crash_kinds"]:
            print(f"    {c['count']:5d}x case {c['case']}: {c['detail'][:150]}  at {c['where']}  {c['mutations']}")
        results[fmt] = r
    if args.only is None:
        write_report(results, args, args.out, args.md)
    return 0 if all(r["crashes"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
