"""Synthetic users on real data: every generator's fidelity, two-sample AUC, privacy and utility.

    PYTHONPATH=src python benchmarks/synth.py --datasets sim,ml1m,lastfm,tmall --generators copy,independent,vae,gan

Each data set's users are split by user into train / holdout / test (0.6 / 0.2 / 0.2, seeded); every
generator is fitted on the train users only and samples as many users as train holds; the report
(:func:`feedgan.synth.report.assess`) scores them, with train-on-synthetic / test-on-real over the five
recommenders and the shadow-model attack (which refits the generator on half the train users). Speed
is measured beside it: fit seconds, seconds to sample 100k users, seconds for the report.
Writes ``docs/benchmarks/synth-<data>.json`` and the tables between the markers of ``docs/synth.md``.
The real data sets are read from ``../shared/data`` (``FEEDGAN_DATA`` overrides) and skipped when absent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from markers import write_section

from feedgan.data.readers import read
from feedgan.data.schema import DataError
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.io import atomic_open
from feedgan.synth import Profiles
from feedgan.synth.generators import GENERATORS
from feedgan.synth.report import GOALS, assess
from feedgan.synth.utility import augmentation, tstr

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "synth.md"
BEGIN, END = "<!-- synth-benchmark:begin -->", "<!-- synth-benchmark:end -->"
DATASETS = {  # name -> (folder under the data root, reader format); "sim" is simulated here
    "ml1m": ("movielens-1m/lightgcnpp-implicit-split", "lightgcn"),
    "lastfm": ("lastfm-hetrec2011", "lastfm-hetrec"),
    "tmall": ("tmall-mbcgcn", "multi-behaviour"),
}


def data_root() -> Path:
    return Path(os.environ.get("FEEDGAN_DATA") or REPO.parent / "shared" / "data")


def load(name: str, max_users: int | None, max_items: int | None = None) -> Profiles | None:
    """The data set's users as Profiles (every part of a predefined split pooled), or None when absent;
    ``max_items`` keeps the items with the most users (and the users left with any event)."""
    if name == "sim":
        inter = simulate(SimulationConfig(n_users=10_000, n_items=3_700, seed=0)).interactions
    else:
        folder, fmt = DATASETS[name]
        path = data_root() / folder
        if not path.exists():
            print(f"{name}: {path} not found, skipped", file=sys.stderr)
            return None
        inter = read(path, fmt)
    if max_items is not None:
        users_per_item = inter.frame.groupby("item", observed=True)["user"].nunique()
        top = users_per_item.sort_values(ascending=False, kind="stable").index[:max_items]
        inter = inter.with_frame(inter.frame.loc[inter.frame["item"].isin(top)])
    p = Profiles.from_interactions(inter)
    if max_users is not None and p.n_users > max_users:  # the first users, in the log's order
        p = p.subset(list(range(max_users)))
    return p


def run(name: str, generators: list[str], seed: int, max_users: int | None, sample_n: int,
        saved: dict | None = None, save=None, max_items: int | None = None) -> dict | None:
    """Every generator's report on one data set and seed; ``saved`` (an earlier result of the same data,
    size and seed) keeps the generators not rerun, and ``save(out)`` runs after each generator."""
    profiles = load(name, max_users, max_items)
    if profiles is None:
        return None
    train, holdout, test = profiles.split_users((0.6, 0.2, 0.2), seed=seed)
    out = {"data": name, "seed": seed, "users": profiles.n_users, "items": profiles.n_items,
           "actions": profiles.action_names, "friends": profiles.friends is not None,
           "times": profiles.times is not None, "generators": {}}
    if saved and all(saved.get(k) == out[k] for k in ("seed", "users", "items")):
        out["generators"] = dict(saved.get("generators", {}))
    for g in generators:
        t0 = time.perf_counter()
        gen = GENERATORS[g]().fit(train, seed=seed)
        fit_s = time.perf_counter() - t0
        synth = gen.sample(train.n_users, seed=seed + 1)  # as many as it learned from: TSTR compares like with like
        t0 = time.perf_counter()
        gen.sample(sample_n, seed=seed + 2)
        sample_s = time.perf_counter() - t0

        def fit_sample(p: Profiles, g=g) -> Profiles:
            return GENERATORS[g]().fit(p, seed=seed + 3).sample(p.n_users, seed=seed + 4)

        t0 = time.perf_counter()
        result = assess(train, holdout, synth, test=test, fit_sample=fit_sample, seed=seed,
                        utility=lambda tr, sy, te: tstr(tr, sy, te, seed=seed),
                        log=lambda line, g=g: print(f"{name} {g}: {line}", file=sys.stderr, flush=True))
        result["speed"] = {"fit_s": fit_s, f"sample_{sample_n}_s": sample_s,
                           "report_s": time.perf_counter() - t0}
        try:  # sparse real users (at most 5 items) given generated items, against the two controls
            result["augmentation"] = augmentation(train, synth, test=test, seed=seed)
        except DataError as e:
            result["augmentation"] = {"skipped": str(e)}
        out["generators"][g] = result
        print(f"{name} {g}: fit {fit_s:.1f}s, sample {sample_n:,} in {sample_s:.1f}s, goals "
              + json.dumps({k: v["value"] for k, v in result["goals"].items()}), file=sys.stderr, flush=True)
        if save is not None:
            save(out)
    return out


def _cell(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(res: dict) -> list[str]:
    """One markdown table per data set: a row per generator."""
    lines = [f"### {res['data']}: {res['users']:,} users, {res['items']:,} items, actions "
             f"{', '.join(res['actions'])}{', friends' if res['friends'] else ''}{', times' if res['times'] else ''}",
             "", "| generator | TSTR ratio (mean NDCG@20) | membership AUC (worst attack) | two-sample AUC "
             "| activity 1-TVD (ceiling) | popularity 1-TVD (ceiling) | exact copies (natural) | fit s "
             "| sample s | report s | augmentation: EASE ΔRecall@20 generated / self-training / popularity |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for g, r in res["generators"].items():
        goals, fid, cp, sp = r["goals"], r["fidelity"], r["privacy"]["exact_copies"], r["speed"]
        act, pop = fid["activity_1_minus_tvd"], fid["popularity_1_minus_tvd"]
        sample_key = next(k for k in sp if k.startswith("sample_"))
        lines.append(f"| {g} | {_cell(goals['tstr_ratio']['value'])} | {_cell(goals['membership_auc']['value'])} "
                     f"| {_cell(goals['two_sample_auc']['value'])} | {act['synth']:.3f} ({act['ceiling']:.3f}) "
                     f"| {pop['synth']:.3f} ({pop['ceiling']:.3f}) | {cp['synth_rate']:.3f} ({cp['natural_rate']:.3f}) "
                     f"| {sp['fit_s']:.1f} | {sp[sample_key]:.1f} | {sp['report_s']:.1f} | {_augment(r)} |")
    return lines + [""]


def _augment(r: dict) -> str:
    """EASE's mean delta Recall@20 (p-value) for each way of filling sparse users, or why it was skipped."""
    aug = r.get("augmentation")
    if not aug or "skipped" in aug:
        return "skipped: no sparse users" if aug else "-"
    ease = aug["models"]["ease"]
    return " / ".join(f"{ease[m]['mean_delta']:+.3f} (p {ease[m]['p_value']:.2f})"
                      for m in ("generated", "self-training", "popularity")) + f"; {ease['generated']['n_users']} users"


