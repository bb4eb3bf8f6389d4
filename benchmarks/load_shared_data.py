"""Load every real data set in the shared data folder with its named reader and compare with SOURCE.md.

    .venv/bin/python benchmarks/load_shared_data.py

The data folder is ``../shared/data`` next to the repository (override with ``FEEDGAN_DATA=/path``);
without it the script says so and exits 0. It prints users / items / interactions / social edges beside
the counts stated in each folder's SOURCE.md, explains any difference, and writes ``docs/data.md``
(atomically). The data itself is only read, never copied into the repository.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from feedgan.data.readers import read
from feedgan.io import atomic_open

REPO = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/load_shared_data.py"

# Counts as stated in each folder's SOURCE.md (and the data README). "social" counts rows of the edge file.
EXPECTED = {
    "movielens-100k": dict(path="movielens-100k", format="movielens",
                           users=943, items=1682, interactions=100_000),
    "movielens-1m (LightGCN++ split)": dict(path="movielens-1m/lightgcnpp-implicit-split", format="lightgcn",
                                            users=6039, items=3628, interactions=836_478,
                                            parts=dict(train=590_733, valid=80_897, test=164_848)),
    "cfgan ML100K": dict(path="cfgan-original-splits/ML100K", format="cfgan",
                         users=943, items=1653, interactions=99_963, parts=dict(train=80_000, test=19_963)),
    "cfgan Ciao": dict(path="cfgan-original-splits/Ciao", format="cfgan",
                       users=662, items=1347, interactions=16_821, parts=dict(train=13_464, test=3_357)),
    "irgan ml-100k split": dict(path="irgan-ml100k-split", format="uir",
                                users=943, items=1650, interactions=100_000, parts=dict(train=80_000, test=20_000)),
    "lightgcn gowalla": dict(path="lightgcn-gowalla", format="lightgcn",
                             users=29_858, items=40_981, interactions=1_027_370,
                             parts=dict(train=810_128, test=217_242)),
    "lastfm-hetrec2011": dict(path="lastfm-hetrec2011", format="lastfm-hetrec",
                              users=1892, items=17_632, interactions=92_834, social=25_434),
    "filmtrust": dict(path="filmtrust", format="filmtrust", users=1508, items=2071, interactions=35_497, social=1853),
    # view + cart + buy train pairs (858,505 + 180,027 + 92,180) and one test pair per user and behaviour
    "tmall-mbcgcn": dict(path="tmall-mbcgcn", format="multi-behaviour", users=15_449, items=11_953,
                         interactions=1_177_059, parts=dict(train=1_130_712, test=46_347)),
}


def data_root() -> Path:
    return Path(os.environ.get("FEEDGAN_DATA") or REPO.parent / "shared" / "data")


def facts(inter) -> tuple[dict, list[str]]:
    """Counts of a loaded data set plus notes on what is in it (duplicates, splits, side files)."""
    f = inter.frame
    got = dict(users=f["user"].nunique(), items=f["item"].nunique(), interactions=len(f))
    notes = []
    dup = int(f.duplicated(["user", "item"]).sum())
    if dup:
        notes.append(f"{dup:,} repeated (user, item) pairs ({len(f) - dup:,} distinct pairs), kept as rows")
    if inter.has_parts:
        got["parts"] = {p: int(n) for p, n in f["part"].value_counts(sort=False).items() if n}
        seen: set = set()
        for part in ("train", "valid", "test"):
            new = set(f.loc[f["part"] == part, "item"]) - seen
            if seen and new:
                notes.append(f"{len(new):,} items appear only in {part} (not in earlier parts)")
            seen |= new
    if inter.social is not None:
        s = inter.social
        got["social"] = len(s)
        undirected = len({frozenset(e) for e in zip(s["src"], s["dst"])})
        both = len(set(zip(s["src"], s["dst"])) & set(zip(s["dst"], s["src"])))
        share = both / max(len(s), 1)
        notes.append(f"social: {undirected:,} undirected pairs; {share:.0%} of edges have their reverse")
        users = set(s["src"]) | set(s["dst"])
        outside = len(users - set(f["user"]))
        notes.append(f"{len(users):,} users in the social graph" +
                     (f", {outside:,} of them with no interactions (not counted as users)" if outside else ""))
    notes += [f"{k}={v:,}" for k, v in inter.notes.items() if isinstance(v, int) and v]
    return got, notes


def explain(name: str, field: str, inter, got, want) -> str:
    """Why a count differs from SOURCE.md, found by looking at the data."""
    f = inter.frame
    if field == "items" and inter.has_parts:
        train = f.loc[f["part"] == "train", "item"].nunique()
        if train == want:
            return f"SOURCE.md's {want:,} items are the train file's; train+test together have {got:,}"
    if field == "interactions":
        distinct = len(f.drop_duplicates(["user", "item"]))
        if distinct == want:
            return f"SOURCE.md counts distinct pairs ({want:,}); the files repeat {got - want:,}"
    return f"{field}: {got:,} loaded vs {want:,} in SOURCE.md (unexplained)"


def cell(got, want) -> str:
    if want is None:
        return "-" if got is None else f"{got:,}"
    if isinstance(want, dict):
        return ", ".join(f"{k} {got.get(k, 0):,}" + ("" if got.get(k, 0) == v else f" (SOURCE {v:,})")
                         for k, v in want.items())
    return f"{got:,} = {want:,}" if got == want else f"**{got:,} vs {want:,}**"


def main() -> int:
    root = data_root()
    if not root.is_dir():
        print(f"no shared data at {root}; nothing to check (set FEEDGAN_DATA to point elsewhere)")
        return 0
    fields = ("users", "items", "interactions", "social", "parts")
    rows, mismatches = [], 0
    for name, spec in EXPECTED.items():
        path = root / spec["path"]
        if not (path.exists() or path.with_name(path.name + ".train").exists()):
            rows.append([name, spec["format"], *["-"] * 6, f"skipped: {path} not found"])
            print(f"{name:34s} skipped ({path} not found)")
            continue
        start = time.perf_counter()
        inter = read(path, spec["format"])
        secs = time.perf_counter() - start
        got, notes = facts(inter)
        for field in fields[:4]:
            if field in spec and got.get(field) != spec[field]:
                mismatches += 1
                notes.insert(0, "MISMATCH " + explain(name, field, inter, got.get(field), spec[field]))
        if "parts" in spec and got.get("parts") != spec["parts"]:
            mismatches += 1
            notes.insert(0, f"MISMATCH parts {got.get('parts')} vs {spec['parts']}")
        rows.append([name, spec["format"], *(cell(got.get(k), spec.get(k)) for k in fields),
                     f"{secs:.2f}", "; ".join(notes)])
        print(f"{name:34s} users {got['users']:>6,}/{spec['users']:<6,} "
              f"items {got['items']:>6,}/{spec['items']:<6,} "
              f"interactions {got['interactions']:>9,}/{spec['interactions']:<9,} "
              f"social {got.get('social', '-')}/{spec.get('social', '-')}  {secs:.2f}s")
        for note in notes:
            print(f"{'':36s}{note}")
    write_doc(root, rows)
    unexplained = sum("(unexplained)" in row[-1] for row in rows)
    print(f"{mismatches} mismatch(es), {unexplained} unexplained; wrote {REPO / 'docs' / 'data.md'}")
    return 1 if unexplained else 0


OWN_FILES = """\
`csv` and `tsv` read any delimited log. `--columns` maps our names (`user`, `item`, `action`, `timestamp`,
`weight`, `part`) to the file's columns by header name or by 0-based position; columns neither mapped nor
recognised (`user_id`, `rating`, ...) are ignored. `--sep` takes one character (`';'`, `'|'`) or `whitespace`
(runs of spaces and tabs). A file without a header row takes `--no-header`, and its columns are then mapped by
position. For `ratings.csv` holding `user,item,date,rating,votes` lines and no header:

