"""The ``feedgan`` command line: one Typer app.

    feedgan demo                                   # simulate, train, leaderboard, report
    feedgan data inspect u.data --format movielens --positive-threshold 4
    feedgan data simulate --users 100000 --out sim.parquet
    feedgan data convert ratings.dat --format movielens --out ml.inter

Every command runs inside one error boundary (:class:`_Boundary`): the errors a person can act on
(bad input, a damaged run folder, a diverged GAN) print one red line and exit with status 2; any
other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .avatars.cli import avatars_app
from .cli_options import (COLUMNS, DEDUP, NO_HEADER, SEP, SOCIAL, SOCIAL_COLUMNS, SOCIAL_HEADER, SOCIAL_SEP,
                          _columns)
from .data.schema import DataError
from .moderation.cli import moderate_app
from .ranking import METRICS
from .progress import console, print_line
from .synth.cli import synth_app
from .progress import fail as _fail


def _project_errors() -> tuple[type[BaseException], ...]:
    """The project's error classes: each message names the file or argument and the fix."""
    from .avatars.images import ImageDataError
    from .avatars.inception import InceptionWeightsError
    from .gan import NonFiniteLossError, ReplicaDivergenceError
    from .io import ArtifactError
    from .params import ParamError
    from .rec.base import NotFittedError
    from .serve.registry import UnknownModelError
    from .serve.store import IdTypeError

    return (DataError, ArtifactError, ParamError, ImageDataError, InceptionWeightsError, NonFiniteLossError,
            ReplicaDivergenceError, UnknownModelError, NotFittedError, IdTypeError)


