"""Benchmark runner: the protocol over several models and seeds, with tables for the docs.

Used by ``feedgan bench``, ``feedgan demo`` and the scripts under ``benchmarks/``.
"""
from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable

import numpy as np

from ..data.dataset import Dataset
from ..rec.baselines import EASE, ItemKNN, MostPopular, PureSVD, RP3beta
from ..rec.ials import IALS
from .protocol import ModelSpec, refit_and_test, summarise, tune


CFGAN_FIXED = {"epochs": 400, "eval_every": 10, "patience": 4}
EASEGAN_GRID = {"l2": [50.0, 200.0, 500.0], "dropout": [0.25, 0.5], "adv_weight": [0.1, 0.3]}


def model_specs() -> dict[str, ModelSpec]:
    """Every recommender with the grid searched on validation (CLI name -> spec)."""
    from ..rec.bpr import BPR
    from ..rec.cfgan import CFGAN
    from ..rec.easegan import EASEGAN
    from ..rec.multvae import MultVAE

    specs = [
        ModelSpec(MostPopular),
        ModelSpec(ItemKNN, grid={"k": [50, 100, 200, 500], "shrink": [0.0, 10.0, 50.0, 200.0]}),
        ModelSpec(RP3beta, grid={"k": [100, 200, 500], "alpha": [0.5, 0.8, 1.0], "beta": [0.0, 0.3, 0.5, 0.7]}),
        ModelSpec(EASE, grid={"l2": [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]}),
        ModelSpec(PureSVD, grid={"factors": [4, 8, 16, 32, 64, 128, 256]}),
        # Rendle et al. 2022: large dimensions, ~16 epochs, reg and the unobserved weight tuned together
        # (frequency-scaled reg: on ML-1M validation 0.01 beat 0.003 and 0.03 at 128 factors; ML-100K and
        # Ciao chose 0.03, the old top, so 0.1 is in; LastFM's 17k items preferred unobserved 0.03 to 0.1)
        ModelSpec(IALS, grid={"factors": [64, 128, 256], "reg": [0.003, 0.01, 0.03, 0.1],
                              "unobserved": [0.03, 0.1, 0.3]},
                  fixed={"epochs": 16}),
        # reg is a per-example penalty on the batch's rows (see BPR): ~1e-2 is the useful range
        ModelSpec(BPR, grid={"factors": [64, 128], "lr": [3e-3, 1e-2], "reg": [1e-3, 3e-3, 1e-2]},
                  fixed={"epochs": 50, "batch_size": 2048}),
        # anneal_steps counts optimiser steps; small data sets take few, so smaller values matter
        # small reparameterisation noise and a 100-d latent: each lifted ML-1M validation NDCG@20, together
        # by .007 over the paper's setting (3 seeds; docs/speed.md, "Mult-VAE: the gap to RecBole")
        ModelSpec(MultVAE, grid={"beta_max": [0.2, 0.5], "anneal_steps": [200, 2000, 20000]},
                  fixed={"epochs": 50, "noise_scale": 0.01, "latent": 100}),
        # GAN recommenders. CFGAN starts from the authors' ML-100K setting (item-based ZP); every
        # iterative GAN picks its epoch count on validation, stopping after 4 checks without gain
        ModelSpec(CFGAN, grid={"alpha": [0.03, 0.1], "s_zr": [0.5, 0.7, 0.9]}, fixed=CFGAN_FIXED),
        # ablations (ECIR 2022): no discriminator (an autoencoder), and noise appended to the condition
        ModelSpec(CFGAN, grid={"s_zr": [0.5, 0.7, 0.9]}, fixed={**CFGAN_FIXED, "adversarial": False},
                  label="cfgan-ae"),
        ModelSpec(CFGAN, grid={"alpha": [0.03, 0.1], "s_zr": [0.5, 0.7, 0.9]},
                  fixed={**CFGAN_FIXED, "noise_dim": 64}, label="cfgan-noise"),
        ModelSpec(EASEGAN, grid=EASEGAN_GRID, fixed={"epochs": 50, "eval_every": 5, "patience": 4}),
        ModelSpec(EASEGAN, grid={k: v for k, v in EASEGAN_GRID.items() if k != "adv_weight"},
                  fixed={"epochs": 50, "eval_every": 5, "patience": 4, "adversarial": False},
                  label="easegan-noD"),
    ]
    return {s.name: s for s in specs}


