"""``feedgan synth``: fit a synthetic-user generator on real users, sample new ones.

    feedgan synth fit ratings.csv --generator gan --seed 0           # -> runs/00001-synth-gan/
    feedgan synth fit ml-1m/ --format lightgcn --generator vae -p epochs=50
    feedgan synth fit ml-1m/ --format lightgcn --generator vae -p dp_epsilon=8   # DP-SGD (needs opacus)
    feedgan synth sample runs/00001-synth-gan -n 10000 --out synth.parquet --seed 1

A fit run folder holds ``generator/`` (the fitted generator, data only), ``config.yaml`` (the data
options, the generator and its parameters, the seed) and ``split.json``: the real users split by
user into train / holdout / test (fractions 0.6 / 0.2 / 0.2, from the seed). The generator saw
the train users only; a later report reads the same split from there.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..cli_options import COLUMNS, FORMAT, NO_HEADER, SEP, SOCIAL, _columns
from ..data.schema import DataError
from ..progress import console

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
PARTS = ("train", "holdout", "test")

synth_app = typer.Typer(no_args_is_help=True, help="Synthetic users: fit a generator on real train users, sample "
                                                   "new users in the readers' schema.")


def _generator_class(name: str):
    from .generators import GENERATORS

    if name not in GENERATORS:
        raise DataError(f"unknown --generator {name!r}", fix=f"use one of {', '.join(GENERATORS)}")
    return GENERATORS[name]


def _params(cls, items: list[str]) -> dict:
    """``["epochs=50"]`` -> {"epochs": 50}, each value parsed by the type the constructor takes."""
    from ..cli import _params as parse

    return parse(cls, items, example="epochs=50")


def real_profiles(data: str | Path, format: str = "auto", columns: Optional[str] = None, sep: Optional[str] = None,
                  no_header: bool = False, social: Optional[str | Path] = None):
    """Every real user of the log as :class:`~feedgan.synth.Profiles` (impressions left out)."""
    from ..data.readers import read
    from .profiles import Profiles

    inter = read(Path(data), format, columns=_columns(columns), sep=sep, header=not no_header, social=social)
    return Profiles.from_interactions(inter)


def split_parts(profiles, split: dict) -> dict:
    """``{"train": Profiles, "holdout": ..., "test": ...}``: the users of ``split.json`` (by id)."""
    import numpy as np
    import pandas as pd

    index = pd.Index(profiles.users)
    out = {}
    for part in PARTS:
        rows = index.get_indexer(pd.Index(split[part], dtype=profiles.users.dtype))
        if (rows < 0).any():
            raise DataError(f"{int((rows < 0).sum())} {part} users of the run are not in the data",
                            fix="give the data the run was fitted on")
        out[part] = profiles.subset(np.sort(rows))
    return out


def load_run(run: str | Path, runs_dir: str | Path = "runs"):
    """``(folder, generator, config, split)`` of a ``synth fit`` run (folder or number)."""
    from ..config import load_yaml
    from ..io import read_json
    from ..runs import find_run
    from .generators import Generator

    folder = find_run(run, runs_dir)
    missing = f"{folder}: no split.json; is it a `feedgan synth fit` run?"
    return folder, Generator.load(folder / "generator"), load_yaml(folder / "config.yaml"), \
        read_json(folder / "split.json", missing=missing)


@synth_app.command("fit")
def fit_cmd(
    data: Path = typer.Argument(..., help="real log file or folder"),
    generator: str = typer.Option(..., "--generator", "-g", help="gan, vae, simulator, independent or copy"),
    format: str = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    no_header: bool = NO_HEADER,
    social: Optional[Path] = SOCIAL,
    param: list[str] = typer.Option([], "--param", "-p", help="generator hyperparameter name=value (repeatable)"),
    seed: int = typer.Option(0, help="split and training seed"),
    runs_dir: Path = typer.Option(Path("runs")),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
):
    """Split the real users 0.6 / 0.2 / 0.2 by user, fit the generator on the train users, save the run."""
    from ..config import save_yaml
    from ..io import write_json
    from ..progress import progress_bar
    from ..runs import new_run_dir

    cls = _generator_class(generator)
    gen = cls(**_params(cls, param))
    profiles = real_profiles(data, format, columns, sep, no_header, social)
    train, holdout, test = profiles.split_users(SPLIT_FRACTIONS, seed=seed)
    console.print(f"[bold]synth fit {generator}[/] on {data}: {train.n_users:,} train users, {train.n_items:,} items, "
                  f"actions {', '.join(train.action_names)}")
    with progress_bar(progress) as prog:
        t0 = time.perf_counter()
        gen.fit(train, seed=seed, progress=prog)
        fit_s = time.perf_counter() - t0
    run = new_run_dir(runs_dir, f"synth-{generator}")  # only now: a failed fit leaves no run folder
    gen.save(run / "generator")
    write_json(run / "split.json", {p: part.users.tolist() for p, part in zip(PARTS, (train, holdout, test))})
    save_yaml(run / "config.yaml", {"data": {"path": str(data), "format": format, "columns": columns, "sep": sep,
                                             "no_header": no_header, "social": None if social is None else str(social)},
                                    "generator": generator, "params": gen.get_params(), "seed": seed,
                                    "split": dict(zip(PARTS, SPLIT_FRACTIONS))})
    write_json(run / "fit.json", {"fit_s": fit_s, "users": {p: q.n_users for p, q in
                                                            zip(PARTS, (train, holdout, test))}})
    console.print(f"fitted in {fit_s:.1f}s; saved {run}")
    if gen.dp_ is not None:
        console.print(dp_line(gen.dp_), markup=False)


def dp_line(budget: dict) -> str:
    """One line for a differential-privacy budget spent (:mod:`feedgan.synth.dp`)."""
    return (f"differential privacy (item-profile model): epsilon {budget['epsilon_spent']:.3f} spent of "
            f"{budget['epsilon_target']:g} at delta {budget['delta']:.3g} (noise multiplier "
            f"{budget['noise_multiplier']:.3f}, {budget['steps']} steps, {budget['accountant']} accountant)")


@synth_app.command("sample")
def sample_cmd(
    run: str = typer.Argument(..., help="a `synth fit` run folder or number"),
    n: int = typer.Option(10_000, "-n", "--users", min=1, help="synthetic users to draw"),
    out: Path = typer.Option(..., "--out", "-o", help=".parquet, .csv, .tsv or .jsonl"),
    social_out: Optional[Path] = typer.Option(None, help="where the friend graph (src,dst) goes, when the "
                                                         "generator makes one (default: OUT with .friends.csv)"),
    seed: int = typer.Option(0, help="sampling seed"),
    runs_dir: Path = typer.Option(Path("runs")),
):
    """Draw synthetic users from a fitted generator and write them in the readers' schema."""
    from ..data.readers import write_table
    from ..io import atomic_open

    if out.suffix.lower() not in (".parquet", ".pq", ".csv", ".tsv", ".jsonl", ".ndjson"):
        raise DataError(f"cannot write a {out.suffix or 'suffix-less'} file", file=out,
                        fix="use a .parquet, .csv, .tsv or .jsonl path")
    folder, gen, _, _ = load_run(run, runs_dir)
    t0 = time.perf_counter()
    synth = gen.sample(n, seed=seed)
    inter = synth.to_interactions(source=str(folder))
    write_table(inter, out)
    msg = f"wrote {synth.n_users:,} users, {len(inter):,} interactions to {out}"
    if inter.social is not None:
        social_out = social_out or out.with_name(out.stem + ".friends.csv")
        with atomic_open(social_out) as fh:
            inter.social[["src", "dst"]].to_csv(fh, index=False)
        msg += f", {len(inter.social):,} friend pairs to {social_out}"
    console.print(f"{msg} in {time.perf_counter() - t0:.1f}s")