def _is_project_error(exc: BaseException) -> bool:
    """A project error class; an OSError the system raised with an errno (permission denied, disk
    full, not a folder); or a ValueError / FileNotFoundError raised by feedgan's own code (its checks
    of arguments and files). The same types raised inside pandas, numpy or torch are bugs."""
    if isinstance(exc, _project_errors()) or (isinstance(exc, OSError) and exc.errno is not None):
        return True
    if not isinstance(exc, (ValueError, FileNotFoundError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").partition(".")[0] == __package__


# Library messages name the Python keywords (``format=``); on the command line they read as the flags.
CLI_SPELLING = {"format=": "--format", "columns=": "--columns", "sep=": "--sep", "header=": "--no-header",
                "encoding=": "--encoding", "social=": "--social", "social_columns=": "--social-columns",
                "social_sep=": "--social-sep", "social_header=": "--social-header",
                "positive_threshold=": "--positive-threshold", "k_core=": "--k-core", "dedup=": "--dedup",
                "target=": "--target", "aux=": "--aux", "Dataset.save": "`feedgan bench --save-models`"}
_PYTHON_HINT = re.compile("|".join(rf"(?<![\w-]){re.escape(k)}(?![\w.-])" if k.endswith("=") else re.escape(k)
                                   for k in CLI_SPELLING))


def _cli_spelling(message: str) -> str:
    """``"pass format= one of csv, ..."`` -> ``"pass --format one of csv, ..."`` (``valid=0.5``, a keyword
    with its value, is left alone)."""
    return _PYTHON_HINT.sub(lambda m: CLI_SPELLING[m.group()], message)


class _Message(Exception):
    """An error message already worded for the command line."""


def _fail_cli(exc: BaseException) -> None:
    """:func:`feedgan.progress.fail` with the message's Python keywords spelled as flags."""
    _fail(_Message(_cli_spelling(str(exc))))


class _Boundary(typer.core.TyperGroup):
    """The root command group: a project error from any command becomes one red line, exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not _is_project_error(exc):
                raise
            _fail_cli(exc)


app = typer.Typer(cls=_Boundary, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="GANs and honest baselines for social-media data.")
data_app = typer.Typer(no_args_is_help=True, help="Read, inspect, simulate and convert interaction logs.")
app.add_typer(data_app, name="data")
app.add_typer(avatars_app, name="avatars")
app.add_typer(synth_app, name="synth")
app.add_typer(moderate_app, name="moderate")


def _social(social: Optional[Path], columns: Optional[str], sep: Optional[str], header: Optional[bool]) -> dict:
    """The friend-graph options of a command, as ``read`` / DataConfig keywords."""
    return {"social": None if social is None else str(social),
            "social_columns": _columns(columns, "--social-columns", "src=0,dst=1 or src=trustor,dst=trustee"),
            "social_sep": sep, "social_header": header}


def _dedup(rule: str) -> str:
    """Refuse an unknown --dedup before any file is read."""
    from .data.clean import DEDUP_RULES

    if rule not in DEDUP_RULES:
        raise DataError(f"unknown --dedup {rule!r}", fix=f"use one of {', '.join(DEDUP_RULES)}")
    return rule


def _read(path: Path, format: str, columns: Optional[str], sep: Optional[str], no_header: bool, **social):
    from .data.readers import read

    return read(path, format, columns=_columns(columns), sep=sep, header=not no_header, **social)


@data_app.command("inspect")
def data_inspect(
    path: Path = typer.Argument(..., help="log file or folder"),
    format: str = typer.Option("auto", "--format", "-f", help="csv, tsv, parquet, jsonl, movielens, lightgcn, ..."),
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    no_header: bool = NO_HEADER,
    positive_threshold: Optional[float] = typer.Option(None, help="keep ratings >= this as positives"),
    k_core: Optional[int] = typer.Option(None, help="k-core filter on users and items"),
    dedup: str = DEDUP,
    split: str = typer.Option("auto", help="auto (predefined when the files carry one, else none), or a method"),
    social: Optional[Path] = SOCIAL,
    social_columns: Optional[str] = SOCIAL_COLUMNS,
    social_sep: Optional[str] = SOCIAL_SEP,
    social_header: Optional[bool] = SOCIAL_HEADER,
    as_json: bool = typer.Option(False, "--json", help="print the statistics as JSON"),
):
    """Print counts, density, action mix and degree statistics of a log."""
    from .data.clean import deduplicate, k_core as kcore, to_implicit
    from .data.dataset import Dataset
    from .data.split import split as do_split

    rule = _dedup(dedup)
    inter = _read(path, format, columns, sep, no_header, **_social(social, social_columns, social_sep, social_header))
    rows_read = len(inter)
    if positive_threshold is not None:
        inter = to_implicit(inter, positive_threshold)
    inter = deduplicate(inter, rule)
    if k_core:
        inter = kcore(inter, k_core)
    method = ("predefined" if inter.has_parts else None) if split == "auto" else split
    codes = do_split(inter, method, valid=0.0) if method else None
    stats = Dataset.from_interactions(inter, codes).stats()
    stats["rows_read"], stats["rows"] = rows_read, len(inter)  # as in the file; left after every step
    if as_json:
        print(json.dumps(stats, indent=2, default=str))
        return
    table = Table(title=f"{path} ({format})", show_header=False)
    labels = {"rows_read": "rows read", "rows": "rows kept (merged, filtered)", "social_edges": "friend edges",
              "social_only_users": "friend ids not in the log"}
    for k in ("users", "items", "rows_read", "rows", "interactions", "pairs", "density", "social_edges",
              "social_only_users"):
        v = stats[k]
        table.add_row(labels.get(k, k), f"{v:.6f}" if isinstance(v, float) else f"{v:,}")
    table.add_row("by action", ", ".join(f"{a}: {n:,}" for a, n in stats["by_action"].items()))
    if stats["funnel"]:
        table.add_row("funnel (pairs)", ", ".join(f"P({k}) {v:.4f}" for k, v in stats["funnel"].items()))
    for name in ("user_degree", "item_degree"):
        table.add_row(name, ", ".join(f"{k} {v:g}" for k, v in stats[name].items()))
    for p, v in stats["parts"].items():
        if v["pairs"]:
            table.add_row(f"part {p}", f"{v['pairs']:,} pairs, {v['users']:,} users, {v['items']:,} items")
    if stats["notes"]:
        table.add_row("notes", ", ".join(f"{k}: {v}" for k, v in stats["notes"].items()))
    console.print(table)
    if stats["social_only_users"]:
        console.print(f"note: {stats['social_only_users']:,} friend ids are not users of the log (after filtering): "
                      "they have no interactions, and count as users only through their friend edges",
                      highlight=False, soft_wrap=True)


@data_app.command("simulate")
def data_simulate(
    out: Path = typer.Option(..., "--out", "-o", help=".parquet, .csv, .tsv, .jsonl or .inter (RecBole)"),
    users: int = typer.Option(2000, help="number of users"),
    items: int = typer.Option(3000, help="number of posts"),
    seed: int = typer.Option(0, help="random seed"),
    social_out: Optional[Path] = typer.Option(None, help="also write the friend graph (src,dst) as CSV"),
):
    """Generate a simulated social-network log with known ground truth."""
    import time

    from .data.readers import write_recbole, write_table
    from .data.simulate import SimulationConfig, simulate
    from .io import atomic_open

    t0 = time.perf_counter()
    sim = simulate(SimulationConfig(n_users=users, n_items=items, seed=seed))
    (write_recbole if out.suffix == ".inter" else write_table)(sim.interactions, out)
    if social_out is not None:
        with atomic_open(social_out) as fh:
            sim.interactions.social[["src", "dst"]].to_csv(fh, index=False)
    console.print(f"wrote {len(sim.interactions):,} interactions to {out} in {time.perf_counter() - t0:.1f}s")
    console.print(json.dumps(sim.summary(), indent=1, default=str))


@data_app.command("convert")
def data_convert(
    path: Path = typer.Argument(..., help="log file or folder"),
    out: Path = typer.Option(..., "--out", "-o", help=".parquet, .csv, .tsv, .jsonl or .inter (RecBole)"),
    format: str = typer.Option("auto", "--format", "-f"),
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    no_header: bool = NO_HEADER,
):
    """Convert a log between formats (written atomically)."""
    from .data.readers import write_recbole, write_table

    inter = _read(path, format, columns, sep, no_header)
    (write_recbole if out.suffix == ".inter" else write_table)(inter, out)
    console.print(f"wrote {len(inter):,} interactions to {out}")


def _data_options(data: Path, format: str, split: str, valid: float, test: float, positive_threshold, k_core,
                  columns, sep, no_header: bool, seed: int, target: str | None = None, aux_in_train: bool = True,
                  dedup: str = "auto", social: dict | None = None):
    from .data.dataset import DataConfig

    return DataConfig(path=str(data), format=format, split=split, valid=valid, test=test, seed=seed,
                      positive_threshold=positive_threshold, k_core=k_core, columns=_columns(columns), sep=sep,
                      header=not no_header, target_action=target, aux_in_train=aux_in_train, dedup=_dedup(dedup),
                      **(social or {}))


def _check_actions(ds, aux: dict[str, float]) -> None:
    """Auxiliary actions must exist in the data (``friends`` needs a social graph)."""
    from .rec.base import FRIENDS

    for a in aux:
        if a == FRIENDS:
            if ds.social is None or ds.social.nnz == 0:
                raise DataError(f"--aux {FRIENDS} needs a social graph and this data has none",
                                fix="pass the friend edge file with --social, read a format with a friend or "
                                    "trust file, or drop friends")
        elif a not in ds.actions:
            raise DataError(f"--aux action {a!r} is not in this log", fix=f"use some of {', '.join(ds.actions)}")
        elif a == ds.target_action:
            raise DataError(f"--aux {a!r} is the target itself", fix="drop it from --aux")


def _task_specs(target: Optional[str], aux: Optional[str]):
    """The auxiliary weights of ``--aux`` and the models for the task: with a target, the
    per-action models (their grids tune the auxiliary weights; ``train`` uses the given ones)."""
    from .eval.bench import behaviour_specs, model_specs
    from .rec.base import _aux_weights

    aux_w = _aux_weights(aux)
    if aux_w and not target:
        _fail(ValueError("--aux needs --target (the action the auxiliary ones predict)"))
    return aux_w, (behaviour_specs(list(aux_w)) if target else model_specs())


DATA = typer.Option(..., "--data", "-d", help="log file or folder")
FORMAT = typer.Option("auto", "--format", "-f", help="reader format (see `feedgan data inspect --help`)")
SPLIT = typer.Option("random", help="random, leave-last-out, temporal, by-user, predefined")
TARGET = typer.Option(None, "--target", help="the action to predict (held out per pair), e.g. share or buy")
AUX = typer.Option(None, "--aux", help="auxiliary actions, strongest first, e.g. cart,view or view=0.2,like "
                                      "(friends = the social graph's target actions); bench tunes the weights "
                                      "on validation, train uses them as given")
AUX_IN_TRAIN = typer.Option(True, "--aux-in-train/--no-aux-in-train",
                            help="keep a held-out pair's auxiliary actions (the view before a like) in train")


@app.command()
def bench(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="log file or folder (not with --resume)"),
    format: str = FORMAT,
    split: str = SPLIT,
    models: Optional[str] = typer.Option(None, help="comma-separated model names (default: most-popular,itemknn,"
                                         "rp3beta,ease,puresvd; with --target: most-popular,ease,ease-stacked,"
                                         "seen-first,ease-seen)"),
    target: Optional[str] = TARGET,
    aux: Optional[str] = AUX,
    aux_in_train: bool = AUX_IN_TRAIN,
    seeds: int = typer.Option(5, help="seeds per model (refit + test once each)"),
    valid: float = typer.Option(0.1, help="validation fraction (cut from train for predefined splits)"),
    test: float = typer.Option(0.2, help="test fraction (ignored for predefined splits)"),
    positive_threshold: Optional[float] = typer.Option(None, help="ratings >= this become positives"),
    k_core: Optional[int] = typer.Option(None, help="k-core filter"),
    dedup: str = DEDUP,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    no_header: bool = NO_HEADER,
    social: Optional[Path] = SOCIAL,
    social_columns: Optional[str] = SOCIAL_COLUMNS,
    social_sep: Optional[str] = SOCIAL_SEP,
    social_header: Optional[bool] = SOCIAL_HEADER,
    metric: str = typer.Option("ndcg@20", help="selection metric, on validation"),
    ks: str = typer.Option("5,10,20", help="cut-offs"),
    max_trials: int = typer.Option(10, help="hyperparameter settings tried per model"),
    seed: int = typer.Option(0, help="base seed"),
    save_models: bool = typer.Option(False, help="store the dataset and seed-0 models for `feedgan evaluate`"),
    runs_dir: Path = typer.Option(Path("runs")),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN",
                                         help="carry on a stopped bench run (folder or number) with its saved "
                                              "options, skipping the models it finished"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
):
    """Tune on validation, refit, test once per seed; write results.json and results.md.

    Each model's rows are written as it finishes (results.json says ``"complete": false`` until
    the last), so a stopped run keeps what it did and ``--resume RUN`` finishes it."""
    opts = {k: v for k, v in locals().items() if k not in ("resume", "progress", "runs_dir")}
    if resume is not None:
        run, opts, previous = _resume_bench(resume, runs_dir, opts)
    elif data is None:
        raise typer.BadParameter("give the log to benchmark with --data (or --resume RUN)", param_hint="--data")
    else:
        run, previous = None, {}
    _bench(opts, run, previous, runs_dir, progress)


BENCH_OPTIONS = "bench.json"  # a bench run's own options, for --resume


def _resume_bench(spec: str, runs_dir: Path, given: dict) -> tuple[Path, dict, dict]:
    """The folder, saved options and results so far (results.json: finished rows, data counts;
    empty before the first row) of the bench run ``spec``."""
    from .io import read_json
    from .runs import find_run

    run = find_run(spec, runs_dir)
    saved = read_json(run / BENCH_OPTIONS, missing=f"{run} is not a bench run (it has no {BENCH_OPTIONS}); "
                                                  "resume a folder that `feedgan bench` wrote")
    if given["data"] is not None and Path(given["data"]) != Path(saved["data"]):
        raise DataError(f"--data {given['data']} is not the data of {run} ({saved['data']})",
                        fix="drop --data with --resume (the run's own options are used)")
    results = read_json(run / "results.json") if (run / "results.json").exists() else {}
    if results.get("complete"):
        raise DataError(f"{run} is complete: every model has its rows", fix="start a new run without --resume")
    for key in ("data", "social"):
        saved[key] = None if saved.get(key) is None else Path(saved[key])
    return run, saved, results


def _bench(opts: dict, run: Optional[Path], previous: dict, runs_dir: Path, progress: Optional[bool]) -> None:
    """A bench run into a new folder (``run`` None), or finishing ``run`` from its ``previous`` results."""
    from dataclasses import replace

    from .config import save_yaml
    from .data.dataset import prepare, read_log
    from .eval.bench import public_rows, results_markdown, run_bench
    from .io import atomic_open, write_json
    from .progress import progress_bar
    from .runs import check_runs_root, new_run_dir

    check_runs_root(runs_dir)
    o = opts
    aux_w, available = _task_specs(o["target"], o["aux"])
    models = o["models"] or ("most-popular,ease,ease-stacked,seen-first,ease-seen" if o["target"]
                             else "most-popular,itemknn,rp3beta,ease,puresvd")
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in available]
    if unknown:
        _fail(ValueError(f"unknown model(s) {unknown}; available: {', '.join(available)}"))
    cut = sorted({int(k) for k in o["ks"].split(",")})
    name, _, at = o["metric"].partition("@")
    if name not in METRICS or not at.isdigit() or int(at) not in cut:
        _fail(ValueError(f"--metric {o['metric']!r} must be one of {', '.join(METRICS)} "
                         f"at a cut-off in --ks {o['ks']}"))
    data, split, seed, seeds = o["data"], o["split"], o["seed"], o["seeds"]
    cfg = _data_options(data, o["format"], split, o["valid"], o["test"], o["positive_threshold"], o["k_core"],
                        o["columns"], o["sep"], o["no_header"], seed, o["target"], o["aux_in_train"], o["dedup"],
                        _social(o["social"], o["social_columns"], o["social_sep"], o["social_header"]))
    inter = read_log(cfg)
    first = prepare(inter, cfg)
    _check_actions(first, aux_w)
    stats = first.stats()
    done: list[dict] = []  # rows of models a resumed run already finished
    if run is None:
        run = new_run_dir(runs_dir, "bench")
        write_json(run / BENCH_OPTIONS, {k: str(v) if isinstance(v, Path) else v for k, v in o.items()})
        save_yaml(run / "config.yaml", {"data": cfg, "models": names, "seeds": seeds, "metric": o["metric"],
                                        "ks": cut, "max_trials": o["max_trials"]})
        console.print(f"[bold]bench[/] {data} -> {run}")
    else:
        saved = previous.get("data", {}).get("interactions")
        if saved is not None and saved != stats["interactions"]:
            raise DataError(f"the data behind {run} changed since the run started ({saved:,} interactions then, "
                            f"{stats['interactions']:,} now)", fix="start a new run without --resume")
        done = [r for r in previous.get("rows", []) if r["model"] in names]
        have = [n for n in names if n in {r["model"] for r in done}]
        console.print(f"[bold]bench[/] resuming {run}: {len(done)} of {len(names)} models done"
                      + (f" ({', '.join(have)})" if have else ""))
    show = [f"{m}@{k}" for m in (("hitrate", "recall", "ndcg") if o["target"] else ("precision", "recall", "ndcg"))
            for k in cut]
    what = f"target {o['target']}, aux {','.join(aux_w) or 'none'}, " if o["target"] else ""
    title = f"{Path(data).name} ({what}{split} split, {seeds} seed{'s' if seeds != 1 else ''})"
    if o["save_models"] and not (run / "dataset").exists():
        first.save(run / "dataset")
    finished = list(done)

    def write(rows: list[dict], complete: bool) -> str:
        """results.json and results.md with every row so far (best first)."""
        rows = sorted(rows, key=lambda r: -r["test"][o["metric"]]["mean"])
        md = results_markdown(rows, show, title=title if complete else f"{title}: {len(rows)} of {len(names)} "
                                                                               "models so far")
        write_json(run / "results.json", {"data": stats, "config": cfg, "complete": complete,
                                          "models": names, "rows": public_rows(rows)})
        with atomic_open(run / "results.md") as fh:
            fh.write(md)
        return md

    def on_row(row: dict) -> None:
        if o["save_models"]:
            row["_model"].save(run / "models" / row["model"])
            row.pop("_model")  # stored: free it
        finished.append(row)
        write(finished, complete=len(finished) == len(names))

    def make_dataset(s: int):
        # predefined: one split for every seed, only model seeds vary
        return first if (s == seed or split == "predefined") else prepare(inter, replace(cfg, seed=s))

    with progress_bar(progress) as prog:
        run_bench(make_dataset, [available[n] for n in names], seeds=seeds, metric=o["metric"], ks=cut,
                  max_trials=o["max_trials"], seed=seed, progress=prog, keep_models=o["save_models"],
                  done=done, on_row=on_row, log=print_line)
    md = write(finished, complete=True)
    print_line(md)


def _params(cls, items: list[str], example: str = "l2=500") -> dict:
    """``["l2=5e2", "g_hidden=400,400"]`` -> {"l2": 500.0, "g_hidden": (400, 400)}: each value parsed
    by the type ``cls``'s constructor takes it as (see :mod:`feedgan.params`)."""
    from .params import ParamError, parse_params

    texts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"bad --param {item!r}; write it as name=value, e.g. --param {example}")
        texts[key.strip()] = value
    return parse_params(cls, texts, owner=cls.name)


