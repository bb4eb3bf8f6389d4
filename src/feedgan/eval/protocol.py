"""The evaluation protocol: choose on validation, refit, touch test once, repeat over seeds.

1. **Tune** every model on the validation part: each hyperparameter setting (a grid, or a random
   sample of it under ``max_trials`` / ``budget_s``) is fitted on train and scored on valid.
2. **Refit** the chosen setting on train + valid.
3. **Test once** on the test part, with train + valid as the history to exclude.
4. Repeat 2-3 for each seed (the model's own seed; a re-split per seed when the split is random)
   and report mean and standard deviation.

The test part is never looked at before step 3, so no choice is made on it.
"""
from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from ..data.dataset import Dataset
from ..rec.base import Recommender
from .metrics import evaluate


@dataclass
class ModelSpec:
    """A model class with the grid to search and fixed hyperparameters; ``label`` names a variant
    (an ablation such as ``cfgan-ae``) when the class's own name is taken."""

    cls: type[Recommender]
    grid: dict[str, list] = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    label: str | None = None
    # auxiliary actions for a dataset split on a target action: names or name -> weight. The grid
    # (or fixed) may also hold "aux": a list of such mappings, tuned on validation like the rest.
    aux: dict | tuple = ()

    @property
    def name(self) -> str:
        return self.label or self.cls.name

    def settings(self, max_trials: int | None, rng: np.random.Generator) -> list[dict]:
        keys = list(self.grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))]
        if max_trials is not None and len(combos) > max_trials:
            pick = rng.choice(len(combos), size=max_trials, replace=False)
            combos = [combos[i] for i in sorted(pick)]
        return [{**self.fixed, **c} for c in combos]

    def fit_kwargs(self, params: dict) -> dict:
        """Arguments for ``fit`` beyond the data: the auxiliary actions of this setting."""
        aux = params.get("aux", self.aux)
        return {"aux": aux} if aux else {}

    def build(self, params: dict, seed: int | None = None) -> Recommender:
        params = {k: v for k, v in params.items() if k != "aux"}
        known = set(inspect.signature(self.cls.__init__).parameters) - {"self"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"{self.name} has no hyperparameter(s) {unknown}; it has {sorted(known)}")
        model = self.cls(**params)
        if seed is not None and "seed" in model.get_params():
            model.set_params(seed=seed)
        return model


def _fit_parts(dataset: Dataset) -> tuple[str, ...]:
    return tuple(p for p in ("train", "valid", "valid_input") if p in dataset.parts)


def tune(spec: ModelSpec, dataset: Dataset, *, metric: str = "ndcg@20", ks=(5, 10, 20),
         max_trials: int | None = None, budget_s: float | None = None, seed: int = 0,
         mask: str = "target", progress=None) -> tuple[dict, list[dict]]:
    """Pick hyperparameters on the validation part. Returns (best params, every trial).

    On a dataset split on a target action, that action is predicted and ``mask`` (see
    :func:`feedgan.eval.metrics.evaluate`) applies to selection too."""
    if dataset.matrix("valid").nnz == 0:
        raise ValueError("the dataset has no validation interactions to tune on; split with valid > 0")
    settings = spec.settings(max_trials, np.random.default_rng(seed))
    task = progress.add_task(f"tune {spec.name}", total=len(settings)) if progress is not None else None
    trials, start = [], time.perf_counter()
    for params in settings:
        t0 = time.perf_counter()
        model = spec.build(params, seed).fit(dataset, **spec.fit_kwargs(params))
        fit_s = time.perf_counter() - t0
        scores = evaluate(model, dataset, "valid", ks, mask=mask)
        # settings the fit chose on validation itself (an early-stopped epoch count) are kept
        trials.append({"params": {**params, **model.selected_params()}, "valid": scores, "fit_s": fit_s})
        del model  # before the next fit: two EASE models on 41k items do not fit in 24 GB with a third Gram
        if task is not None:  # settings tried so far, and the best validation score among them
            progress.update(task, **{f"best valid {metric}": max(t["valid"][metric] for t in trials)})
            progress.advance(task)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            if task is not None and len(trials) < len(settings):  # a last line that says where it stopped
                progress.update(task, total=len(trials), completed=len(trials),
                                description=f"tune {spec.name} ({len(trials)} of {len(settings)}: time budget)")
            break
    best = max(trials, key=lambda t: t["valid"][metric])
    return best["params"], trials


def refit_and_test(spec: ModelSpec, params: dict, dataset: Dataset, *, ks=(5, 10, 20), seed: int = 0,
                   masks: tuple[str, ...] = ("target",), progress=None) -> dict:
    """Refit on train + valid with ``params`` and score the test part (the only look at it).

    With several ``masks`` (a target-action dataset), the first gives ``test`` and each other
    ``test_<mask>``."""
    t0 = time.perf_counter()
    model = spec.build(params, seed).fit(dataset, parts=_fit_parts(dataset), **spec.fit_kwargs(params))
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    scores = evaluate(model, dataset, "test", ks, mask=masks[0], progress=progress, label=spec.name)
    out = {"test": scores, "fit_s": fit_s, "eval_s": time.perf_counter() - t1, "model": model}
    if dataset.target_action is not None:
        for m in masks[1:]:
            out[f"test_{m}"] = evaluate(model, dataset, "test", ks, mask=m)
    return out


def summarise(runs: list[dict], key: str = "test") -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof=1 when there are several seeds) of every test metric."""
    keys = runs[0][key].keys()
    out = {}
    for k in keys:
        vals = np.array([r[key][k] for r in runs], dtype=np.float64)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    for k in ("fit_s", "eval_s"):
        vals = np.array([r[k] for r in runs])
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
