"""The synthetic-users report: how real, how private and how useful one generator's users are.

:func:`assess` runs every figure on real users split by user into train (the only users the
generator saw), holdout and test, and a synthetic set: fidelity and a two-sample test against the
holdout (beside train vs holdout, the ceiling), privacy against train vs holdout, and, when given a
utility function, train-on-synthetic / test-on-real. :func:`write_html` turns the result into
``report.html`` with plots; :data:`GOALS` are the bars the report checks each generator against.
"""
from __future__ import annotations

import html
import time
from collections.abc import Callable

import numpy as np

from ..eval import report as page
from .detect import detection
from .fidelity import fidelity, same_catalogue
from .privacy import privacy
from .profiles import Profiles

# The bars a generator worth keeping must clear (utility ratio: mean over the recommenders)
GOALS = {"tstr_ratio_min": 0.9, "mia_auc_max": 0.55, "two_sample_auc_max": 0.6}


def assess(train: Profiles, holdout: Profiles, synth: Profiles, *, test: Profiles | None = None,
           utility: Callable[[Profiles, Profiles, Profiles], dict] | None = None,
           fit_sample: Callable[[Profiles], Profiles] | None = None, seed: int = 0,
           log: Callable[[str], None] | None = None) -> dict:
    """Every figure of the report, JSON-ready, with the seconds each stage took.

    ``utility(train, synth, test)`` (e.g. :func:`feedgan.synth.utility.tstr`) runs when given with
    ``test``; ``fit_sample(profiles) -> Profiles`` refits the generator for the shadow attack."""
    same_catalogue(train=train, holdout=holdout, synth=synth)
    stages: list[tuple[str, Callable[[], dict]]] = [
        ("fidelity", lambda: fidelity(holdout, synth, train)),
        ("detection", lambda: detection(holdout, synth, train, seed=seed)),
        ("privacy", lambda: privacy(train, holdout, synth, fit_sample, seed=seed)),
    ]
    if utility is not None and test is not None:
        stages.append(("utility", lambda: utility(train, synth, test)))
    out: dict = {"users": {"train": train.n_users, "holdout": holdout.n_users, "synthetic": synth.n_users,
                           **({"test": test.n_users} if test is not None else {})},
                 "items": train.n_items, "seconds": {}}
    for name, run in stages:
        t0 = time.perf_counter()
        out[name] = run()
        out["seconds"][name] = round(time.perf_counter() - t0, 2)
        if log is not None:
            log(f"report: {name} in {out['seconds'][name]:.1f}s")
    out["goals"] = check_goals(out)
    return out


def check_goals(result: dict) -> dict:
    """Each goal of :data:`GOALS` with the measured value and whether it is met (None: not measured)."""
    det = result.get("detection", {}).get("synth", {}).get("auc_mean")
    priv = result.get("privacy", {})
    mia = [priv[k]["auc"] for k in ("mia_distance", "mia_shadow") if isinstance(priv.get(k), dict)
           and priv[k].get("auc") is not None]
    ratio = _mean_ratio(result.get("utility"))
    return {
        "tstr_ratio": {"value": ratio, "goal": f">= {GOALS['tstr_ratio_min']}",
                       "met": None if ratio is None else ratio >= GOALS["tstr_ratio_min"]},
        "membership_auc": {"value": max(mia) if mia else None, "goal": f"<= {GOALS['mia_auc_max']}",
                           "met": None if not mia else max(mia) <= GOALS["mia_auc_max"]},
        "two_sample_auc": {"value": det, "goal": f"<= {GOALS['two_sample_auc_max']}",
                           "met": None if det is None else det <= GOALS["two_sample_auc_max"]},
    }


def _mean_ratio(utility: dict | None) -> float | None:
    """The mean NDCG@20 ratio (synthetic / real training) over the recommenders of a TSTR result."""
    if not utility:
        return None
    ratios = [m["ratio"]["ndcg@20"] for m in utility.get("models", {}).values()
              if isinstance(m, dict) and m.get("ratio", {}).get("ndcg@20") is not None]
    return float(np.mean(ratios)) if ratios else None