@app.command()
def train(
    model: str = typer.Argument(..., help="model name, e.g. ease, itemknn, bpr, multvae, cfgan, easegan"),
    data: Path = DATA,
    format: str = FORMAT,
    split: str = SPLIT,
    param: list[str] = typer.Option([], "--param", "-p", help="hyperparameter name=value (repeatable)"),
    valid: float = typer.Option(0.1, help="validation fraction"),
    test: float = typer.Option(0.2, help="test fraction (ignored for predefined splits)"),
    positive_threshold: Optional[float] = typer.Option(None, help="ratings >= this become positives"),
    k_core: Optional[int] = typer.Option(None, help="k-core filter"),
    dedup: str = DEDUP,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    no_header: bool = NO_HEADER,
    social: Optional[Path] = SOCIAL,
    social_columns: Optional[str] = SOCIAL_COLUMNS,
    social_sep: Optional[str] = SOCIAL_SEP,
    social_header: Optional[bool] = SOCIAL_HEADER,
    target: Optional[str] = TARGET,
    aux: Optional[str] = AUX,
    aux_in_train: bool = AUX_IN_TRAIN,
    final: bool = typer.Option(False, help="after validation, refit on train + valid and score test once"),
    seed: int = typer.Option(0, help="split and model seed"),
    runs_dir: Path = typer.Option(Path("runs")),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
):
    """Fit one model, score it on validation (and with --final, once on test); save it as data."""
    import time

    from .config import save_yaml
    from .data.dataset import prepare, read_log
    from .eval.metrics import evaluate as score
    from .io import write_json
    from .progress import progress_bar
    from .runs import check_runs_root, new_run_dir

    check_runs_root(runs_dir)
    aux_w, specs = _task_specs(target, aux)
    if model not in specs:
        _fail(ValueError(f"unknown model {model!r}; available: {', '.join(specs)}"))
    spec = specs[model]
    rec = spec.build({**spec.fixed, **_params(spec.cls, param)}, seed)
    cfg = _data_options(data, format, split, valid, test, positive_threshold, k_core, columns, sep, no_header,
                        seed, target, aux_in_train, dedup, _social(social, social_columns, social_sep, social_header))
    ds = prepare(read_log(cfg), cfg)
    _check_actions(ds, aux_w)
    console.print(f"[bold]train {model}[/] on {data}")
    metrics: dict = {"model": model, "params": rec.get_params(), "target": target, "aux": aux_w}
    with progress_bar(progress, line_every_s=0) as prog:  # off a terminal: a line per epoch and per stage
        t0 = time.perf_counter()
        rec.fit(ds, aux=aux_w or None, progress=prog)
        metrics["fit_s"] = time.perf_counter() - t0
        metrics["selected"] = rec.selected_params()  # what validation chose inside the fit (an epoch count)
        metrics["valid"] = score(rec, ds, "valid", progress=prog)
        if final:
            chosen = {**rec.get_params(), **rec.selected_params()}
            rec = specs[model].build(chosen, seed).fit(ds, parts=("train", "valid", "valid_input"), aux=aux_w or None,
                                                       progress=prog)
            metrics["test"] = score(rec, ds, "test", progress=prog)
    run = new_run_dir(runs_dir, f"train-{model}")  # only now: a failed fit leaves no empty run folder
    save_yaml(run / "config.yaml", {"data": cfg, "model": model, "params": rec.get_params(), "final": final})
    ds.save(run / "dataset")
    rec.save(run / "models" / model)
    write_json(run / "metrics.json", metrics)
    if metrics["selected"]:
        console.print("chosen on validation: " + ", ".join(f"{k}={v}" for k, v in metrics["selected"].items()),
                      highlight=False, markup=False)
    for part in ("valid", "test"):
        if part in metrics:
            console.print(_score_line(part, metrics[part]), highlight=False, soft_wrap=True)
    console.print(f"saved {run / 'models' / model}")


