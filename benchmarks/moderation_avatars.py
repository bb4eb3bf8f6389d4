"""Generated-avatar detection: trained on real UTKFace faces vs one preset's samples, tested on the others.

    # the generators, one after another on one thread (3 minutes each at 32x32)
    for spec in "dcgan 0" "dcgan 1" "seed-avatar 0" "modern 0"; do set -- $spec
      OMP_NUM_THREADS=1 feedgan avatars train --images ../shared/data/avatars-utkface/utkface_crop_part1_200px.tar \\
        --preset $1 --size 32 --budget 3m --seed $2 --runs-dir runs/mod-avatars --no-progress; done
    PYTHONPATH=src python benchmarks/moderation_avatars.py --runs runs/mod-avatars --seeds 0,1,2

Every generator's samples are written as PNG files and read back with
:func:`feedgan.avatars.images.load_images`, the reader (and resize) the real JPEG faces go through. The real
faces are split per seed into train (50%), validation (20%) and test (30%). Each detector
(:class:`feedgan.moderation.avatars.AvatarDetector`: ``spectrum``, ``cnn``, and ``cnn-aug``, the CNN trained
with JPEG / resize augmentation) is fitted on the train faces vs samples of the training generator
(``--train-on``, dcgan seed 0); its threshold is set on the validation faces (1% of them flagged; no test face
and no test generator is used to pick it); then it scores the test faces vs fresh samples of every generator:
the training one (seen) and the held-out ones, under each condition of
:func:`feedgan.moderation.avatars.conditions` applied to real and generated pictures alike. Reported per
detector, generator and condition (mean ± std over seeds): ROC-AUC, the TPR at the validation threshold and
the FPR it gives on the test faces, and the TPR at 1% FPR read off the test ROC curve (a best-case threshold).
Writes ``docs/benchmarks/moderation-avatars.json`` and the tables between the markers of ``docs/moderation.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from markers import write_section

from feedgan.avatars.grid import save_each
from feedgan.avatars.images import load_images
from feedgan.avatars.train import last_stats, read_run, sample
from feedgan.io import atomic_open
from feedgan.moderation.avatars import AvatarDetector, conditions, evaluate, split

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "moderation.md"
JSON = REPO / "docs" / "benchmarks" / "moderation-avatars.json"
BEGIN, END = "<!-- moderation-avatars:begin -->", "<!-- moderation-avatars:end -->"
REAL = REPO.parent / "shared" / "data" / "avatars-utkface" / "utkface_crop_part1_200px.tar"
DETECTORS = {"spectrum": dict(kind="spectrum"), "cnn": dict(kind="cnn"), "cnn-aug": dict(kind="cnn", augment=True)}
METRICS = ("roc_auc", "tpr_at_threshold", "fpr_at_threshold", "tpr_at_1pct_fpr")
SAMPLE_SEEDS = {"train": 100, "test": 200}  # latent seeds of the training and test samples


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def generators(runs: Path) -> dict[str, dict]:
    """Name (preset, plus -s<seed> for seeds other than 0) -> run folder, preset, seed and steps trained."""
    out = {}
    for run in sorted(p for p in runs.iterdir() if (p / "generator.safetensors").exists()):
        cfg, _ = read_run(run)
        name = cfg.preset + (f"-s{cfg.seed}" if cfg.seed else "")
        stats = last_stats(run) or {}
        out[name] = {"run": run, "preset": cfg.preset, "seed": cfg.seed, "size": cfg.size,
                     "steps": stats.get("step"), "train_seconds": stats.get("time")}
    return out


def samples(gen: dict, part: str, n: int, size: int, cache: Path) -> np.ndarray:
    """``n`` samples of a generator, written as PNGs under ``cache`` and read back through the real faces'
    reader at ``size``."""
    folder = cache / f"{gen['run'].name}-{part}-{n}"
    if not folder.exists() or len(list(folder.glob("*.png"))) != n:
        save_each(sample(gen["run"], n, seed=SAMPLE_SEEDS[part]), folder)
    return load_images(folder, size=size).images


def summarise(per_seed: list[dict]) -> dict:
    """{generator: {condition: {metric: [mean, std]}}} over the seeds' :func:`evaluate` results."""
    first = per_seed[0]
    return {g: {c: {k: [float(np.mean([r[g][c][k] for r in per_seed])), float(np.std([r[g][c][k] for r in per_seed]))]
                    for k in METRICS} for c in first[g]} for g in first}


