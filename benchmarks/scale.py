"""Time and peak memory per stage for large simulated logs read from partitioned Parquet.

    PYTHONPATH=src python benchmarks/scale.py                       # 1M and 10M rows -> runs/scale.json
    PYTHONPATH=src python benchmarks/scale.py --rows 1e6 1e7 1e8    # add 100M rows
    PYTHONPATH=src python benchmarks/scale.py --publish             # also docs/benchmarks/scale.json, docs/scale.md

For each size a log is generated in chunks, one Parquet file per day (hive layout ``day=K/``), so
the generator never holds the whole log. Each stage then runs in a fresh Python process, so its
peak RSS (``wait4`` rusage of that process alone) is its own:

- ``ingest``: ``feedgan.data.readers.read(folder)``: the partitioned folder through ``pyarrow.dataset``
  into pandas, checked by ``schema.validate``.
- ``split``: ingest again, then ``prepare`` with the default ``DataConfig`` (dedup, random split,
  per-action CSR matrices) and ``Dataset.save``; its peak includes the ingest it repeats.
- ``fit``: ``Dataset.load``, ItemKNN (k=100, shrink=10) fitted on train, then top-20 for a sample
  of 2,000 users.

Seconds are measured inside the stage process (imports excluded); ``process_s`` is the whole process.
The log: ``rows / 50`` users with log-normal activity, a fixed catalogue of 20,000 items with Zipf
popularity (exponent 0.8), actions view 85 % / like 10 % / comment 3 % / share 2 %, 30 days.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "scale"
N_ITEMS, DAYS, USERS_PER_ROW = 20_000, 30, 1 / 50
ACTIONS, ACTION_P = ["view", "like", "comment", "share"], [0.85, 0.10, 0.03, 0.02]
SAMPLE_USERS = 2_000
GIB = 2 ** 30
HEADROOM = 0.8  # a stage runs only if its estimated peak stays under this share of the free memory


# ------------------------------------------------------------------------------------------ data
def _sampler(rng: np.random.Generator, weights: np.ndarray):
    """Draw indices proportionally to ``weights`` by inverting their cumulative sum."""
    cdf = np.cumsum(weights / weights.sum())
    return lambda n: np.minimum(np.searchsorted(cdf, rng.random(n)), len(weights) - 1)


def generate(rows: int, folder: Path, seed: int = 0) -> dict:
    """Write ``rows`` interactions as ``folder/day=K/part-0.parquet``, one day (rows / DAYS) at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users = max(1, int(rows * USERS_PER_ROW))
    draw_user = _sampler(rng, rng.lognormal(0.0, 1.0, n_users))
    draw_item = _sampler(rng, rng.permutation(np.arange(1, N_ITEMS + 1) ** -0.8))
    action_type = pa.dictionary(pa.int8(), pa.string())
    folder.mkdir(parents=True, exist_ok=True)
    per_day = np.full(DAYS, rows // DAYS)
    per_day[: rows % DAYS] += 1
    for day, n in enumerate(per_day):
        table = pa.table({
            "user": pa.array(draw_user(n).astype(np.int64)),
            "item": pa.array(draw_item(n).astype(np.int64)),
            "action": pa.DictionaryArray.from_arrays(
                pa.array(rng.choice(len(ACTIONS), n, p=ACTION_P).astype(np.int8)), pa.array(ACTIONS)).cast(action_type),
            "timestamp": pa.array(1_700_000_000 + day * 86_400 + rng.integers(0, 86_400, n), pa.int64()),
        })
        (folder / f"day={day}").mkdir(exist_ok=True)
        pq.write_table(table, folder / f"day={day}" / "part-0.parquet", row_group_size=1 << 20)
    return {"rows": int(rows), "users_drawn_from": n_users, "items": N_ITEMS, "days": DAYS,
            "parquet_bytes": sum(p.stat().st_size for p in folder.rglob("*.parquet"))}


# ------------------------------------------------------------------------------------------ stages
def _ingest(folder: Path):
    """The partitioned folder as validated Interactions: the library's parquet reader (pandas in memory)."""
    from feedgan.data.readers import read

    return read(folder)


def stage_ingest(folder: Path) -> dict:
    import feedgan.data.readers  # noqa: F401  (imports outside the timed section)

    t = time.perf_counter()
    inter = _ingest(folder)
    return {"seconds": time.perf_counter() - t, "rows": len(inter),
            "frame_bytes": int(inter.frame.memory_usage(deep=True).sum())}


def stage_split(folder: Path) -> dict:
    import feedgan.data.readers  # noqa: F401
    from feedgan.data.dataset import DataConfig, prepare

    t0 = time.perf_counter()
    inter = _ingest(folder)
    t1 = time.perf_counter()
    data = prepare(inter, DataConfig())
    del inter
    data.save(folder.parent / "dataset")
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "ingest_s": t1 - t0, "split_s": t2 - t1, "users": data.n_users,
            "items": data.n_items, "train_nnz": data.matrix("train").nnz, "test_nnz": data.matrix("test").nnz}