def _score_line(part: str, m: dict) -> str:
    """``valid: precision@10 0.1234 ... (812 users scored, 131 skipped: no held-out items)``."""
    scores = "  ".join(f"{k} {m[k]:.4f}" for k in ("precision@10", "recall@20", "ndcg@20") if k in m)
    return (f"{part}: {scores or 'no scores'}  ({m['users_evaluated']:,} users scored, {m['users_skipped']:,} "
            "skipped: no held-out items)")


@app.command()
def evaluate(
    run: Optional[str] = typer.Argument(None, help="run folder or number (written by `bench --save-models` or "
                                                   "`demo`); default: the newest run with saved models"),
    ks: str = typer.Option("5,10,20", help="cut-offs"),
    runs_dir: Path = typer.Option(Path("runs")),
):
    """Re-score a saved run's models on its test split."""
    from .data.dataset import Dataset
    from .eval.metrics import evaluate as score
    from .io import write_json
    from .rec.base import Recommender
    from .runs import find_run

    folder = find_run(run, runs_dir) if run is not None else _newest_with_models(runs_dir)
    console.print(f"re-scoring {folder}")
    ds = Dataset.load(folder / "dataset")
    model_dirs = sorted(p for p in (folder / "models").glob("*") if (p / "model.json").exists())
    if not model_dirs:
        _fail(FileNotFoundError(f"{folder}: no saved models; run bench with --save-models"))
    cut = sorted({int(k) for k in ks.split(",")})
    table = Table(title=f"{folder.name}: test split, re-scored")
    show = [f"{m}@{cut[-1]}" for m in ("precision", "recall", "ndcg", "mrr")]
    for col in ["model", *show]:
        table.add_column(col, justify="right")
    results = {}
    for d in model_dirs:
        model = Recommender.load(d)
        results[d.name] = score(model, ds, "test", cut)  # the folder is the bench row's name (variants included)
        table.add_row(d.name, *[f"{results[d.name][m]:.4f}" for m in show])
    write_json(folder / "evaluate.json", results)
    console.print(table)