def run(args) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    gens = generators(Path(args.runs))
    if args.train_on not in gens:
        raise SystemExit(f"{args.runs}: no finished run named {args.train_on} (have {', '.join(gens) or 'none'})")
    real = load_images(args.real, size=args.size).images
    log(f"real faces: {len(real)} at {args.size}x{args.size} ({time.perf_counter() - t0:.0f}s)")
    cache = Path(args.runs) / "png"
    train_fake = samples(gens[args.train_on], "train", args.n_train, args.size, cache)
    test_fake = {g: samples(info, "test", args.n_test, args.size, cache) for g, info in gens.items()}
    timings = {"load_and_sample_s": round(time.perf_counter() - t0, 1)}
    log(f"samples of {', '.join(gens)} ({timings['load_and_sample_s']}s)")
    results, fit_s, eval_s = {d: [] for d in DETECTORS}, {d: [] for d in DETECTORS}, {d: [] for d in DETECTORS}
    for seed in args.seeds:
        tr, val, te = split(len(real), seed, shares=(0.5, 0.2))
        for name, kw in DETECTORS.items():
            t = time.perf_counter()
            det = AvatarDetector(**kw, seed=seed).fit(real[tr], train_fake)
            det.calibrate(real[val])
            fit_s[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            res = evaluate(det, real[te], test_fake)
            eval_s[name].append(time.perf_counter() - t)
            results[name].append(res)
            log(f"seed {seed} {name}: " + ", ".join(f"{g} AUC {r['clean']['roc_auc']:.3f} TPR "
                                                    f"{r['clean']['tpr_at_threshold']:.2f}" for g, r in res.items())
                + f" (fit {fit_s[name][-1]:.0f}s, test {eval_s[name][-1]:.0f}s)")
    timings.update({f"{d}_fit_s": round(float(np.mean(fit_s[d])), 1) for d in DETECTORS})
    timings.update({f"{d}_test_s": round(float(np.mean(eval_s[d])), 1) for d in DETECTORS})
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    n_tr, n_val, n_te = (len(p) for p in split(len(real), args.seeds[0], shares=(0.5, 0.2)))
    return {"size": args.size, "seeds": args.seeds, "trained_on": args.train_on,
            "n": {"real_train": n_tr, "real_validation": n_val, "real_test": n_te, "fake_train": args.n_train,
                  "fake_test_per_generator": args.n_test},
            "generators": {g: {k: v for k, v in info.items() if k != "run"} for g, info in gens.items()},
            "conditions": list(conditions(args.size)), "timings": timings,
            "results": {d: summarise(r) for d, r in results.items()}}


def _cell(ms: dict, key: str) -> str:
    mean, std = ms[key]
    return f"{mean:.2f} ± {std:.2f}"


def write_docs(out: dict) -> None:
    conds = out["conditions"]
    head = "| generator | detector | " + " | ".join(conds) + " |"
    rule = "|---|---|" + "---:|" * len(conds)
    gens = list(next(iter(out["results"].values())))
    order = [out["trained_on"]] + [g for g in gens if g != out["trained_on"]]

    def table(cell) -> list[str]:
        rows = [head, rule]
        for g in order:
            for d, per in out["results"].items():
                seen = " (seen)" if g == out["trained_on"] else ""
                rows.append(f"| {g}{seen} | {d} | " + " | ".join(cell(per[g][c]) for c in conds) + " |")
        return rows

    n, t = out["n"], out["timings"]
    steps = ", ".join(f"{g} {info['steps']} steps" for g, info in out["generators"].items())
    lines = ["", f"**TPR at the 1% FPR threshold set on validation faces** (the FPR it gives on the test faces in "
             f"brackets), {out['size']}x{out['size']}, mean ± std over seeds {', '.join(map(str, out['seeds']))}:", "",
             *table(lambda m: f"{_cell(m, 'tpr_at_threshold')} ({m['fpr_at_threshold'][0]:.3f})"), "",
             "**ROC-AUC:**", "", *table(lambda m: _cell(m, "roc_auc")), "",
             f"Trained on {n['real_train']} real faces vs {n['fake_train']} samples of {out['trained_on']}; threshold "
             f"from {n['real_validation']} validation faces; tested on {n['real_test']} test faces vs "
             f"{n['fake_test_per_generator']} fresh samples per generator ({steps}). The TPR at 1% FPR read off "
             f"each test ROC curve (a threshold no one could pick in advance) is in "
             f"`docs/benchmarks/moderation-avatars.json`. Time at one thread: loading and sampling "
             f"{t['load_and_sample_s']:.0f}s; per seed, fit + test: "
             + ", ".join(f"{d} {t[f'{d}_fit_s']:.0f}s + {t[f'{d}_test_s']:.0f}s" for d in out["results"])
             + f"; {t['total_s'] / 60:.1f} minutes in all (plus the generators' training).", ""]
    write_section(DOC, BEGIN, END, lines, "moderation-avatars")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/mod-avatars", help="folder of `feedgan avatars train` runs")
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--train-on", default="dcgan", help="the generator the detectors train on")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=4000, help="training samples of the training generator")
    ap.add_argument("--n-test", type=int, default=2000, help="test samples per generator")
    args = ap.parse_args()
    out = run(args)
    JSON.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(JSON) as fh:
        json.dump(out, fh, indent=2)
    write_docs(out)
    log(f"wrote {JSON} and {DOC} ({out['timings']['total_s']:.0f}s)")


if __name__ == "__main__":
    main()