```bash
feedgan data inspect ratings.csv --format csv --no-header --columns user=0,item=1,weight=3
feedgan train ease --data ratings.csv --format csv --no-header --columns user=0,item=1,weight=3 \\
    --positive-threshold 4
```

Read with a header (the default), a first line whose user and item fields are numbers, or that is all numbers
with no column name we recognise, is refused with a line pointing at `--no-header`, rather than losing that
row as column names. The same options work for `data convert`, `bench` and `train`, and
`read(path, "csv", sep=..., header=False, columns={"user": 0, "item": 1, "weight": 3})` in Python.
"""  # how to read a file no named format covers, kept below the table

CIAO_LAYOUTS = """\
`ciao` and `epinions` read the LibRec layout, `user item rating ...`; `ciao-tang` and `epinions-tang` read
Tang et al.'s `user product category rating helpfulness [time]`, whose third column is a category. Both take
comma- or whitespace-separated lines and a `trust*.txt` beside the ratings. Ratings must lie on the 1-5 scale:
a value outside it (a category read as a rating) is refused with its file and line and the other layout's name,
before any `--positive-threshold` is applied.

```bash
feedgan data inspect rating_with_timestamp.txt --format epinions-tang --positive-threshold 4
```
"""  # which column holds a Ciao / Epinions rating

MERGING = """\
Repeated (user, item, action) rows become one pair. `--dedup` (for `data inspect`, `train` and `bench`)
says how their weights merge: `max` keeps the largest, `last` the latest row (by timestamp, else file order),
`sum` adds them up, `count` counts the rows. The default, `auto`, keeps the largest rating (a 5 and a 4 stay
5) and adds up counts and events such as plays or views. `data inspect` prints both the rows read and the
rows kept after merging (and any threshold or k-core), and its notes give the rule and how many rows merged.
"""  # how repeated rows merge


def write_doc(root: Path, rows: list[list[str]]) -> None:
    head = ["data set", "format", "users (loaded = SOURCE.md)", "items", "interactions", "social edges",
            "parts", "load s", "notes"]
    where = os.path.relpath(root, REPO)
    lines = ["# Real data sets: loaded counts vs SOURCE.md", "",
             f"Reproduce with `{COMMAND}` (data read from `{where}`; override with `FEEDGAN_DATA`).",
             "Each count is `loaded = stated` when they agree; differences are in bold and explained in the notes.",
             "Users and items are counted from the interactions only (ids seen only in a social graph are not).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    lines += ["", "## Your own delimited files", "", OWN_FILES.rstrip("\n")]
    lines += ["", "## Ciao and Epinions layouts", "", CIAO_LAYOUTS.rstrip("\n")]
    lines += ["", "## Repeated rows", "", MERGING.rstrip("\n")]
    with atomic_open(REPO / "docs" / "data.md") as fh:
        fh.write("\n".join(lines) + "\n")

if __name__ == "__main__":
    sys.exit(main())
