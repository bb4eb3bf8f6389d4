"""Build ``docs/gan-recommenders.md`` from the GAN benchmark results.

    python benchmarks/gan_report.py

Reads (whatever is present): ``docs/benchmarks/cfgan-replication.json`` (CFGAN on the authors'
splits), ``docs/benchmarks/<dataset>.json`` (the tuned baselines and GAN rows of
``benchmarks/baselines.py``), ``docs/benchmarks/gan-variants-*.json`` (every variant probed on
validation) and ``docs/benchmarks/gan-speed.json``. Nothing is trained here.
"""
from __future__ import annotations

import json
from pathlib import Path

from feedgan.io import atomic_open

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks"
BASELINES = ["most-popular", "itemknn", "rp3beta", "ease", "puresvd", "bpr", "multvae"]
GANS = {"cfgan": "CFGAN (tuned)", "cfgan-ae": "CFGAN without D (autoencoder ablation)",
        "cfgan-noise": "CFGAN with input noise", "easegan": "EASE-GAN", "easegan-noD": "EASE-GAN without D"}
DATASETS = ["ml100k-cfgan", "ciao-cfgan", "ml1m", "lastfm", "gowalla"]
REPLICATION_METRICS = ["precision@5", "precision@20", "recall@5", "recall@20", "ndcg@5", "ndcg@20"]

INTRO = """# GAN recommenders

Three questions, answered with measurements: does our CFGAN reproduce the paper, does it beat
tuned simple models on the same splits, and can a GAN recommender earn its place at all.

Models (all in `feedgan.rec`, all on the shared adversarial engine `feedgan.gan.GANTrainer`):

- **CFGAN** (`cfgan`): Chae et al., CIKM 2018; ZR / PM / ZP, user- or item-based.
- **CFGAN without D** (`cfgan-ae`): the same generator on the masked reconstruction loss alone.
- **CFGAN with input noise** (`cfgan-noise`): 64 Gaussian inputs appended to the condition.
- **EASE-GAN** (`easegan`): EASE's item-to-item generator (zero diagonal) initialised at the EASE
  solution, trained on the EASE objective with dropout on the condition (a denoising linear
  autoencoder) plus a CFGAN-style discriminator's loss as a regulariser. Validation scores the
  start (epoch 0, plain EASE) too, so when adversarial training does not help, the chosen epoch
  is 0 and the model *is* EASE; the chosen epochs are in the table.
- **EASE-GAN without D** (`easegan-noD`): the ablation that isolates what D adds.

Protocol (the same as the baselines'): hyperparameters and the epoch count chosen on a
validation split cut from train, refit on train + valid, test scored once per seed; 5 seeds.
"""


def load(name: str) -> dict | None:
    f = RESULTS / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() else None


def fmt(s: dict) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def replication() -> list[str]:
    r = load("cfgan-replication")
    if r is None:
        return ["## CFGAN replication", "", "Not run yet: `python benchmarks/cfgan_replication.py`.", ""]
    commands = "; ".join(f"`{res['command']}`" for res in r["results"] if "command" in res)
    lines = ["## CFGAN replication (the authors' splits and settings)", "", f"Reproduce: {commands}", "",
             "The paper's code had no validation split and scored the test set every epoch; its numbers "
             "are the best epoch *on test*. The first of our rows does the same, for comparison only; the "
             "second chooses the epoch on a validation split cut from train and is the honest number.", "",
             "| dataset | row | " + " | ".join(REPLICATION_METRICS) + " | epoch | fit s | seeds |",
             "|---|---|" + "---:|" * (len(REPLICATION_METRICS) + 3)]
    for res in r["results"]:
        lines.append(f"| {res['dataset']} | paper | " + " | ".join(f"{res['paper'][m]:.3f}" for m in REPLICATION_METRICS)
                     + " | | | |")
        for label, s in res["rows"].items():
            cells = " | ".join(f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in REPLICATION_METRICS)
            lines.append(f"| {res['dataset']} | {label} | {cells} | {s['epoch']['mean']:.0f} "
                         f"| {s['fit_s']['mean']:.0f} | {res['seeds']} |")
    return lines + [""]