@synth_app.command("report")
def report_cmd(
    run: str = typer.Argument(..., help="a `synth fit` run folder or number"),
    real: Optional[Path] = typer.Option(None, "--real", help="the real log the run was fitted on (default: the "
                                                            "path in the run's config)"),
    n: Optional[int] = typer.Option(None, "-n", "--users", min=1, help="synthetic users to score (default: as "
                                                                       "many as the train users)"),
    utility: bool = typer.Option(True, "--utility/--no-utility", help="train on synthetic, test on real (five "
                                                                      "recommenders; the slowest part)"),
    shadow: bool = typer.Option(False, "--shadow/--no-shadow", help="also the shadow-model membership attack "
                                                                    "(refits the generator on half the train users)"),
    seed: int = typer.Option(0, help="sampling and scoring seed"),
    runs_dir: Path = typer.Option(Path("runs")),
):
    """Score a fitted generator's users against the real ones: fidelity, a two-sample test, privacy and
    utility; writes report.json and report.html into the run folder."""
    from ..io import write_json
    from .report import assess, write_html
    from .utility import tstr

    folder, gen, config, split = load_run(run, runs_dir)
    d = config["data"]
    profiles = real_profiles(real or d["path"], d["format"], d["columns"], d["sep"], d["no_header"], d["social"])
    parts = split_parts(profiles, split)
    train, holdout, test = parts["train"], parts["holdout"], parts["test"]
    synth = gen.sample(n or train.n_users, seed=seed)
    console.print(f"[bold]synth report[/] {folder}: {synth.n_users:,} synthetic users against {holdout.n_users:,} "
                  f"holdout and {train.n_users:,} train users")

    def fit_sample(p):
        return type(gen)(**gen.get_params()).fit(p, seed=seed + 1).sample(p.n_users, seed=seed + 2)

    result = assess(train, holdout, synth, test=test, seed=seed,
                    utility=(lambda tr, sy, te: tstr(tr, sy, te, seed=seed)) if utility else None,
                    fit_sample=fit_sample if shadow else None, log=lambda line: console.print(line, markup=False))
    if gen.dp_ is not None:  # the budget the generator's training spent, beside the attacks
        result["privacy"]["dp"] = gen.dp_
        console.print(dp_line(gen.dp_), markup=False)
    write_json(folder / "report.json", result)
    write_html(folder / "report.html", result, train, holdout, synth, f"synthetic users: {folder.name}")
    for name, g in result["goals"].items():
        met = {True: "met", False: "not met", None: "not measured"}[g["met"]]
        value = "-" if g["value"] is None else f"{g['value']:.3f}"
        console.print(f"{name.replace('_', ' ')}: {value} (goal {g['goal']}): {met}", markup=False)
    console.print(f"wrote {folder / 'report.json'} and {folder / 'report.html'}")
