"""``feedgan moderate``: score every account of a log and write a review queue.

    feedgan moderate scan ratings.csv --detector anomaly                 # -> runs/00001-moderate/
    feedgan moderate scan ml-100k/ --format movielens --detector pca-varselect --out review/ --top 50
    feedgan moderate scan log.csv --detector anomaly --inject random --size 0.05   # self-check
    feedgan moderate avatars --real faces.tar --fake generated/ --heldout other-gan/ --score uploads/

A scan writes three files into its folder:

* ``queue.csv``: one row per user, highest score first: ``user, score, rank`` and ``reason_1..3``,
  the profile features (:func:`~feedgan.moderation.detect.profile_features`) farthest from the
  users' mean, as ``name=value (z=...)``; with ``--inject`` also ``injected`` (1 = a planted fake).
* ``report.html``: the score distribution, the top-N table and a summary of the features.
* ``scan.json``: the detector, the number of users, the seconds taken, the options and, with
  ``--inject``, the attack and :func:`~feedgan.moderation.detect.detection_metrics`.

``moderate avatars`` trains a detector of generated pictures (:mod:`feedgan.moderation.avatars`) on a
split of ``--real`` and ``--fake``, sets its threshold on the validation real images (1% flagged) and
writes ``report.json`` (held-out metrics per generator and per JPEG / resize condition),
``detector.safetensors`` and, with ``--score``, ``scores.csv`` (every picture there, highest score first).

The scan detectors are unsupervised: no labels and no attack size are needed. ``--inject`` first adds a
labelled attack (:func:`~feedgan.moderation.attacks.inject`) so a team can see how well the
detector finds accounts it knows to be fake, on its own data.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..cli_options import COLUMNS, FORMAT, NO_HEADER, SEP, SOCIAL, _columns
from ..data.schema import DataError
from ..progress import console

DETECTORS = ("pca-varselect", "anomaly")
N_REASONS = 3
SHOW_TOP = 5          # users printed to the terminal

moderate_app = typer.Typer(no_args_is_help=True, help="Moderation: score accounts by how machine-made they look, "
                                                      "write a review queue.")


def _read(data: Path, format: str, columns: Optional[str], sep: Optional[str], no_header: bool,
          social: Optional[Path]):
    from ..data.readers import read

    return read(data, format, columns=_columns(columns), sep=sep, header=not no_header, social=social)


def _scores(detector: str, inter, features, seed: int):
    """(n_users,) Series of suspicion scores, index aligned with ``features``."""
    from .detect import anomaly_scores, pca_varselect

    if detector == "anomaly":
        return anomaly_scores(features, seed=seed)
    return pca_varselect(inter).reindex(features.index)


def zscores(features):
    """Each feature z-scored over the users; a feature without spread is 0 for everyone."""
    std = features.std(ddof=0)
    return ((features - features.mean()) / std.where(std > 0)).fillna(0.0)


def reasons(features, k: int = N_REASONS) -> list[list[str]]:
    """Per user, the ``k`` features with the largest |z-score|, as ``"name=value (z=+2.31)"``."""
    import numpy as np

    z = zscores(features)
    Z, X, names = z.to_numpy(), features.to_numpy(), features.columns
    order = np.argsort(-np.abs(Z), axis=1, kind="stable")[:, :k]        # (n_users, k) column indices
    return [[f"{names[j]}={X[u, j]:.4g} (z={Z[u, j]:+.2f})" for j in row] for u, row in enumerate(order)]


def review_queue(scores, features, labels=None):
    """The queue as a DataFrame: highest score first, ``rank`` 1..n, reasons, ``injected`` if labelled."""
    import pandas as pd

    why = reasons(features)
    queue = pd.DataFrame({"user": features.index.to_numpy(), "score": scores.to_numpy()})
    for j in range(min(N_REASONS, features.shape[1])):
        queue[f"reason_{j + 1}"] = [r[j] for r in why]
    if labels is not None:
        queue["injected"] = labels.reindex(features.index).to_numpy()
    queue = queue.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    queue.insert(2, "rank", range(1, len(queue) + 1))
    return queue


def _histogram(queue):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    if "injected" in queue:
        for flag, name in ((0, "real"), (1, "injected")):
            ax.hist(queue.loc[queue["injected"] == flag, "score"], bins=40, alpha=0.6, label=name)
        ax.legend(fontsize=8)
    else:
        ax.hist(queue["score"], bins=40, color="tab:blue")
    ax.set_xlabel("score (higher = more suspect)")
    ax.set_ylabel("users")
    ax.set_title("Score distribution")
    return fig


def _feature_summary(features, top_users) -> list[dict]:
    """Per feature: mean, std, min, median, max over all users and the mean over the top-N."""
    rows = []
    for name in features.columns:
        col = features[name]
        rows.append({"feature": name, **{s: f"{getattr(col, s)():.4g}" for s in ("mean", "std", "min", "median",
                                                                                  "max")},
                     "top-N mean": f"{col.loc[top_users].mean():.4g}"})
    return rows


def write_scan(folder: Path, queue, features, summary: dict, top: int) -> None:
    """queue.csv, report.html and scan.json in ``folder``, each written atomically."""
    from ..eval.report import figure_html, table_html, write_report
    from ..io import atomic_open, write_json

    with atomic_open(folder / "queue.csv") as fh:
        queue.to_csv(fh, index=False)
    head = queue.head(top)
    shown = [{c: (f"{v:.4g}" if c == "score" else v) for c, v in r.items()} for r in head.to_dict("records")]
    sections = [("Score distribution", figure_html(_histogram(queue), "histogram of the users' scores")),
                (f"Top {len(head)} users", table_html(shown, list(queue.columns))),
                ("Profile features", table_html(_feature_summary(features, head["user"].to_numpy()),
                                                ["feature", "mean", "std", "min", "median", "max", "top-N mean"]))]
    if "metrics" in summary:
        sections.append(("Detection of the injected attack",
                         table_html([{k: f"{v:.4g}" if isinstance(v, float) else v
                                      for k, v in summary["metrics"].items()}], list(summary["metrics"]))))
    write_report(folder / "report.html", f"Moderation scan: {summary['detector']}", sections)
    write_json(folder / "scan.json", summary)


def _out_folder(out: Optional[Path], runs_dir: Path) -> Path:
    from ..runs import new_run_dir

    if out is None:
        return new_run_dir(runs_dir, "moderate")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, and the scan writes a folder", fix="pass a folder path")
    out.mkdir(parents=True, exist_ok=True)
    return out


@moderate_app.command("scan")
def scan_cmd(
    data: Path = typer.Argument(..., help="log file or folder"),
    detector: str = typer.Option(..., "--detector", "-d", help="pca-varselect or anomaly (both unsupervised)"),
    format: str = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    no_header: bool = NO_HEADER,
    social: Optional[Path] = SOCIAL,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for the files (default: a new run folder)"),
    top: int = typer.Option(20, "--top", min=1, help="users in the report's table"),
    inject: Optional[str] = typer.Option(None, "--inject", help="first plant a labelled attack: random, average, "
                                                                "bandwagon or segment (a self-check)"),
    size: float = typer.Option(0.05, "--size", help="with --inject: fake users as a share of the real users"),
    filler: float = typer.Option(0.03, "--filler", help="with --inject: filler items as a share of the items"),
    seed: int = typer.Option(0, help="seed of the anomaly detector and of the injected attack"),
    runs_dir: Path = typer.Option(Path("runs")),
):
    """Score every user with an unsupervised detector and write the review queue, report and summary."""
    from .detect import detection_metrics, profile_features

    if detector not in DETECTORS:
        raise DataError(f"unknown --detector {detector!r}", fix=f"use one of {', '.join(DETECTORS)}")
    t0 = time.perf_counter()
    inter = _read(data, format, columns, sep, no_header, social)
    console.print(f"read {data}: {len(inter.frame):,} rows")
    labels, attack = None, None
    if inject is not None:
        from .attacks import inject as plant

        planted = plant(inter, inject, size=size, filler=filler, seed=seed)
        inter, labels = planted.interactions, planted.labels
        attack = {"kind": inject, "size": size, "filler": filler, "seed": seed,
                  "fake_users": int(labels.sum()), "targets": planted.targets.tolist()}
        console.print(f"injected {attack['fake_users']:,} {inject} fake users")
    features = profile_features(inter)
    console.print(f"features: {features.shape[1]} per user for {len(features):,} users")
    scores = _scores(detector, inter, features, seed)
    console.print(f"scored with {detector}")
    queue = review_queue(scores, features, labels)
    summary = {"detector": detector, "users": len(queue), "seconds": None,
               "options": {"data": str(data), "format": format, "columns": columns, "sep": sep,
                           "no_header": no_header, "social": None if social is None else str(social),
                           "top": top, "seed": seed}}
    if labels is not None:
        summary["attack"] = attack
        summary["metrics"] = detection_metrics(scores, labels)
    folder = _out_folder(out, runs_dir)   # only now: a failed scan leaves no run folder
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    write_scan(folder, queue, features, summary, top)
    console.print(f"wrote queue.csv, report.html, scan.json to {folder} in {summary['seconds']:.1f}s")
    for r in queue.head(SHOW_TOP).itertuples(index=False):
        console.print(f"  #{r.rank} {r.user}  score {r.score:.4f}  {r.reason_1}", markup=False, highlight=False)
    if "metrics" in summary:
        m = summary["metrics"]
        console.print(f"detection of the injected {inject} attack: ROC-AUC {m['roc_auc']:.3f}, PR-AUC "
                      f"{m['pr_auc']:.3f}, TPR at 1% FPR {m['tpr_at_1pct_fpr']:.3f}, precision at the top "
                      f"{m['budget']} {m['precision_at_budget']:.3f}")



def _load_avatars(path: Path, size: int, skip_bad: bool, limit: Optional[int], progress, what: str,
                  minimum: int = 1):
    """The images of ``path`` through the avatar reader: the same decode and resize for every source."""
    from ..avatars.images import ImageDataError, load_images

    data = load_images(path, size=size, skip_bad=skip_bad, limit=limit, progress=progress)
    if len(data) < minimum:
        raise ImageDataError(f"{what} {path}: {len(data)} images, too few to split into training, validation "
                             f"and test parts; give at least {minimum}")
    console.print(f"read {what} {path}: {len(data):,} images at {size}x{size}")
    return data


def _write_scores(path: Path, names: list[str], scores, threshold: Optional[float]) -> None:
    """scores.csv: ``image, score, rank, flagged`` (score above the threshold), highest score first."""
    import pandas as pd

    from ..io import atomic_open

    table = pd.DataFrame({"image": names, "score": scores})
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table["rank"] = range(1, len(table) + 1)
    if threshold is not None:
        table["flagged"] = (table["score"] > threshold).astype(int)
    with atomic_open(path) as fh:
        table.to_csv(fh, index=False)


@moderate_app.command("avatars")
def avatars_cmd(
    real: Path = typer.Option(..., "--real", help="real pictures: a folder, .tar/.zip or .npz"),
    fake: Path = typer.Option(..., "--fake", help="generated pictures to train on (e.g. `feedgan avatars sample "
                                                  "--each`): a folder, .tar/.zip or .npz"),
    heldout: list[Path] = typer.Option([], "--heldout", help="generated pictures of another generator, only "
                                       "tested on (repeat for more); named by their folder"),
    detector: str = typer.Option("cnn", "--detector", "-d", help="cnn (a small discriminator) or spectrum "
                                 "(logistic regression on the Fourier spectrum)"),
    size: int = typer.Option(64, "--size", help="side in pixels every picture is read at"),
    epochs: int = typer.Option(8, "--epochs", help="training epochs of the cnn detector"),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="cnn: train on JPEG re-encoded and "
                                 "resized copies too"),
    score: Optional[Path] = typer.Option(None, "--score", help="also score every picture here into scores.csv"),
    limit: Optional[int] = typer.Option(None, "--limit", help="read at most this many pictures of each source"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip pictures that cannot be decoded"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for the files (default: a new run folder)"),
    seed: int = typer.Option(0, help="seed of the split and of the cnn's training"),
    runs_dir: Path = typer.Option(Path("runs")),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
):
    """Train a detector of generated avatars on a split of --real and --fake; report held-out metrics
    per generator and per JPEG quality / resize, at a threshold set on validation real pictures."""
    from ..io import write_json
    from ..progress import progress_bar
    from .avatars import MIN_IMAGES, AvatarDetector, avatar_metrics, evaluate, split

    t0 = time.perf_counter()
    det = AvatarDetector(detector, seed=seed, epochs=epochs, augment=augment)  # checks the options first
    names = [fake.stem] + [p.stem for p in heldout]
    if len(set(names)) < len(names):
        raise DataError(f"the generated sources are named by their folders and two are called "
                        f"{next(n for n in names if names.count(n) > 1)!r}", fix="rename one of the folders")
    with progress_bar(progress) as prog:
        reals = _load_avatars(real, size, skip_bad, limit, prog, "real", MIN_IMAGES)
        fakes = _load_avatars(fake, size, skip_bad, limit, prog, "generated", MIN_IMAGES)
        others = {p.stem: _load_avatars(p, size, skip_bad, limit, prog, "held-out").images for p in heldout}
        to_score = _load_avatars(score, size, skip_bad, None, prog, "to score") if score is not None else None
        r_tr, r_val, r_te = split(len(reals), seed)
        f_tr, f_val, f_te = split(len(fakes), seed + 1)
        det.fit(reals.images[r_tr], fakes.images[f_tr], progress=prog)
        det.calibrate(reals.images[r_val])
        tests = {fake.stem: fakes.images[f_te], **others}
        metrics = evaluate(det, reals.images[r_te], tests, progress=prog)
        validation = avatar_metrics(det.score(reals.images[r_val]), det.score(fakes.images[f_val]), det.threshold)
        scores = det.score(to_score.images) if to_score is not None else None
    folder = _out_folder(out, runs_dir)   # only now: a failed run leaves no folder
    det.save(folder / "detector.safetensors")
    if scores is not None:
        _write_scores(folder / "scores.csv", to_score.names, scores, det.threshold)
    report = {"detector": detector, "size": size, "seed": seed, "epochs": epochs, "augment": augment,
              "threshold": det.threshold, "threshold_from": f"{len(r_val)} validation real pictures, 1% flagged",
              "trained_on": {"real": len(r_tr), "generated": len(f_tr), "generator": fake.stem},
              "test": {"real": len(r_te), **{k: len(v) for k, v in tests.items()}},
              "sources": {"real": str(real), "fake": str(fake), "heldout": [str(p) for p in heldout]},
              "validation": validation, "metrics": metrics, "seconds": round(time.perf_counter() - t0, 3)}
    write_json(folder / "report.json", report)
    written = "report.json, detector.safetensors" + (", scores.csv" if scores is not None else "")
    console.print(f"wrote {written} to {folder} in {report['seconds']:.1f}s")
    for name, per in metrics.items():
        cells = ", ".join(f"{c} {m['tpr_at_threshold']:.2f}" for c, m in per.items())
        console.print(f"  {name}: ROC-AUC {per['clean']['roc_auc']:.3f}; TPR at the 1% FPR threshold: {cells}",
                      highlight=False)