def verdict(gan: dict, base: dict) -> tuple[float, str]:
    """Margin on mean test NDCG@20 and win / tie / loss against the larger seed spread."""
    g, b = gan["test"]["ndcg@20"], base["test"]["ndcg@20"]
    margin, spread = g["mean"] - b["mean"], max(g["std"], b["std"], 1e-6)  # 1e-6: float noise of equal models
    if margin > spread:
        return margin, "win"
    if margin < -spread:
        return margin, "loss"
    return margin, "tie"


def comparison() -> list[str]:
    lines = ["## The honest comparison (test NDCG@20 and Recall@20, mean ± std over seeds)", "",
             "Against the best tuned baseline of each dataset (from `docs/benchmarks.md`). A *win* or *loss* "
             "needs a margin larger than the larger of the two seed standard deviations; anything closer is a "
             "tie. On the predefined splits (ML-100K, Ciao, ML-1M, Gowalla) the split is the same for every "
             "seed, so deterministic baselines have zero spread and the GAN's own seed spread decides.", "",
             "| dataset | model | NDCG@20 | Recall@20 | vs best baseline | verdict | chosen params | seeds |",
             "|---|---|---:|---:|---|---|---|---:|"]
    missing = []
    for name in DATASETS:
        r = load(name)
        rows = {x["model"]: x for x in r["rows"]} if r else {}
        base_rows = [rows[m] for m in BASELINES if m in rows]
        gan_rows = [m for m in GANS if m in rows]
        if not base_rows or not gan_rows:
            missing.append(name)
            continue
        best = max(base_rows, key=lambda x: x["test"]["ndcg@20"]["mean"])
        lines.append(f"| {name} | best baseline: {best['model']} | {fmt(best['test']['ndcg@20'])} "
                     f"| {fmt(best['test']['recall@20'])} | | | {params(best)} | {r['seeds']} |")
        for m in gan_rows:
            margin, v = verdict(rows[m], best)
            if rows[m]["params"].get("epochs") == 0:
                v += " (epoch 0 chosen: this is plain EASE, the GAN part unused)"
            lines.append(f"| {name} | {GANS[m]} | {fmt(rows[m]['test']['ndcg@20'])} "
                         f"| {fmt(rows[m]['test']['recall@20'])} | {margin:+.4f} | **{v}** | {params(rows[m])} "
                         f"| {rows[m].get('seeds', r['seeds'])} |")
    lines.append("")
    if missing:
        lines += [f"Not run yet (no GAN rows): {', '.join(missing)}. Reproduce a dataset with "
                  "`python benchmarks/baselines.py --datasets NAME --models cfgan,cfgan-ae,cfgan-noise,easegan,"
                  "easegan-noD --seeds 5 --max-trials 3`.", ""]
    return lines


def params(row: dict) -> str:
    keep = {k: v for k, v in row["params"].items() if k not in ("eval_every", "patience", "seed")}
    return ", ".join(f"{k}={v}" for k, v in keep.items())


def variants() -> list[str]:
    lines = ["## Every variant tried (validation only, seed 0)", "",
             "Design probes: one run each on train with 10% cut off as validation; the test split is never "
             "read. The curve is NDCG@20 on validation at the listed epochs.", ""]
    files = sorted(RESULTS.glob("gan-variants-*.json"))
    if not files:
        return lines + ["Not run yet: `python benchmarks/gan_variants.py`.", ""]
    for f in files:
        r = json.loads(f.read_text())
        ease = ", ".join(f"l2={k}: {v:.4f}" for k, v in r["ease_valid_ndcg@20"].items())
        lines += [f"### {r['dataset']}", "", f"Reproduce: `{r['command']}`. EASE on the same validation: {ease}.", "",
                  "| variant | what | best valid NDCG@20 | at epoch | curve (epoch: value) | fit s |",
                  "|---|---|---:|---:|---|---:|"]
        for v in r["rows"]:
            curve = " ".join(f"{e}:{x:.3f}" for e, x in v["curve"])
            lines.append(f"| {v['variant']} | {v['what']} | {v['best_valid_ndcg@20']:.4f} | {v['best_epoch']} "
                         f"| {curve} | {v['fit_s']:.0f} |")
        lines.append("")
    return lines