def stage_fit(folder: Path) -> dict:
    from feedgan.data.dataset import Dataset
    from feedgan.rec.baselines import ItemKNN

    t0 = time.perf_counter()
    data = Dataset.load(folder.parent / "dataset")
    t1 = time.perf_counter()
    model = ItemKNN(k=100, shrink=10.0).fit(data)
    t2 = time.perf_counter()
    users = np.random.default_rng(0).choice(data.n_users, min(SAMPLE_USERS, data.n_users), replace=False)
    model.recommend(users, n=20)
    t3 = time.perf_counter()
    return {"seconds": t3 - t0, "load_s": t1 - t0, "fit_s": t2 - t1, "score_s": t3 - t2,
            "scored_users": len(users), "model": "ItemKNN(k=100, shrink=10)", "W_nnz": int(model.W_.nnz)}


STAGES = {"ingest": stage_ingest, "split": stage_split, "fit": stage_fit}


def run_stage(stage: str, folder: Path) -> dict:
    """Run one stage in a fresh interpreter; its own wall time, peak RSS and result."""
    out = folder.parent / f"{stage}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--stage", stage, str(folder), str(out)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        return {"failed": f"exit {os.waitstatus_to_exitcode(status)}", "process_s": wall,
                "peak_rss_gib": usage.ru_maxrss * 1024 / GIB}
    result = json.loads(out.read_text())
    return {**result, "process_s": wall, "peak_rss_gib": usage.ru_maxrss * 1024 / GIB}


def _available_gib() -> float:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:")) / 2 ** 20


def _too_big(stage: str, rows: int, done: list[dict], now: dict) -> str:
    """Why ``stage`` is not run at ``rows`` (empty: run it): a stage it needs did not run, or its peak
    scaled linearly from the largest size already measured would pass HEADROOM of the free memory."""
    if stage == "fit" and "skipped" in now.get("split", {}):
        return "needs the split stage's dataset"
    measured = [r for r in done if "peak_rss_gib" in r["stages"][stage]]
    if not measured:
        return ""
    last = max(measured, key=lambda r: r["rows"])
    estimate, free = last["stages"][stage]["peak_rss_gib"] * rows / last["rows"], _available_gib()
    if estimate <= HEADROOM * free:
        return ""
    return (f"estimated peak {estimate:.1f} GiB (linear from {last['rows']:,} rows) over {HEADROOM:.0%} "
            f"of the {free:.1f} GiB free")


def _table(results: list[dict]) -> str:
    lines = ["| rows | users | items | generate s | ingest s | ingest GiB | split s | split GiB | fit+score s | fit GiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r["stages"]
        def cell(name, key, fmt=".1f", s=s):
            return f"{s[name][key]:{fmt}}" if key in s[name] else ("not run" if "skipped" in s[name] else "failed")
        lines.append(f"| {r['rows']:,} | {cell('split', 'users', ',')} | {cell('split', 'items', ',')} | "
                     f"{r['generate_s']:.1f} | {cell('ingest', 'seconds')} | {cell('ingest', 'peak_rss_gib', '.2f')} | "
                     f"{cell('split', 'seconds')} | {cell('split', 'peak_rss_gib', '.2f')} | "
                     f"{cell('fit', 'seconds')} | {cell('fit', 'peak_rss_gib', '.2f')} |")
    return "\n".join(lines)


HEADING = "## Past the small data sets"


def _section(report: dict) -> str:
    """The docs section: the table, the command, and every stage that did not run, with why."""
    skipped = [f"- {r['rows']:,} rows, {stage}: {info.get('skipped') or info.get('failed')}"
               for r in report["results"] for stage, info in r["stages"].items()
               if "skipped" in info or "failed" in info]
    return "\n".join([HEADING, "", "<!-- written by benchmarks/scale.py --publish -->", "",
                      _table(report["results"]), "", f"Command: `{report['command']}` ({report['cpus']} CPUs).", "",
                      *(["Not run:", "", *skipped, ""] if skipped else [])])


def publish_section(path: Path, section: str) -> None:
    """Replace the section under HEADING (up to the next ``## `` heading) or append it, atomically."""
    text = path.read_text() if path.exists() else "# Scale\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--publish", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet and datasets under runs/scale")
    ap.add_argument("--stage", nargs=3, metavar=("STAGE", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:  # inside a fresh process: one stage, its result as JSON
        stage, folder, out = args.stage
        Path(out).write_text(json.dumps(STAGES[stage](Path(folder))))
        return
    results = []
    for rows in (int(r) for r in args.rows):
        base = WORK / f"{rows}"
        shutil.rmtree(base, ignore_errors=True)
        t = time.perf_counter()
        info = generate(rows, base / "log")
        info["generate_s"] = time.perf_counter() - t
        info["stages"] = {}
        for stage in STAGES:
            skip = _too_big(stage, rows, results, info["stages"])
            info["stages"][stage] = {"skipped": skip} if skip else run_stage(stage, base / "log")
            print(rows, stage, json.dumps(info["stages"][stage]), flush=True)
        results.append(info)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report = {"command": "PYTHONPATH=src python benchmarks/scale.py " + " ".join(sys.argv[1:]),
              "cpus": os.cpu_count(), "results": results}
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / "scale.json").write_text(json.dumps(report, indent=2))
    print(_table(results))
    if args.publish:
        (ROOT / "docs" / "benchmarks" / "scale.json").write_text(json.dumps(report, indent=2))
        publish_section(ROOT / "docs" / "scale.md", _section(report))
        print("published docs/benchmarks/scale.json and docs/scale.md")


if __name__ == "__main__":
    main()