def aux_grid(names: list[str], levels=(0.1, 0.3, 1.0)) -> list[dict[str, float]]:
    """Every weighting of the auxiliary actions ``names`` over ``levels`` (chosen on validation)."""
    import itertools

    return [dict(zip(names, ws)) for ws in itertools.product(levels, repeat=len(names))] if names else [{}]


def behaviour_specs(aux: list[str]) -> dict[str, ModelSpec]:
    """Models for predicting one target action from auxiliary actions ``aux`` (ordered strongest
    first, e.g. cart before view; ``friends`` for the social channel). Weights are tuned on
    validation; target-only models ignore ``aux``."""
    from ..rec.base import FRIENDS
    from ..rec.behaviour import SeenEASE, SeenFirst
    from ..rec.easegan import EASEGAN

    own = [a for a in aux if a != FRIENDS]
    base = model_specs()
    ease_l2 = {"l2": [50.0, 200.0, 500.0, 2000.0]}
    gan_fixed = {"epochs": 20, "eval_every": 2, "patience": 3, "batch_size": 256}
    specs = [
        base["most-popular"], base["itemknn"], base["rp3beta"], base["ease"],  # the target alone
        ModelSpec(ItemKNN, grid={"k": [100, 500], "shrink": [10.0, 50.0], "aux": aux_grid(aux)},
                  label="itemknn-stacked"),
        ModelSpec(EASE, grid={**ease_l2, "aux": aux_grid(aux)}, label="ease-stacked"),
        base["ials"],  # the target alone, and with the auxiliary actions as weighted observations
        replace(base["ials"], grid={**base["ials"].grid, "aux": aux_grid(aux)}, label="ials-stacked"),
        # the seen-first rule: the order given is the priority (first = strongest)
        ModelSpec(SeenFirst, aux={a: float(len(own) - j) for j, a in enumerate(own)}),
        ModelSpec(SeenEASE, grid={**ease_l2, "shrink": [1.0, 10.0], "ease": [0.0, 0.03, 0.1],
                                  "aux": aux_grid(aux, (0.3, 1.0))}),
        ModelSpec(EASEGAN, grid={"l2": [200.0], "adv_weight": [0.1, 0.3], "dropout": [0.25],
                                 "aux": aux_grid(aux, (1.0,))}, fixed=gan_fixed, label="easegan"),
        ModelSpec(EASEGAN, grid={"l2": [200.0], "dropout": [0.25], "aux": aux_grid(aux, (1.0,))},
                  fixed={**gan_fixed, "adversarial": False}, label="easegan-noD"),
    ]
    if FRIENDS not in aux:  # the same EASE with and without what friends did
        specs.append(ModelSpec(EASE, grid={**ease_l2, "aux": [{FRIENDS: w} for w in (0.1, 0.3, 1.0)]},
                               label="ease-friends"))
    return {s.name: s for s in specs}


class Budget:
    """Wall-clock seconds for a whole run, shared by its stages and models.

    ``left()`` is what remains; ``part(f)`` a sub-budget of a fraction of it that records its cuts
    in the same list, so a report can say what the budget cut (``cuts``: one line each).
    """

    def __init__(self, seconds: float, cuts: list[str] | None = None, prefix: str = ""):
        self.seconds, self.start = float(seconds), time.perf_counter()
        self.cuts = [] if cuts is None else cuts
        self.prefix = prefix  # names the stage in each cut line, e.g. "likes from views: "

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def part(self, fraction: float, prefix: str = "", reserve: float = 0.0) -> "Budget":
        """A ``fraction`` of what is left after ``reserve`` seconds are set aside."""
        return Budget(max(0.0, self.left() - reserve) * fraction, self.cuts, self.prefix + prefix)

    def cut(self, what: str) -> None:
        self.cuts.append(self.prefix + what)


