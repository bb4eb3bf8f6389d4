"""``feedgan demo``: the whole offline flow on the embedded simulated social network.

simulate -> split -> tune every recommender on validation -> refit -> test once per seed (each
seed a new split, tuned on its own validation part) -> leaderboard + a few users' recommendations
-> likes predicted from views -> a small synthetic-users report (generators fitted on some users,
scored on the others) -> ``runs/NNNNN-demo/`` (config.yaml, metrics.json, report.html).

The whole run keeps to a wall-clock budget (``budget_s``, 150 s by default): every model gets an
equal share of what is left, and on a slow or busy machine the schedule shrinks to fit (fewer
settings tried, training stopped early, fewer seeds, the per-action or synthetic-users part,
generators or whole models left out); the console, metrics.json and the report list each cut.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.table import Table

from .config import save_yaml
from .data.clean import keep_actions
from .data.dataset import DataConfig, Dataset, prepare
from .data.schema import EXPOSURE
from .data.simulate import SimulationConfig, simulate
from .eval import report
from .eval.bench import Budget, model_specs, public_rows, run_bench, save_models
from .io import write_json
from .progress import console, print_line, progress_bar
from .runs import new_run_dir

LEADERBOARD_METRICS = ["precision@10", "recall@20", "ndcg@20", "mrr@20", "coverage@20"]


# In the order they are run: the baselines and the GAN first, so a tight budget cuts the slow
# neural baselines at the end (each model gets an equal share of what is left when it starts)
DEMO_MODELS = ["most-popular", "itemknn", "rp3beta", "ease", "easegan", "puresvd", "ials", "multvae", "bpr"]
# Models the demo leaves out by default, and why (``--models`` puts them back with their full schedule)
LEFT_OUT = {
    # measured on the demo's data (authors' ML-100K setting): validation NDCG@20 0.001 after 20 epochs,
    # 0.14 after 40, 0.20 after 60 (most-popular 0.085, EASE 0.22); 60 epochs took 8 minutes on 2 busy cores
    "cfgan": "CFGAN needs about 40 epochs on this data to pass most-popular on validation (several minutes "
             "per fit on 2 cores), more than the demo's budget; docs/gan-recommenders.md has its full runs. "
             "Add it with --models ...,cfgan",
}
# GANs that start from a plain model: with 0 adversarial epochs they are that model
ADVERSARIAL_BASE = {"easegan": "ease"}
# A short EASE-GAN schedule (the benchmarks use the full one). Every iterative model chooses its
# epoch on validation here, which also lets a tight budget stop its training early (TimeLimit).
DEMO_FIXED = {"easegan": dict(epochs=6, eval_every=2, patience=2, batch_size=256),
              "bpr": dict(eval_every=2, patience=4), "multvae": dict(eval_every=2, patience=4),
              "ials": dict(epochs=6)}
# grids narrowed for the demo's small data and budget (the full ones are in feedgan.eval.bench)
DEMO_GRIDS = {"ials": {"factors": [16, 32], "reg": [0.003, 0.01, 0.03], "unobserved": [0.1, 0.3]}}
LEADERBOARD_SHARE = 0.6   # of the budget left after simulating (less the reserve); the two parts after it the rest
PER_ACTION_SHARE = 0.45   # of what the leaderboard leaves; the synthetic-users part gets the rest
REPORT_RESERVE = 0.06     # of the budget, kept for the examples, saved models and the report at the end


@dataclass
class DemoConfig:
    users: int = 3000
    items: int = 2000
    seed: int = 0
    seeds: int = 3            # model seeds (and re-splits) per model, reported as mean ± std
    split: str = "random"
    valid: float = 0.1
    test: float = 0.2
    metric: str = "ndcg@20"   # model selection metric, on validation only
    max_trials: int = 6       # hyperparameter settings tried per model
    budget_s: float = 150.0   # wall-clock budget for the whole demo (the schedule shrinks to fit)
    per_action: bool = True   # also predict likes from views, and P(like | shown) with its calibration
    synthetic: bool = True    # also fit synthetic-user generators and report fidelity, utility, privacy
    models: list[str] = field(default_factory=lambda: list(DEMO_MODELS))
    runs_dir: str = "runs"


def run_demo(cfg: DemoConfig, progress: bool | None = None, spent_s: float = 0.0) -> Path:
    """``spent_s``: seconds of the budget already gone before this call (the command's start-up)."""
    t_start = time.perf_counter() - spent_s
    budget = Budget(cfg.budget_s - spent_s)
    available = model_specs()
    unknown = sorted(set(cfg.models) - set(available))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; available: {sorted(available)}")
    specs = [replace(available[name], grid=DEMO_GRIDS.get(name, available[name].grid),
                     fixed={**available[name].fixed, **DEMO_FIXED.get(name, {})}) for name in cfg.models]
    run = new_run_dir(cfg.runs_dir, "demo")
    sim_cfg = SimulationConfig(n_users=cfg.users, n_items=cfg.items, seed=cfg.seed)
    console.print(f"[bold]feedgan demo[/] -> {run}")
    t0 = time.perf_counter()
    sim = simulate(replace(sim_cfg, log_impressions=cfg.per_action))  # impressions: only the propensity part
    full_log = sim.interactions
    if cfg.per_action:  # the log without exposures is the same log as without log_impressions
        sim.interactions = keep_actions(full_log, [a for a in full_log.actions if a != EXPOSURE])
    console.print(f"simulated {cfg.users:,} users, {cfg.items:,} posts: {len(sim.interactions):,} interactions, "
                  f"{len(sim.interactions.social):,} friend edges in {time.perf_counter() - t0:.1f}s")
    data_cfg = DataConfig(split=cfg.split, valid=cfg.valid, test=cfg.test, seed=cfg.seed)
    save_yaml(run / "config.yaml", {"demo": cfg, "simulation": sim_cfg, "data": data_cfg})

    ds = prepare(sim.interactions, data_cfg)  # seed cfg.seed: the split that is tuned on and shown

    def make_dataset(seed: int) -> Dataset:
        return ds if seed == cfg.seed else prepare(sim.interactions, replace(data_cfg, seed=seed))

    stats = ds.stats()
    for name in sorted(set(LEFT_OUT) - set(cfg.models)):
        console.print(f"left out: {name}: {LEFT_OUT[name]}")
    console.print(f"tuning {len(specs)} models on validation, {cfg.seeds} seeds each, up to {cfg.max_trials} "
                  f"settings per model, in {budget.left():.0f} s left of the {cfg.budget_s:.0f} s budget")
    reserve = max(REPORT_RESERVE * cfg.budget_s, 4.0)  # the closing stage takes a few seconds at any size
    with progress_bar(progress) as prog:
        leaderboard = run_bench(make_dataset, specs, seeds=cfg.seeds, metric=cfg.metric, max_trials=cfg.max_trials,
                                budget=budget.part(LEADERBOARD_SHARE, reserve=reserve), seed=cfg.seed,
                                progress=prog, keep_models=True, log=print_line)

    _print_leaderboard(leaderboard, cfg)
    per_action = None
    if cfg.per_action:
        if budget.left() - reserve < 0.05 * cfg.budget_s:
            budget.cut(f"per-action part left out ({max(0.0, budget.left()):.0f} s of the budget left)")
        else:
            share = PER_ACTION_SHARE if cfg.synthetic else 0.9
            per_action = _per_action(sim, full_log, cfg, progress,
                                     budget.part(share, "likes from views: ", reserve=reserve))
    synthetic = None
    if cfg.synthetic:
        if budget.left() - reserve < 0.05 * cfg.budget_s:
            budget.cut(f"synthetic-users part left out ({max(0.0, budget.left()):.0f} s of the budget left)")
        else:
            synthetic = _synthetic(sim, cfg, budget.part(0.9, "synthetic users: ", reserve=reserve))
    examples = _example_users(leaderboard[0]["_model"], ds, sim, n_users=3)
    _print_examples(examples, model_label(leaderboard[0]))
    metrics = {"dataset": stats, "seeds": cfg.seeds, "selection_metric": cfg.metric,
               "leaderboard": public_rows(leaderboard), "budget_s": cfg.budget_s, "cut": budget.cuts,
               "left_out": {n: LEFT_OUT[n] for n in LEFT_OUT if n not in cfg.models},
               "simulation": sim.summary(), "seconds": time.perf_counter() - t_start}
    if per_action is not None:
        metrics["per_action"] = {"leaderboard": public_rows(per_action["rows"]), "propensity": per_action["propensity"]}
    if synthetic is not None:
        metrics["synthetic"] = {k: synthetic[k] for k in ("users", "items", "models", "rows")}
    write_json(run / "metrics.json", metrics)
    save_models(run, ds, leaderboard)
    _write_report(run, cfg, leaderboard, ds, stats, sim, examples, per_action, synthetic, metrics)
    seconds = time.perf_counter() - t_start
    console.print(f"wrote {run / 'metrics.json'} and {run / 'report.html'} ({seconds:.0f}s in all, "
                  f"budget {cfg.budget_s:.0f}s)")
    if budget.cuts:
        console.print("the time budget cut: " + "; ".join(budget.cuts), soft_wrap=True)
    return run


def process_age_s() -> float:
    """Seconds since this process started (Linux; 0.0 where that cannot be read): the demo's
    budget covers the interpreter's start and imports too."""
    try:
        import os

        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _per_action(sim, full_log, cfg, progress, budget: Budget) -> dict:
    """Likes predicted from views (a per-action leaderboard), and P(like | shown) with its
    calibration, on the same simulated network."""
    from .eval.bench import behaviour_specs
    from .eval.propensity import evaluate_propensity
    from .rec.propensity import LogisticPropensity

    specs = behaviour_specs(["view"])
    like_cfg = DataConfig(split="random", valid=cfg.valid, test=cfg.test, seed=cfg.seed, target_action="like")
    first = prepare(sim.interactions, like_cfg)
    with progress_bar(progress) as prog:
        rows = run_bench(lambda s: first if s == cfg.seed else prepare(sim.interactions, replace(like_cfg, seed=s)),
                         [specs[n] for n in ("most-popular", "ease", "ease-stacked", "seen-first", "ease-seen")],
                         seeds=cfg.seeds, metric=cfg.metric, max_trials=cfg.max_trials, seed=cfg.seed,
                         progress=prog, masks=("target",), budget=budget, log=print_line)
    table = Table(title=f"Predicting likes from views: test, mean±std over {cfg.seeds} seeds")
    for col in ("model", "HR@10", "NDCG@10", "NDCG@20"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], *(f"{r['test'][m]['mean']:.3f}±{r['test'][m]['std']:.3f}"
                                    for m in ("hitrate@10", "ndcg@10", "ndcg@20")))
    console.print(table)
    exp = prepare(full_log, DataConfig(split="random", valid=cfg.valid, test=cfg.test, seed=cfg.seed,
                                       target_action=EXPOSURE, aux_in_train=False))
    model = LogisticPropensity().fit(exp, target="like", parts=("train", "valid"))
    prop = evaluate_propensity(model, exp, "test", actions=["like"])["like"]
    console.print(f"P(like | shown), logistic model on {prop['n']:,} held-out impressions: ROC-AUC {prop['auc']:.3f}, "
                  f"log-loss {prop['logloss']:.4f}, ECE {prop['ece']:.4f}")
    return {"rows": rows, "propensity": prop}


