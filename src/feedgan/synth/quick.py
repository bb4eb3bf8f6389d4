"""A small synthetic-users report: a few generators on one split, within a time budget (the demo's).

The real users are split by user into train / holdout / test (0.6 / 0.2 / 0.2); each generator is
fitted on the train users and samples as many users as train holds; :func:`~feedgan.synth.report.assess`
scores them with a short utility test (train on synthetic, test on real, over EASE, ItemKNN and
most-popular) and the distance attack only (the shadow attack's refit is left to ``feedgan synth
report``). A generator whose turn comes with too little of the budget left is left out, and the
budget's ``cuts`` say so. Each generator's result becomes one :func:`summary_row`.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from ..eval.bench import Budget
from .generators import GENERATORS
from .profiles import Profiles
from .report import assess
from .utility import tstr

# The demo's generators, in the order they run: the floor, the strong sampler (small, for the
# budget), then copy-real, which must fail the privacy figures (proof that the attacks work)
QUICK_GENERATORS: dict[str, dict] = {"independent": {}, "vae": dict(hidden=200, latent=64, epochs=30),
                                     "copy": {}}
QUICK_MODELS = ("ease", "itemknn", "most-popular")
SUMMARY_COLUMNS = ["generator", "TSTR ratio", "membership AUC", "two-sample AUC", "popularity 1-TVD (ceiling)",
                   "co-occurrence (ceiling)", "exact copies (natural)", "fit s", "report s"]


def quick_report(profiles: Profiles, budget: Budget, *, seed: int = 0,
                 generators: dict[str, dict] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """``{"users": {part: n}, "items": n, "rows": [summary_row, ...], "results": {generator: assess(...)}}``.

    A generator runs only while the budget has at least as many seconds left as the previous
    generator took (the first always runs); a trained one runs fewer epochs when its full schedule
    would not fit (:func:`_fit_in_budget`)."""
    generators = QUICK_GENERATORS if generators is None else generators
    train, holdout, test = profiles.split_users((0.6, 0.2, 0.2), seed=seed)
    out: dict = {"users": {"train": train.n_users, "holdout": holdout.n_users, "test": test.n_users},
                 "items": profiles.n_items, "models": list(QUICK_MODELS), "rows": [], "results": {}}
    last_s = 0.0
    for name, params in generators.items():
        if out["rows"] and budget.left() < last_s:
            budget.cut(f"{name} left out ({max(0.0, budget.left()):.0f} s of the budget left, "
                       f"the last generator took {last_s:.0f} s)")
            continue
        t0 = time.perf_counter()
        gen = _fit_in_budget(name, params, train, budget, seed, scoring_s=last_s)
        synth = gen.sample(train.n_users, seed=seed + 1)
        fit_s = time.perf_counter() - t0
        result = assess(train, holdout, synth, test=test, seed=seed,
                        utility=lambda tr, sy, te: tstr(tr, sy, te, models=QUICK_MODELS, seed=seed))
        result["fit_s"] = round(fit_s, 2)
        last_s = time.perf_counter() - t0
        out["results"][name] = result
        out["rows"].append(summary_row(name, result))
        if log is not None:
            row = out["rows"][-1]
            log(f"synthetic users: {name}: TSTR {row['TSTR ratio']}, membership AUC {row['membership AUC']}, "
                f"two-sample AUC {row['two-sample AUC']} in {last_s:.1f}s")
    return out


def _fit_in_budget(name: str, params: dict, train: Profiles, budget: Budget, seed: int, scoring_s: float):
    """The generator fitted with its schedule, or with fewer epochs when a one-epoch probe fit says
    the full one would not fit in what the budget leaves after scoring (``scoring_s``, estimated)."""
    cls = GENERATORS[name]
    epochs = cls(**params).get_params().get("epochs")
    if not epochs or epochs <= 1:
        return cls(**params).fit(train, seed=seed)
    t0 = time.perf_counter()
    cls(**{**params, "epochs": 1}).fit(train, seed=seed)  # the fixed costs and one epoch: an upper bound
    per_epoch = time.perf_counter() - t0
    fits = int(max(0.0, budget.left() - 1.5 * scoring_s) / per_epoch)
    if fits < epochs:
        budget.cut(f"{name}: {max(1, fits)} of {epochs} epochs (time budget)")
        params = {**params, "epochs": max(1, fits)}
    return cls(**params).fit(train, seed=seed)


def summary_row(generator: str, result: dict) -> dict:
    """One line of a report (:func:`~feedgan.synth.report.assess`'s result) as display strings."""
    goals, fid, copies = result["goals"], result["fidelity"], result["privacy"]["exact_copies"]

    def pair(fig: dict) -> str:
        return f"{fig['synth']:.3f} ({fig['ceiling']:.3f})"

    def value(key: str) -> str:
        v = goals[key]["value"]
        return "-" if v is None else f"{v:.3f}"

    return {"generator": generator, "TSTR ratio": value("tstr_ratio"), "membership AUC": value("membership_auc"),
            "two-sample AUC": value("two_sample_auc"), "popularity 1-TVD (ceiling)": pair(fid["popularity_1_minus_tvd"]),
            "co-occurrence (ceiling)": pair(fid["cooccurrence_overlap"]),
            "exact copies (natural)": f"{copies['synth_rate']:.3f} ({copies['natural_rate']:.3f})",
            "fit s": f"{result.get('fit_s', 0.0):.1f}", "report s": f"{sum(result['seconds'].values()):.1f}"}