def run_bench(make_dataset: Callable[[int], Dataset], specs: list[ModelSpec], *, seeds: int = 5,
              metric: str = "ndcg@20", ks=(5, 10, 20), max_trials: int | None = 10,
              budget_s: float | None = None, seed: int = 0, progress=None, keep_models: bool = False,
              masks: tuple[str, ...] = ("target", "all"), budget: Budget | None = None,
              done: list[dict] | None = None, on_row: Callable[[dict], None] | None = None,
              log: Callable[[str], None] | None = None) -> list[dict]:
    """Tune each model on a seed's validation part, refit and test once on that seed's test part.

    ``make_dataset(s)`` gives the dataset of seed ``s``: a new random split, or the same
    predefined one (the same object). Every distinct dataset is tuned on its own validation
    part, because a re-split seed's test pairs are another seed's train and validation pairs;
    a predefined split is tuned once and only the model seed varies, and a deterministic model
    on it runs once (``runs`` 1: more seeds would repeat the same numbers). Returns one
    leaderboard row per model, best first by mean test ``metric``; ``params`` and ``trials`` are
    seed ``seed``'s, ``params_by_seed`` what each seed refit with, ``tune_s`` the tuning time of
    every seed, ``runs`` the number of test runs behind the mean and std.
    On a dataset split on a target action, selection uses ``masks[0]``, ``test`` holds that
    mask's scores and ``test_<mask>`` each other's (see :func:`feedgan.eval.metrics.evaluate`).

    ``budget`` shares its time equally among the models still to run: each model's tuning gets
    half its share (``budget_s`` is then ignored), its training stops early where the share is
    spent (:class:`~feedgan.gan.TimeLimit`), its seeds stop when the next would not fit, and a
    model is left out once nothing is left (never the first: it runs one setting and one seed);
    each cut is recorded in ``budget.cuts`` and the row's ``cut``. ``done`` holds rows of models already finished (a resumed run): those models
    are skipped and their rows kept. ``on_row(row)`` is called as each model finishes.
    """
    datasets: dict[int, Dataset] = {}

    def data(s: int) -> Dataset:
        if s not in datasets:
            datasets[s] = make_dataset(s)
        return datasets[s]

    rows = list(done or [])
    todo = [spec for spec in specs if spec.name not in {r["model"] for r in rows}]
    for i, spec in enumerate(todo):
        share = None if budget is None else max(0.0, budget.left()) / (len(todo) - i)
        if share is not None and share <= 0 and rows:  # the first model always runs: a board needs a row
            budget.cut(f"{spec.name}: left out (the time budget was spent before it started)")
            continue
        row = _bench_model(spec, data, seeds=seeds, metric=metric, ks=ks, max_trials=max_trials,
                           budget_s=budget_s if share is None else share * 0.5 / seeds, share_s=share,
                           seed=seed, progress=progress, keep_models=keep_models, masks=masks)
        if budget is not None:
            for c in row["cut"]:
                budget.cut(f"{spec.name}: {c}")
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if log is not None:
            t = row["test"][metric]
            runs = f"{row['runs']} runs" if row["runs"] > 1 else "1 run" + " (deterministic)" * row["deterministic"]
            cut = f"; cut: {'; '.join(row['cut'])}" if row["cut"] else ""
            scored = row["test"].get("users_evaluated")
            users = (f", {scored['mean']:,.0f} users scored ({row['test']['users_skipped']['mean']:,.0f} skipped: "
                     "no held-out items)") if scored else ""
            log(f"{spec.name}: {metric} {t['mean']:.4f} ± {t['std']:.4f} over {runs}{users}, "
                f"{row['seconds']:.1f}s (params {_fmt_params(row['params'])}){cut}")
    rows.sort(key=lambda r: -r["test"][metric]["mean"])
    return rows


