"""feedgan's iALS beside implicit's AlternatingLeastSquares on ML-1M: fit time and NDCG@20, one process.

    PYTHONPATH=src python benchmarks/ials_compare.py               # -> runs/ials-compare.json
    PYTHONPATH=src python benchmarks/ials_compare.py --publish     # -> docs/benchmarks/ials-compare.json

Both fit the LightGCN++ split's train part at one thread, 16 epochs, 128 factors, in rounds
(each feedgan solver in this tree and, with ``--old COMMIT``, the same solver as of that commit, in
alternating order; then implicit) repeated ``--pairs`` times so a busy machine slows all alike;
fit time is the median per library and every ratio (this tree / old, this tree / implicit) is taken
round by round (median and range). The old implementation is read with ``git show COMMIT:...``
into runs/ and imported from there, not from the package. Each side's setting:
feedgan's ``reg`` / ``unobserved`` and implicit's ``regularization`` / ``alpha``, both given on the
command line (defaults: feedgan's chosen on validation by a small search, implicit's the tuned
setting quoted for this split: regularisation 100, alpha 10). Both models are scored by feedgan's
evaluation (the same full ranking, seen items excluded) on valid and test. implicit is optional:
without it only feedgan's row is written.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import statistics
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):   # one thread, set before numpy loads
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from feedgan.data.dataset import DataConfig, prepare  # noqa: E402
from feedgan.data.readers import read  # noqa: E402
from feedgan.eval.metrics import evaluate  # noqa: E402
from feedgan.io import write_json  # noqa: E402
from feedgan.rec.base import Recommender  # noqa: E402
from feedgan.rec.ials import IALS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data")) / "movielens-1m" / "lightgcnpp-implicit-split"


class Factors(Recommender):
    """Fixed user and item factors (from another library) behind feedgan's scoring and evaluation."""

    name = "external-factors"
    fold_in = False

    def __init__(self, users: np.ndarray | None = None, items: np.ndarray | None = None):
        self.users, self.items = users, items

    def _fit(self, X, progress=None):
        self.U_, self.V_ = np.asarray(self.users, np.float32), np.asarray(self.items, np.float32)

    def _score(self, users, history):
        return self.U_[users] @ self.V_.T


def old_ials(commit: str):
    """``IALS`` as of ``commit``, read by git into runs/ (its package-relative import made absolute)."""
    path = ROOT / "runs" / f"ials_{commit}.py"
    if not path.exists():
        text = subprocess.run(["git", "show", f"{commit}:src/feedgan/rec/ials.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("from .base import", "from feedgan.rec.base import"))
    spec = importlib.util.spec_from_file_location(f"ials_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.IALS


def spread(values) -> dict:
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fit_implicit(X, factors: int, reg: float, alpha: float, epochs: int, seed: int):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=epochs,
                                    num_threads=1, random_state=seed, calculate_training_loss=False)
    t0 = time.perf_counter()
    model.fit(X, show_progress=False)
    return model, time.perf_counter() - t0


def scores(model, ds) -> dict:
    out = {}
    for part in ("valid", "test"):
        r = evaluate(model, ds, part, ks=(20,))
        out[part] = {k: float(r[k]) for k in ("ndcg@20", "recall@20")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--factors", type=int, default=128)
    ap.add_argument("--reg", type=float, default=0.01, help="feedgan iALS reg")
    ap.add_argument("--unobserved", type=float, default=0.1, help="feedgan iALS unobserved weight")
    ap.add_argument("--solvers", default="cg,exact", help="feedgan iALS solvers to time (comma-separated)")
    ap.add_argument("--old", default="f861720", help="commit whose iALS is timed beside this tree's ('' for none)")
    ap.add_argument("--implicit-reg", type=float, default=100.0)
    ap.add_argument("--implicit-alpha", type=float, default=10.0)
    ap.add_argument("--publish", action="store_true")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skip: {DATA} not found (set FEEDGAN_DATA)")
        return
    torch.set_num_threads(1)
    ds = prepare(read(DATA, "lightgcn"), DataConfig(split="predefined", valid=0.1, test=0.2, seed=0))
    X = ds.matrix("train")
    try:
        import implicit  # noqa: F401
        have_implicit = True
    except ImportError:
        have_implicit = False
    solvers = args.solvers.split(",")
    versions = {"": IALS, **({f" ({args.old})": old_ials(args.old)} if args.old else {})}
    ours = [f"feedgan-{s}{v}" for s in solvers for v in versions]
    times = {lib: [] for lib in ours + ["implicit"]}
    last, factor_gap = {}, {}
    for i in range(args.pairs):           # one round: every feedgan solver, new and old alternating first, then implicit
        for solver in solvers:
            for v in (list(versions) if i % 2 == 0 else list(versions)[::-1]):
                lib = f"feedgan-{solver}{v}"
                t0 = time.perf_counter()
                last[lib] = versions[v](factors=args.factors, reg=args.reg, unobserved=args.unobserved,
                                        epochs=args.epochs, solver=solver, seed=i).fit(ds)
                times[lib].append(time.perf_counter() - t0)
            if args.old:                  # same seed, same data: how far apart the two fitted item factors are
                new, old = last[f"feedgan-{solver}"], last[f"feedgan-{solver} ({args.old})"]
                factor_gap[solver] = float(np.abs(new.item_factors_ - old.item_factors_).max())
        if have_implicit:
            model, secs = fit_implicit(X, args.factors, args.implicit_reg, args.implicit_alpha, args.epochs, i)
            times["implicit"].append(secs)
            last["implicit"] = Factors(model.user_factors, model.item_factors).fit(ds)
        print(f"round {i}: " + ", ".join(f"{lib} {t[-1]:.1f}s" for lib, t in times.items() if t), flush=True)
    rows = []
    for lib, model in last.items():
        rows.append({"library": lib, "fit_s": statistics.median(times[lib]), "fit_s_all": times[lib],
                     **scores(model, ds)})
        print(lib, rows[-1], flush=True)
    out = {"data": "ml1m (LightGCN++ split)", "threads": 1, "epochs": args.epochs, "factors": args.factors,
           "feedgan": {"reg": args.reg, "unobserved": args.unobserved},
           "implicit": {"regularization": args.implicit_reg, "alpha": args.implicit_alpha} if have_implicit else None,
           "rows": rows, "command": "PYTHONPATH=src python benchmarks/ials_compare.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "publish")}
    if have_implicit:
        out["fit_ratio_over_implicit"] = {lib: spread(f / m for f, m in zip(times[lib], times["implicit"]))
                                          for lib in ours}
    if args.old:
        out["fit_ratio_new_over_old"] = {
            s: spread(n / o for n, o in zip(times[f"feedgan-{s}"], times[f"feedgan-{s} ({args.old})"])) for s in solvers}
        out["max_item_factor_gap_new_vs_old"] = factor_gap
    for key in ("fit_ratio_over_implicit", "fit_ratio_new_over_old", "max_item_factor_gap_new_vs_old"):
        if key in out:
            print(key, out[key], flush=True)
    path = ROOT / ("docs/benchmarks" if args.publish else "runs") / "ials-compare.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, out)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
