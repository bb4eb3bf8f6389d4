"""The one contract every recommender in feedgan follows.

scikit-learn surface: the constructor stores hyperparameters only; ``fit`` returns ``self``;
learned state ends in ``_``. Users and items are *internal indices* of the dataset the model was
fitted on (``model.user_ids_`` / ``model.item_ids_`` map raw ids to them).

    model = EASE(l2=500).fit(dataset)                         # Dataset or CSR (n_users, n_items)
    s = model.score([0, 1])                                    # (2, n_items) float32
    items, scores = model.recommend([0, 1], n=10)              # (2, 10) each; seen items excluded
    items, _ = model.recommend(None, n=10, history=new_rows)   # fold in unseen users (fold_in=True)
    model.save("runs/m"); same = Recommender.load("runs/m")    # data only: JSON + safetensors

Models with ``fold_in = True`` score any user from a history row alone (item-based models,
autoencoders); the others (user-embedding models) only score users seen at fit time.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.numpy import load_file, save_file

from ..data.dataset import Dataset, IdMap
from ..io import atomic_path, write_json

_REGISTRY: dict[str, type["Recommender"]] = {}


class NotFittedError(RuntimeError):
    pass


def as_csr(X, n_items: int | None = None) -> sp.csr_matrix:
    """Binary float32 CSR from a Dataset (its train part), a sparse matrix or a dense array."""
    if isinstance(X, Dataset):
        X = X.matrix("train")
    X = sp.csr_matrix(X, dtype=np.float32)
    if n_items is not None and X.shape[1] != n_items:
        raise ValueError(f"history has {X.shape[1]} item columns, the model was fitted on {n_items}")
    X = X.copy()
    X.data[:] = 1.0
    X.eliminate_zeros()
    return X


class Recommender:
    """Base class. Subclasses implement ``_fit(X)`` and ``_score(users, history)``."""

    name: ClassVar[str] = "recommender"
    fold_in: ClassVar[bool] = True
    # models that pick their own training length on validation (early stopping) get the dataset's
    # valid part as ``_fit(X, valid=...)`` when fitted on train alone
    uses_validation: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _REGISTRY[cls.name] = cls

    # -- hyperparameters --------------------------------------------------------------------------
    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def set_params(self, **params) -> "Recommender":
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"{self.name} has no hyperparameter {k!r}; it has {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, data, *, parts: tuple[str, ...] = ("train",), progress=None) -> "Recommender":
        """Fit on a :class:`Dataset` (the union of ``parts``, default its train part) or an
        interaction matrix (n_users, n_items)."""
        if isinstance(data, Dataset) and tuple(parts) != ("train",):
            X = as_csr(sum(data.matrix(p) for p in parts if p in data.parts))
        else:
            X = as_csr(data)
        if X.nnz == 0:
            raise ValueError(f"{self.name}: cannot fit on an empty interaction matrix")
        if isinstance(data, Dataset):
            self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        else:
            self.user_ids_ = IdMap(np.arange(X.shape[0]), "user")
            self.item_ids_ = IdMap(np.arange(X.shape[1]), "item")
        self.n_users_, self.n_items_ = X.shape
        self.train_ = X
        if self.uses_validation:
            fit_on_train = isinstance(data, Dataset) and tuple(parts) == ("train",) and "valid" in data.parts
            self._fit(X, progress=progress, valid=data.matrix("valid") if fit_on_train else None)
        else:
            self._fit(X, progress=progress)
        return self

    def _fit(self, X: sp.csr_matrix, progress=None) -> None:
        raise NotImplementedError

    def selected_params(self) -> dict:
        """Hyperparameters the fit itself chose on validation (e.g. the epoch count of an
        early-stopped model), to reuse when refitting on train + valid: ``{"epochs": best_epoch_}``
        when the fit chose one (see :mod:`feedgan.rec.selection`), else nothing."""
        best = getattr(self, "best_epoch_", None)
        return {"epochs": int(best)} if best is not None else {}

    def _check_fitted(self) -> None:
        if not hasattr(self, "train_"):
            raise NotFittedError(f"{self.name} is not fitted; call fit(dataset) first")

    # -- scoring ----------------------------------------------------------------------------------
    def _resolve(self, users, history) -> tuple[np.ndarray | None, sp.csr_matrix]:
        self._check_fitted()
        if history is not None:
            history = as_csr(history, self.n_items_)
        if users is None:
            if history is None:
                raise ValueError("give users, a history, or both")
            if not self.fold_in:
                raise ValueError(f"{self.name} cannot fold in unseen users; it only scores users seen at fit")
            return None, history
        users = np.atleast_1d(np.asarray(users))
        if users.dtype.kind not in "iu":
            raise TypeError(f"users must be integer indices, got {users.dtype}; map raw ids with user_ids_.index")
        bad = (users < 0) | (users >= self.n_users_)
        if bad.any():
            raise KeyError(f"user index {int(users[bad][0])} does not exist (the model knows {self.n_users_} users)")
        if history is None:
            history = self.train_[users]
        elif history.shape[0] != len(users):
            raise ValueError(f"history has {history.shape[0]} rows for {len(users)} users")
        return users, history

    def score(self, users=None, history=None) -> np.ndarray:
        """Scores (B, n_items) for users (internal indices) and/or their histories (B, n_items)."""
        users, history = self._resolve(users, history)
        return np.asarray(self._score(users, history), dtype=np.float32)

    def _score(self, users: np.ndarray | None, history: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, users=None, n: int = 10, exclude_seen: bool = True,
                  history=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores, each (B, n), best first.

        With ``exclude_seen`` the items in the history get no slot; when fewer than ``n`` items
        remain, the tail of a row holds -1 with score -inf.
        """
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        users, history = self._resolve(users, history)
        scores = torch.from_numpy(np.asarray(self._score(users, history), dtype=np.float32))
        if exclude_seen:
            rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
            scores[torch.from_numpy(rows), torch.from_numpy(history.indices.astype(np.int64))] = -torch.inf
        return top_n(scores, n)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save. Default: every ndarray attribute ending in ``_``."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and isinstance(v, np.ndarray)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def save(self, path: str | Path) -> Path:
        """Save as data: ``model.json`` (class, hyperparameters) + ``model.safetensors`` (arrays,
        training matrix, id maps). Written atomically; no pickle anywhere."""
        self._check_fitted()
        path = Path(path)
        arrays = {f"state.{k}": np.ascontiguousarray(v) for k, v in self._state().items()}
        arrays.update({"train.indptr": self.train_.indptr.astype(np.int64),
                       "train.indices": self.train_.indices.astype(np.int64)})
        meta = {"model": self.name, "params": self.get_params(), "shape": [self.n_users_, self.n_items_]}
        for key, ids in (("user_ids", self.user_ids_), ("item_ids", self.item_ids_)):
            arr = ids.to_array()
            if arr.dtype.kind in "iu":
                arrays[key] = arr.astype(np.int64)
            else:
                meta[key] = arr.tolist()  # string ids go in the JSON
        with atomic_path(path / "model.safetensors") as tmp:
            save_file(arrays, str(tmp))
        write_json(path / "model.json", meta)
        return path

    @staticmethod
    def load(path: str | Path) -> "Recommender":
        path = Path(path)
        try:
            meta = json.loads((path / "model.json").read_text())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path}: no model.json here; point at a folder written by model.save") from e
        import feedgan.rec  # noqa: F401  (defines every model class, filling the registry)

        cls = _REGISTRY.get(meta["model"])
        if cls is None:
            raise ValueError(f"{path}: unknown model {meta['model']!r}; known: {sorted(_REGISTRY)}")
        arrays = load_file(str(path / "model.safetensors"))
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
        params = {k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v
                  for k, v in meta["params"].items()}  # JSON has no tuples
        model = cls(**params)
        model.n_users_, model.n_items_ = meta["shape"]
        indptr, indices = arrays["train.indptr"], arrays["train.indices"]
        model.train_ = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=meta["shape"])
        model.user_ids_ = IdMap(arrays["user_ids"] if "user_ids" in arrays else np.array(meta["user_ids"]), "user")
        model.item_ids_ = IdMap(arrays["item_ids"] if "item_ids" in arrays else np.array(meta["item_ids"]), "item")
        model._set_state({k[6:]: v for k, v in arrays.items() if k.startswith("state.")})
        return model


def top_n(scores: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a (B, n_items) score tensor; -inf entries become item -1."""
    n_eff = min(n, scores.shape[1])
    val, idx = torch.topk(scores, n_eff, dim=1)
    idx[torch.isneginf(val)] = -1
    if n_eff < n:
        pad = n - n_eff
        idx = torch.cat([idx, torch.full((idx.shape[0], pad), -1, dtype=idx.dtype)], 1)
        val = torch.cat([val, torch.full((val.shape[0], pad), -torch.inf)], 1)
    return idx.numpy(), val.numpy()


def registry() -> dict[str, type[Recommender]]:
    """Model name -> class, for every recommender defined so far."""
    return dict(_REGISTRY)