def _bench_model(spec: ModelSpec, data: Callable[[int], Dataset], *, seeds: int, metric: str, ks,
                 max_trials: int | None, budget_s: float | None, share_s: float | None, seed: int,
                 progress, keep_models: bool, masks: tuple[str, ...]) -> dict:
    """One model's leaderboard row (see :func:`run_bench`); ``share_s`` bounds its wall-clock time."""
    from ..gan import TimeLimit

    t_model = time.perf_counter()
    tuned: list[tuple[Dataset, dict, list[dict]]] = []  # (dataset, its params, its trials)
    tune_s = 0.0
    cut: list[str] = []

    def params_for(d: Dataset, s: int) -> dict:
        nonlocal tune_s
        for known, params, _ in tuned:
            if known is d:
                return params
        t0 = time.perf_counter()
        params, trials = tune(spec, d, metric=metric, ks=ks, max_trials=max_trials, budget_s=budget_s,
                              seed=s, mask=masks[0], progress=progress)
        tune_s += time.perf_counter() - t0
        tuned.append((d, params, trials))
        return params

    limit = TimeLimit(float("inf") if share_s is None else share_s)
    with limit:
        params = params_for(data(seed), seed)
        model = spec.build(params)
        seeded = "seed" in model.get_params() and type(model).seed_matters
        runs: list[dict] = []
        chosen: list[dict] = []
        repeats = False
        for s in range(seeds):
            d = data(seed + s)
            if runs and not seeded and d is data(seed):
                repeats = True  # the same data and a deterministic model: another seed repeats the numbers
                break
            if runs and share_s is not None:
                spent = time.perf_counter() - t_model
                if spent + spent / len(runs) > share_s:  # the next seed would not fit the share
                    cut.append(f"{len(runs)} of {seeds} seeds (time budget)")
                    break
            p_s = params_for(d, seed + s)
            chosen.append(p_s)
            runs.append(refit_and_test(spec, p_s, d, ks=ks, seed=seed + s, masks=masks, progress=progress))
            if s > 0 or not keep_models:
                runs[-1]["model"] = None  # only seed 0's model is ever kept; free the others now
    if limit.hits:
        cut.insert(0, f"training stopped early by the time budget in {limit.hits} fit(s)")
    n_settings = len(spec.settings(max_trials, np.random.default_rng(seed)))
    tried = [len(t) for _, _, t in tuned]
    if min(tried) < n_settings:
        cut.insert(0, f"{'/'.join(map(str, tried))} of {n_settings} settings tried (time budget)")
    trials = tuned[0][2]
    best = max(trials, key=lambda t: t["valid"][metric])
    row = {"model": spec.name, "params": params, f"valid_{metric}": best["valid"][metric],
           "trials": [{"params": t["params"], metric: t["valid"][metric], "fit_s": t["fit_s"]} for t in trials],
           "tune_s": tune_s, "seeds": seeds, "runs": len(runs),
           "deterministic": repeats, "params_by_seed": chosen,
           "test": summarise(runs), "seconds": time.perf_counter() - t_model, "cut": cut}
    for key in (k for k in runs[0] if k.startswith("test_")):
        row[key] = summarise(runs, key)
    if keep_models:
        row["_model"] = runs[0]["model"]
    return row


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def results_markdown(rows: list[dict], metrics: list[str], title: str | None = None,
                     command: str | None = None) -> str:
    """A markdown table: mean ± std per metric, the runs behind it, chosen params, fit and
    evaluation seconds. A deterministic model on one predefined split runs once (its std is 0
    because nothing varies, not because it is stable); the ``runs`` column shows it."""
    lines = [f"### {title}", ""] if title else []
    if command:
        lines += [f"Reproduce: `{command}`", ""]
    strict = [m for m in metrics[-1:] if rows and "test_all" in rows[0]]  # the stricter mask, when scored
    lines.append("| model | " + " | ".join(metrics) + "".join(f" | {m} (all-items mask)" for m in strict)
                 + " | runs | fit s | eval s | chosen on valid |")
    lines.append("|---|" + "---:|" * (len(metrics) + len(strict) + 3) + "---|")
    for r in rows:
        t = r["test"]
        cells = [f"{t[m]['mean']:.4f} ± {t[m]['std']:.4f}" for m in metrics]
        cells += [f"{r['test_all'][m]['mean']:.4f} ± {r['test_all'][m]['std']:.4f}" for m in strict]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {runs_cell(r)}"
                     + f" | {t['fit_s']['mean']:.1f} | {t['eval_s']['mean']:.1f} | {chosen_cell(r)} |")
    notes = [f"- {r['model']}: {'; '.join(r['cut'])}" for r in rows if r.get("cut")]
    if notes:
        lines += ["", "Cut by the time budget:", *notes]
    return "\n".join(lines) + "\n"


def runs_cell(row: dict) -> str:
    """How many test runs a row's mean and std stand on: ``5``, or ``1 (deterministic)`` for a
    model that cannot change between seeds on one predefined split."""
    return "1 (deterministic)" if row.get("deterministic") else str(row.get("runs", row.get("seeds", 1)))


def chosen_cell(row: dict) -> str:
    """The setting chosen on validation: seed 0's, and how many seeds chose each setting when the
    re-split seeds (each tuned on its own validation part) did not all agree."""
    def fmt(p: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in p.items()) or "-"

    by_seed = [fmt(p) for p in row.get("params_by_seed", [])]
    if len(set(by_seed)) <= 1:
        return fmt(row["params"])
    counts = {c: by_seed.count(c) for c in dict.fromkeys([fmt(row["params"]), *by_seed])}
    return "; ".join(f"{c} ({n} of {len(by_seed)} seeds)" for c, n in counts.items())


def public_rows(rows: list[dict]) -> list[dict]:
    """Leaderboard rows without in-memory objects, ready for JSON."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def save_models(run, dataset: Dataset, rows: list[dict]) -> None:
    """Store the dataset and each row's seed-0 refit model under ``run/`` so that
    ``feedgan evaluate RUN`` can re-score them (rows need ``keep_models=True``)."""
    dataset.save(run / "dataset")
    for r in rows:
        if "_model" in r:
            r["_model"].save(run / "models" / r["model"])