CONSOLE_HEADERS = {"membership AUC": "MIA AUC", "two-sample AUC": "2-sample", "popularity 1-TVD (ceiling)":
                   "popularity (ceil.)", "co-occurrence (ceiling)": "co-occur. (ceil.)",
                   "exact copies (natural)": "copies (natural)", "TSTR ratio": "TSTR", "report s": "score s"}


def _synthetic(sim, cfg: DemoConfig, budget: Budget) -> dict:
    """Synthetic users from generators fitted on some simulated users, scored on the others."""
    from .synth import Profiles
    from .synth.quick import SUMMARY_COLUMNS, quick_report

    profiles = Profiles.from_interactions(sim.interactions)
    out = quick_report(profiles, budget, seed=cfg.seed, log=print_line)
    table = Table(title=f"Synthetic users: generators fitted on {out['users']['train']:,} users, scored against "
                        f"{out['users']['holdout']:,} others (goals: TSTR >= 0.9, membership AUC <= 0.55, "
                        f"two-sample AUC <= 0.6)")
    for col in SUMMARY_COLUMNS:  # short headers: the table fits 100 columns
        table.add_column(CONSOLE_HEADERS.get(col, col), justify="left" if col == "generator" else "right")
    for row in out["rows"]:
        table.add_row(*(row[c] for c in SUMMARY_COLUMNS))
    console.print(table)
    return out