def speed() -> list[str]:
    r = load("gan-speed")
    if r is None:
        return ["## Speed", "", "Not run yet: `python benchmarks/gan_speed.py`.", ""]
    lines = ["## Training speed", "", f"Reproduce: `{r['command']}` ({r['threads']} threads). Seconds per epoch "
             "are measured on a few epochs; the floating-point work of an epoch is counted exactly "
             "(`torch.utils.flop_counter`); the matmul reference is a plain 2048x2048 float32 product in "
             "the same process. Time to the selected epoch = seconds per epoch x the epoch validation chose.", "",
             "| dataset | model | device | s / epoch | rows / s | GFLOP / epoch | GFLOP/s | of matmul peak "
             "| selected epoch | time to it | target |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    targets = {"ml100k-cfgan": "2 min", "ml1m": "10 min", "gowalla": "30 min"}
    for x in r["rows"]:
        lines.append(f"| {x['dataset']} | {x['model']} | {x['device']} | {x['s_per_epoch']:.2f} | {x['rows_per_s']:.0f} "
                     f"| {x['gflop_per_epoch']:.1f} | {x['achieved_gflops']:.1f} | {x['fraction_of_matmul']:.0%} "
                     f"| {x['selected_epoch']} ({x['selected_epoch_source']}) | {x['time_to_selected_s'] / 60:.1f} min "
                     f"| {targets.get(x['dataset'], '-')} |")
    return lines + [""]


FINDINGS = """## What we found (measured; details in the tables below)

- **Where a GAN wins: nowhere yet; where it ties: nowhere, by a hair.** EASE-GAN comes closest. On
  ML-100K it scores 0.4353 ± 0.0006 against EASE's 0.4359, a loss by 0.0007, just outside its seed
  spread. Its Recall@20 is slightly higher (0.3542 against 0.3530). Validation picked epoch 45, so
  adversarial training did change the weights, but it did not gain. CFGAN loses clearly on ML-100K
  (0.361 ± 0.005). On Ciao, EASE-GAN (0.1141 ± 0.0009) loses to RP3beta (0.1184). Its no-D ablation
  picked epoch 0 there, which is plain EASE (0.1172). ML-1M, LastFM and Gowalla have no GAN rows
  yet: see "Training speed" for why.
- **D adds little on top of a good reconstruction.** In single-seed validation probes (ML-100K),
  EASE-GAN and its no-D ablation track each other within ±0.002 NDCG@20 from the same starting
  point. Starting from the tuned EASE, neither improves on it. From an under-regularised EASE
  (l2=50, dropout 0.5) both climb from 0.218 to 0.225, which is still below the tuned EASE's 0.237.
- **CFGAN on ML-100K is close to the paper, but not all the way.** With the loss the public
  implementations use (non-saturating: G trained on sigmoid cross-entropy with label 1) we get
  NDCG@20 0.397 ± 0.013 at the test-selected epoch (paper: 0.433) and 0.397 ± 0.014 when
  validation chooses the epoch, which is the honest number. With the minimax loss as the paper
  writes it, validation NDCG@20 peaks at 0.177 (epoch 80) against 0.215 (epoch 60). Over 600 epochs
  that minimax run never comes back above 0.14, and its first replication seed scored 0.330 on test.
  Two details we have not tried may close the rest of the gap: the public configurations' L2
  penalty (1e-3 on G and D) and Glorot initialisation.
- **CFGAN on Ciao does not replicate.** The authors' Ciao setting (ZR only, 11 updates per epoch
  at lr 1e-4) scores NDCG@20 0.011 ± 0.006 at the test-selected epoch, against 0.124 in the paper.
  In a 550-epoch probe on validation (seed 0), the sigmoid output never passes 0.007; a linear
  output layer, as in the public code, reaches 0.039 at epoch 375. EASE and RP3beta reach 0.117-0.118
  on test. Neither output layer closes the gap, and the cause is open.
- **Fair tuning costs compute.** Each CFGAN fit on ML-100K takes 2-4 minutes on one core, so its
  comparison row tried a single grid point (alpha 0.1, S_ZR 0.9). The baselines tried up to ten,
  and EASE-GAN three.
"""



def write() -> None:
    lines = [INTRO, FINDINGS, *replication(), *comparison(), *variants(), *speed()]
    with atomic_open(ROOT / "docs" / "gan-recommenders.md") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    write()