# -- the page ---------------------------------------------------------------------------------------
def write_html(path, result: dict, train: Profiles, holdout: Profiles, synth: Profiles, title: str) -> None:
    """report.html: the goals, then each family of figures as a table, with distribution plots."""
    sections = [("Goals", _goals_html(result["goals"])),
                ("Users", page.table_html([result["users"]], list(result["users"])))]
    sections.append(("Fidelity (synthetic vs holdout; ceiling: train vs holdout)",
                     "<p>Similarities (1 = the same distribution) beside the ceiling, train vs holdout; raw figures "
                     "(Gini, long-tail share, funnel rates) beside the holdout's own and train's.</p>"
                     + page.table_html(_fidelity_rows(result["fidelity"]), ["figure", "synthetic", "ceiling", "real"])
                     + page.figure_html(_distributions(train, holdout, synth), "distributions")))
    det = result["detection"]
    sections.append(("Two-sample test (ROC-AUC, 0.5 = indistinguishable)",
                     page.table_html([{"set": k, "auc": _num(v.get("auc_mean")), "std": _num(v.get("auc_std"))}
                                      for k, v in det.items() if isinstance(v, dict) and "auc_mean" in v],
                                     ["set", "auc", "std"])))
    sections.append(("Privacy", page.table_html(_flat_rows(result["privacy"]), ["figure", "value"])))
    if "utility" in result:
        u = result["utility"]
        rows = [{"model": name, **{f"{side} {m}": _num(r.get(side, {}).get(m)) for m in ("ndcg@20", "recall@20")
                                   for side in ("real", "synth", "ratio")}} for name, r in u["models"].items()]
        cols = ["model", "real ndcg@20", "synth ndcg@20", "ratio ndcg@20", "real recall@20", "synth recall@20",
                "ratio recall@20"]
        tau = ", ".join(f"{m} {_num(v)}" for m, v in u.get("kendall_tau", {}).items())
        sections.append(("Utility: train on synthetic, test on real",
                         f"<p>Each model fitted on the real train users and on the synthetic users "
                         f"({html.escape(str(u.get('hyperparameters', '')))}), scored on {u.get('test_users', '?')} "
                         f"real test users by fold-in. Kendall tau of the models' order: {html.escape(tau)}.</p>"
                         + page.table_html(rows, cols)))
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
    sections.append(("Time", f"<p>{html.escape(seconds)}</p>"))
    page.write_report(path, title, sections)


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _goals_html(goals: dict) -> str:
    rows = [{"goal": k.replace("_", " "), "measured": _num(g["value"]), "target": g["goal"],
             "met": {True: "yes", False: "no", None: "not measured"}[g["met"]]} for k, g in goals.items()]
    return page.table_html(rows, ["goal", "measured", "target", "met"])


def _fidelity_rows(fid: dict) -> list[dict]:
    rows = []
    for key, v in fid.items():
        if isinstance(v, dict) and "synth" in v and not isinstance(v["synth"], dict):
            rows.append({"figure": key, "synthetic": _num(v["synth"]),
                         "ceiling": _num(v.get("ceiling", v.get("reference"))), "real": _num(v.get("real"))})
        elif isinstance(v, dict):  # a family (e.g. the funnel rates): one row per member
            for sub, w in v.items():
                if isinstance(w, dict) and "synth" in w:
                    rows.append({"figure": f"{key} {sub}", "synthetic": _num(w["synth"]),
                                 "ceiling": _num(w.get("ceiling", w.get("reference"))), "real": _num(w.get("real"))})
    return rows


def _flat_rows(tree: dict, prefix: str = "") -> list[dict]:
    """Nested numbers as (dotted key, value) rows."""
    rows = []
    for key, v in tree.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            rows += _flat_rows(v, name + ".")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            rows.append({"figure": name, "value": _num(v)})
    return rows


def _distributions(train: Profiles, holdout: Profiles, synth: Profiles):
    """Events per user (CCDF) and item popularity by rank, for the three sets."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, p in (("holdout", holdout), ("train", train), ("synthetic", synth)):
        act = np.sort(p.activity()[p.activity() > 0])
        a.loglog(act, 1.0 - np.arange(len(act)) / max(1, len(act)), label=name)
        pop = np.sort(p.union().getnnz(0))[::-1].astype(np.float64)
        b.loglog(np.arange(1, len(pop) + 1), pop / max(1.0, pop.sum()), label=name)
    a.set(xlabel="events per user", ylabel="P(events >= x)", title="Activity")
    b.set(xlabel="item rank", ylabel="share of users", title="Item popularity")
    a.legend(fontsize=8)
    return fig