def _synthetic_html(synthetic: dict) -> str:
    from .synth.quick import SUMMARY_COLUMNS

    u = synthetic["users"]
    return (f"<p>The simulated users split by user: {u['train']:,} train users (the only ones a generator sees), "
            f"{u['holdout']:,} holdout users (fidelity, the two-sample test and membership inference compare "
            f"against them; the ceiling is train vs holdout) and {u['test']:,} test users (TSTR: "
            f"{', '.join(synthetic['models'])} trained on the synthetic users, as a ratio to the same models "
            f"trained on the real train users). copy-real resamples train users: it must fail the privacy "
            f"figures. <code>feedgan synth report</code> gives the full report (five recommenders, the "
            f"shadow-model attack, plots); docs/synth.md has the benchmarks.</p>"
            + report.table_html(synthetic["rows"], SUMMARY_COLUMNS))


def model_label(row: dict) -> str:
    """What a leaderboard row really is: a GAN whose adversarial training validation switched off
    (``epochs`` 0 or ``adversarial`` off: the starting model alone: EASE for ``easegan``) says so."""
    chosen = row.get("params_by_seed") or [row["params"]]
    off = sum(1 for p in chosen if row["model"] in ADVERSARIAL_BASE
              and (p.get("epochs") == 0 or p.get("adversarial") is False))
    if not off:
        return row["model"]
    base = ADVERSARIAL_BASE[row["model"]]
    if off == len(chosen):
        return f"{row['model']} (= {base}: adversarial training switched off by validation)"
    return f"{row['model']} (adversarial training switched off by validation on {off} of {len(chosen)} seeds)"