def _commands(res: dict | None) -> list[str]:
    """The commands that wrote a saved result, oldest first (results of several runs add up)."""
    if not res:
        return []
    return list(res.get("commands") or ([res["command"]] if res.get("command") else []))


def result_path(name: str, seed: int) -> Path:
    """docs/benchmarks/synth-<data>.json for seed 0 (the tables), synth-<data>-seed<s>.json for the others."""
    return REPO / "docs" / "benchmarks" / (f"synth-{name}.json" if seed == 0 else f"synth-{name}-seed{seed}.json")


def spread(name: str) -> list[str]:
    """Mean ± std over the seeds run of each generator's goal figures (only where two or more seeds ran)."""
    runs = [json.loads(f.read_text()) for f in sorted((REPO / "docs" / "benchmarks").glob(f"synth-{name}*.json"))]
    runs = [r for r in runs if r.get("data") == name and "generators" in r]
    rows = []
    for g in dict.fromkeys(g for r in runs for g in r["generators"]):
        per_seed = [r["generators"][g]["goals"] for r in runs if g in r["generators"]]
        if len(per_seed) < 2:
            continue
        cells = []
        for key in ("tstr_ratio", "membership_auc", "two_sample_auc"):
            vals = [goal[key]["value"] for goal in per_seed if goal[key]["value"] is not None]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "-")
        rows.append(f"| {g} | {len(per_seed)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    commands = list(dict.fromkeys(c for r in runs if r.get("seed") for c in _commands(r)))
    return ["", "Over seeds (each seed a new split, fit and sample; mean ± std of the figures above; the other "
            "seeds by " + "; then ".join(f"`{c}`" for c in commands) + "):", "",
            "| generator | seeds | TSTR ratio | membership AUC | two-sample AUC |", "|---|---:|---:|---:|---:|",
            *rows, ""]


def plot(results: list[dict], path: Path) -> None:
    """The utility-privacy plane: each generator's TSTR ratio against its worst membership AUC, one
    panel per data set, the goals' corner shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.2), squeeze=False)
    for ax, res in zip(axes[0], results):
        ax.fill_between([0.45, GOALS["mia_auc_max"]], GOALS["tstr_ratio_min"], 1.1, color="tab:green", alpha=0.15)
        for g, r in res["generators"].items():
            x, y = r["goals"]["membership_auc"]["value"], r["goals"]["tstr_ratio"]["value"]
            if x is not None and y is not None:
                ax.scatter(x, y, s=18)
                ax.annotate(g, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
        ax.set(xlim=(0.45, 1.03), ylim=(0.0, 1.1), title=res["data"], xlabel="membership AUC (worst attack)")
    axes[0][0].set_ylabel("TSTR ratio (mean NDCG@20)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_docs() -> None:
    """The section of docs/synth.md from every data set's saved result (runs of different data sets add up)."""
    lines = ["", f"Goals: TSTR ratio >= {GOALS['tstr_ratio_min']}, membership-inference AUC <= "
             f"{GOALS['mia_auc_max']}, two-sample AUC <= {GOALS['two_sample_auc_max']}. One seed per data set "
             "(the split and every generator) unless a spread table says otherwise; each table says the commands "
             "that made it. The seconds come from runs that mostly shared the 2 cores with a second benchmark, "
             "so they are upper bounds; the Generators section has quiet-machine figures.", ""]
    results = []
    for path in sorted((REPO / "docs" / "benchmarks").glob("synth-*.json")):
        res = json.loads(path.read_text())
        if "generators" in res and path == result_path(res["data"], 0):
            results.append(res)
    if results:
        plot(results, REPO / "docs" / "synth-tradeoff.png")
        lines += ["![TSTR ratio against membership AUC, per data set; the goals' corner shaded](synth-tradeoff.png)",
                  ""]
    for res in results:
        heading, *rest = table(res)
        lines += [heading, "", "Reproduce: " + "; then ".join(f"`{c}`" for c in _commands(res)), *rest,
                  *spread(res["data"])]
    write_section(DOC, BEGIN, END, lines, "synth-benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="sim,ml1m,lastfm,tmall")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--seeds", default="0", help="comma-separated; seed 0 makes the tables, more seeds the spread")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--max-users", type=int, default=None, help="cap each data set's users (a quick run)")
    ap.add_argument("--max-items", type=int, default=None, help="keep the items with the most users")
    ap.add_argument("--sample-n", type=int, default=100_000, help="users sampled for the sampling-speed figure")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/ as it is")
    ap.add_argument("--docs-only", action="store_true", help="only rewrite docs/synth.md from the saved results")
    args = ap.parse_args()
    if args.docs_only:
        return write_docs()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in args.datasets.split(","):
        for seed in map(int, args.seeds.split(",")):
            path = result_path(name, seed)
            command = f"PYTHONPATH=src python benchmarks/synth.py --datasets {name} " + " ".join(
                a for a in sys.argv[1:] if a != args.datasets and a != "--datasets")

            saved = json.loads(path.read_text()) if path.exists() else None
            commands = list(dict.fromkeys([*_commands(saved), command]))

            def save(res: dict, path=path, commands=commands) -> None:  # after every generator: a long run keeps its rows
                if args.no_write:
                    return
                with atomic_open(path) as fh:
                    fh.write(json.dumps({**res, "commands": commands}, indent=2, default=str) + "\n")
                write_docs()

            run(name, args.generators.split(","), seed, args.max_users, args.sample_n, saved=saved, save=save,
                max_items=args.max_items)


if __name__ == "__main__":
    main()