def _newest_with_models(runs_dir: Path) -> Path:
    """The newest run folder under ``runs_dir`` holding saved models (bench --save-models, demo)."""
    runs = sorted(p for p in runs_dir.glob("[0-9]" * 5 + "-*") if (p / "models").is_dir() and (p / "dataset").is_dir())
    if not runs:
        raise FileNotFoundError(f"no run under {runs_dir}/ has saved models; run `feedgan bench ... --save-models` "
                                "or `feedgan demo` first, or name the run folder")
    return runs[-1]


@app.command()
def demo(
    users: int = typer.Option(3000, help="simulated users"),
    items: int = typer.Option(2000, help="simulated posts"),
    seeds: int = typer.Option(3, help="seeds per model (mean ± std)"),
    seed: int = typer.Option(0, help="base random seed"),
    budget: float = typer.Option(150.0, min=0.0, help="wall-clock budget for the whole run, in seconds: on a slow "
                                 "or busy machine the schedule shrinks to fit and the report lists each cut"),
    models: Optional[str] = typer.Option(None, help="comma-separated subset of the demo's models"),
    runs_dir: Path = typer.Option(Path("runs"), help="where run folders go"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bars (default: on a terminal)"),
):
    """Simulate a social network, tune and test every recommender, print a leaderboard, write a report."""
    from .demo import DemoConfig, process_age_s, run_demo

    cfg = DemoConfig(users=users, items=items, seeds=seeds, seed=seed, budget_s=budget, runs_dir=str(runs_dir))
    if models:
        cfg.models = [m.strip() for m in models.split(",") if m.strip()]
    # the feedgan command's own start-up counts against the budget (not that of a host process: a test run)
    import sys

    started_here = Path(sys.argv[0]).name == "feedgan"
    run_demo(cfg, progress=progress, spent_s=process_age_s() if started_here else 0.0)


@app.command()
def serve(
    registry: Path = typer.Option(Path("runs"), help="folder of trained runs (from `feedgan train`)"),
    db: Path = typer.Option(Path("feedgan.db"), help="SQLite store; created with its schema on first start"),
    host: str = typer.Option("127.0.0.1", help="address to listen on; one other than loopback needs a token"),
    port: int = typer.Option(8000),
    token: Optional[str] = typer.Option(None, envvar="FEEDGAN_TOKEN", show_default=False,
                                        help="writes and admin calls need `Authorization: Bearer <token>`; "
                                             "prefer the FEEDGAN_TOKEN variable (a flag shows in `ps`)"),
    protect_reads: bool = typer.Option(False, "--protect-reads", help="reads need the token too (/health excepted)"),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, min=1,  # = serve.app.MAX_BODY_BYTES (not imported: torch)
                                       help="largest request body; larger is a 413"),
    accept_loss: bool = typer.Option(False, "--accept-loss",
                                     help="start even if the store holds fewer interactions than were acknowledged "
                                          "(a lost or cut -wal, an older copy); they are lost"),
    import_train: bool = typer.Option(True, "--import-train/--no-import-train",
                                      help="on first start (empty store), store the active model's training data"),
    allow_action: list[str] = typer.Option([], "--allow-action", metavar="NAME",
                                           help="accept posted interactions with this action besides the known "
                                                "ones (view, like, comment, share, follow, impression, the stored "
                                                "ones, the models' own); repeatable"),
    social: Optional[Path] = typer.Option(None, "--social", help="friend edge file (src, dst [, weight]) to keep in "
                                          "the store's social table beside the imported training rows (a model's "
                                          "friends channel comes from the data it was trained on: train --social)"),
    social_columns: Optional[str] = SOCIAL_COLUMNS,
    social_sep: Optional[str] = SOCIAL_SEP,
    social_header: Optional[bool] = SOCIAL_HEADER,
    rec_cache: int = typer.Option(10_000, min=0, help="recommendation responses kept for reuse until the user's "
                                  "stored history changes (about 1-2 KB each); 0: none"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
):
    """Serve recommendations over HTTP (OpenAPI docs at /docs). Back up the store while it runs with
    `python -c "from feedgan.serve import Store; Store('feedgan.db').backup('backup.db')"`."""
    import sqlite3

    import uvicorn

    from .serve import create_app
    from .serve.startup import ImportLog

    if registry.exists() and not registry.is_dir():
        _fail(NotADirectoryError(f"--registry {registry} is a file: pass the folder of trained runs"))
    if not token and host != "localhost" and not _is_loopback(host):
        _fail(ValueError(f"--host {host} lets other machines reach the service: set a token with FEEDGAN_TOKEN "
                         "(or --token), or keep the default --host 127.0.0.1"))
    try:
        api = create_app(registry, db, import_train=import_train, token=token or None, protect_reads=protect_reads,
                         max_body_bytes=max_body_bytes, accept_loss=accept_loss, allow_actions=tuple(allow_action),
                         import_report=ImportLog(), rec_cache=rec_cache)
    except sqlite3.DatabaseError as e:
        _fail(ValueError(f"{db}: {e}"))
    except (OSError, ValueError) as e:  # a refused store names its file; other errors name theirs
        _fail_cli(e)
    svc = api.state.service
    if social is not None:
        _store_friends(svc.store, _social(social, social_columns, social_sep, social_header))
    access = "no token (loopback only)" if not token else "token on writes" + (" and reads" if protect_reads else "")
    console.print(f"feedgan serve: http://{host}:{port} (docs at /docs), store {db} "
                  f"({svc.store.count():,} interactions), active model {svc.active or 'none'}, {access}")
    uvicorn.run(api, host=host, port=port, log_level=log_level, access_log=False)


def _store_friends(store, opts: dict) -> None:
    """Read the friend edge file of ``--social`` and keep its edges in the store's social table."""
    import pandas as pd

    from .data.readers import read_social

    edges = read_social(opts["social"], columns=opts["social_columns"], sep=opts["social_sep"],
                        header=opts["social_header"])
    added = store.import_social(edges["src"].to_numpy(), edges["dst"].to_numpy())
    friends = sorted({store.canonical(u, "friend id") for u in pd.unique(edges[["src", "dst"]].to_numpy().ravel())
                      .tolist()})
    console.print(f"friend graph {opts['social']}: {len(edges):,} edges ({added:,} new, {store.social_count():,} "
                  f"stored); {store.unknown_users(friends):,} of {len(friends):,} friend ids have no stored "
                  "interactions", highlight=False, soft_wrap=True)


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