def _fmt(cell: dict) -> str:
    return f"{cell['mean']:.4f} ± {cell['std']:.4f}"


SHORT = {"precision": "P", "recall": "R", "ndcg": "NDCG", "mrr": "MRR", "coverage": "Cov"}


def _print_leaderboard(rows: list[dict], cfg: DemoConfig) -> None:
    table = Table(title=f"Test split, mean±std over the seeds run (of {cfg.seeds}); chosen on validation {cfg.metric}")
    table.add_column("model")
    for m in LEADERBOARD_METRICS:
        name, k = m.split("@")
        table.add_column(f"{SHORT[name]}@{k}", justify="right")
    for col in ("seeds", "tried", "fit s"):
        table.add_column(col, justify="right")
    notes = []
    for r in rows:
        cells = [f"{r['test'][m]['mean']:.3f}±{r['test'][m]['std']:.3f}" for m in LEADERBOARD_METRICS]
        label = model_label(r)
        if label != r["model"]:  # the long story goes under the table, so the columns stay readable
            notes.append(f"* {label}")
            label = f"{r['model']} *"
        if r["cut"]:
            label += " †"
        table.add_row(label, *cells, str(r["runs"]), str(len(r["trials"])), f"{r['test']['fit_s']['mean']:.1f}")
    console.print(table)
    if any(r["cut"] for r in rows):
        notes.append("† fewer settings, seeds or epochs than planned, to keep to the time budget (listed at the end)")
    for line in notes:
        print_line(line)


def _example_users(model, ds: Dataset, sim, n_users: int) -> list[dict]:
    """A few active users: their strongest true interests vs. the topics of what they get."""
    hist = ds.history("test")
    users = np.argsort(-hist.getnnz(1), kind="stable")[[0, len(hist.indptr) // 4, len(hist.indptr) // 2]][:n_users]
    items, _ = model.recommend(users, n=10, history=hist[users])
    topic = sim.item_topic[ds.item_ids.values]  # (n_items,) topic of each dataset item (raw ids = sim rows)
    out = []
    for u, rec in zip(users, items):
        raw_user = ds.user_ids.values[u]
        interest = sim.user_interest[raw_user]
        top_topics = np.argsort(-interest)[:3]
        rec = rec[rec >= 0]
        on_topic = float(np.isin(topic[rec], top_topics).mean()) if len(rec) else 0.0
        out.append({"user": raw_user.item() if hasattr(raw_user, "item") else raw_user,
                    "history": int(hist[u].nnz), "top_topics": top_topics.tolist(),
                    "recommended": ds.item_ids.values[rec].tolist(), "topics": topic[rec].tolist(),
                    "on_topic": on_topic})
    return out


def _print_examples(examples: list[dict], model_name: str) -> None:
    table = Table(title=f"Recommendations from {model_name} (ground truth: the user's 3 strongest topics)")
    for col in ("user", "history", "true top topics", "topics of the top-10 posts", "on-topic"):
        table.add_column(col)
    for e in examples:
        table.add_row(str(e["user"]), str(e["history"]), " ".join(map(str, e["top_topics"])),
                      " ".join(map(str, e["topics"])), f"{e['on_topic']:.0%}")
    console.print(table)


def _write_report(run: Path, cfg: DemoConfig, leaderboard, ds: Dataset, stats: dict, sim, examples,
                  per_action: dict | None, synthetic: dict | None, metrics: dict) -> None:
    total = ds.history("test") + ds.matrix("test")
    social_deg = None if ds.social is None else ds.social.getnnz(1)
    rows = [{"model": model_label(r), **{m: _fmt(r["test"][m]) for m in LEADERBOARD_METRICS},
             "seeds": r["runs"], "chosen params": r["params"], "fit s": f"{r['test']['fit_s']['mean']:.2f}"}
            for r in leaderboard]
    data_rows = [{"part": p, **v} for p, v in stats["parts"].items()]
    sections = [
        ("Leaderboard", f"<p>Test split, mean ± std over the seeds each model ran (up to {cfg.seeds}: the "
                        f"time budget may cut them); hyperparameters chosen on the "
                        f"validation split ({cfg.metric}), refit on train+valid, test scored once per seed.</p>"
         + report.table_html(rows, list(rows[0]))),
        ("Metrics", report.figure_html(report.metrics_chart(leaderboard, LEADERBOARD_METRICS), "metrics chart")),
        ("Data", f"<p>{stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions "
                 f"({stats['pairs']:,} user-item pairs, density {stats['density']:.4f}), "
                 f"{stats['social_edges']:,} friend edges.</p>"
         + report.table_html(data_rows, ["part", "pairs", "users", "items", "by_action"])
         + report.figure_html(report.degree_chart(total.getnnz(1), total.getnnz(0), social_deg), "degrees")
         + report.figure_html(report.action_chart(stats["by_action"]), "action mix")),
        ("Example recommendations", report.table_html(examples, ["user", "history", "top_topics", "recommended",
                                                                 "topics", "on_topic"])),
        ("Time budget", _budget_html(cfg, metrics)),
        ("Configuration", f"<pre>{(run / 'config.yaml').read_text()}</pre>"),
    ]
    if per_action is not None:
        from .eval.propensity import reliability_chart

        prop = per_action["propensity"]
        rows_pa = [{"model": r["model"], **{m: _fmt(r["test"][m]) for m in ("hitrate@10", "ndcg@10", "ndcg@20")},
                    "chosen params": r["params"]} for r in per_action["rows"]]
        sections[2:2] = [("Per action: likes from views",
                          "<p>Like pairs held out per user; the view before a held-out like stays in train "
                          "(the platform knows what was viewed). Only the user's liked items are excluded.</p>"
                          + report.table_html(rows_pa, list(rows_pa[0]))),
                         ("Calibration: P(like | shown)",
                          f"<p>Logistic propensity model on held-out impressions: ROC-AUC {prop['auc']:.3f}, "
                          f"log-loss {prop['logloss']:.4f}, ECE {prop['ece']:.4f} ({prop['n']:,} pairs).</p>"
                          + report.figure_html(reliability_chart({"logreg-propensity": prop["reliability"]}),
                                               "reliability"))]
    if synthetic is not None:
        sections.insert(-2, ("Synthetic users", _synthetic_html(synthetic)))
    report.write_report(run / "report.html", "feedgan demo", sections)


def _budget_html(cfg: DemoConfig, metrics: dict) -> str:
    """What the budget cut and which models the demo leaves out, as report paragraphs."""
    import html

    spent = f"<p>Budget {cfg.budget_s:.0f} s; the run took {metrics['seconds']:.0f} s before this report.</p>"
    cut = "".join(f"<li>{html.escape(c)}</li>" for c in metrics["cut"])
    out = "".join(f"<li>{html.escape(n)}: {html.escape(why)}</li>" for n, why in metrics["left_out"].items())
    return (spent + (f"<p>Cut to fit the budget:</p><ul>{cut}</ul>" if cut else "<p>Nothing was cut.</p>")
            + (f"<p>Left out of the demo:</p><ul>{out}</ul>" if out else ""))
