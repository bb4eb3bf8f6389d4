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

Target and auxiliary actions
----------------------------
``fit(dataset, target="share", aux={"view": 0.2, "like": 1.0})`` predicts one action from others::

    model = EASE(l2=200).fit(ds, target="buy", aux={"cart": 0.5, "view": 0.1})   # stacked EASE
    model = EASE(l2=200).fit(ds, target="like", aux={"friends": 0.3})             # friends' likes
    items, _ = model.recommend(users, n=10)            # excludes the user's *target* items only
    model.score(None, history={"buy": B_rows, "cart": C_rows, "view": V_rows})   # fold-in

The model's input matrix (``train_``) is the weighted sum ``target + sum_a w_a * aux_a`` of binary
per-action matrices (``aux`` as a list gives every weight 1). ``friends`` is a derived channel:
the row-normalised social graph times the target matrix (what the user's friends did). ``seen_``
is the binary target matrix: what ``recommend`` excludes by default (pass ``exclude=`` for a
stricter mask). Models that tell the channels apart set ``multi_channel = True`` and get the
target rows and each auxiliary action's rows beside the input: ``_score(users, inputs, seen,
channels)`` (``channels``: action -> (B, n_items), ``friends`` included). Without a target (a dataset split
on every pair, or a plain matrix) the input is the binary union of all actions, as before.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.numpy import save_file

from ..data.dataset import Dataset, IdMap
from ..data.schema import EXPOSURE, DataError
from ..io import ArtifactError, atomic_path, read_json, read_safetensors, write_json
from ..params import check_params
from ..sparse import checked_csr

_REGISTRY: dict[str, type["Recommender"]] = {}
FRIENDS = "friends"  # the derived channel: friends' target actions (social graph x target matrix)


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


@dataclass
class Validation:
    """What early stopping scores, every matrix (n_users, n_items) CSR.

    ``targets``: the valid part's target pairs. ``inputs``: the weighted rows the model reads for
    each user (the fitted ``train_`` rows, plus the fold-in rows of held-out users); ``seen``: the
    binary target history excluded from the lists; ``channels``: the auxiliary rows by action
    (multi-channel models). ``folded``: the validation users are held out of the fitted matrix
    (a by-user split), so only a model that folds users in can score them.
    """

    targets: sp.csr_matrix
    inputs: sp.csr_matrix
    seen: sp.csr_matrix
    channels: dict[str, sp.csr_matrix]
    folded: bool = False

    def users(self) -> np.ndarray:
        """The users with at least one validation target (sorted indices)."""
        return np.flatnonzero(self.targets.getnnz(1) > 0)


class Recommender:
    """Base class. Subclasses implement ``_fit(X)`` and ``_score(users, history)``."""

    name: ClassVar[str] = "recommender"
    fold_in: ClassVar[bool] = True
    # False where a ``seed`` hyperparameter cannot change the scores (it only starts a solver whose
    # answer is unique): the same data then gives the same numbers under every seed
    seed_matters: ClassVar[bool] = True
    # models that pick their own training length on validation (early stopping) get the dataset's
    # valid part as ``_fit(X, valid=...)`` when fitted on train alone
    uses_validation: ClassVar[bool] = False
    # models that read the target and aux rows apart from the weighted input:
    # _score(users, inputs, seen, channels)
    multi_channel: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "name" in cls.__dict__:  # shared helper bases that inherit a name are not models
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
    def fit(self, data, *, target: str | None = None, aux=None, parts: tuple[str, ...] = ("train",),
            progress=None) -> "Recommender":
        """Fit on a :class:`Dataset` (the union of ``parts``, default its train part) or an
        interaction matrix (n_users, n_items).

        ``target`` (default: the action the dataset's split held out, if any) is the action to
        predict; ``aux`` the auxiliary actions (names, or a mapping name -> weight; ``friends``
        for the social channel) summed into the input. See the module docstring."""
        target = target if target is not None else (data.target_action if isinstance(data, Dataset) else None)
        weights = _aux_weights(aux)
        if (target is not None or weights) and not isinstance(data, Dataset):
            raise ValueError(f"{self.name}: target= and aux= need a Dataset (per-action matrices), not a matrix")
        self.target_, self.aux_ = target, weights
        self.social_ = None
        if target is None:
            if isinstance(data, Dataset) and tuple(parts) != ("train",):
                X = as_csr(sum(data.matrix(p) for p in parts if p in data.parts))
            else:
                X = as_csr(data)
            seen = X
            for stale in ("seen_", "channels_"):  # a refit without a target
                self.__dict__.pop(stale, None)
        else:
            use = [p for p in parts if p in data.parts]
            for a in [target, *weights]:
                if a != FRIENDS and a not in data.actions:
                    raise ValueError(f"{self.name}: unknown action {a!r}; the data has {data.actions} "
                                     f"(and {FRIENDS!r} for the social graph)")
            if EXPOSURE in (target, *weights):
                raise ValueError(f"{self.name}: {EXPOSURE!r} marks what was shown, not an action to predict "
                                 f"or learn from; pass target= (one of {[a for a in data.actions if a != EXPOSURE]})")
            if target in weights:
                raise ValueError(f"{self.name}: the target {target!r} cannot also be an auxiliary action")
            seen = as_csr(sum(data.matrix(p, target) for p in use))
            channels = {a: as_csr(sum(data.matrix(p, a) for p in use)) for a in weights if a != FRIENDS}
            if FRIENDS in weights:
                if data.social is None or data.social.nnz == 0:
                    raise ValueError(f"{self.name}: aux {FRIENDS!r} needs a dataset with a social graph")
                self.social_ = _row_normalised(data.social)
            self.seen_, self.channels_ = seen, channels
            X = self._combine(seen, self._with_friends(channels, np.arange(seen.shape[0])))
        if seen.nnz == 0:
            raise ValueError(f"{self.name}: cannot fit on an empty interaction matrix")
        if isinstance(data, Dataset):
            self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        else:
            self.user_ids_ = IdMap(np.arange(X.shape[0]), "user")
            self.item_ids_ = IdMap(np.arange(X.shape[1]), "item")
        self.n_users_, self.n_items_ = X.shape
        self.train_ = X
        try:
            if self.uses_validation:
                fit_on_train = isinstance(data, Dataset) and tuple(parts) == ("train",) and "valid" in data.parts
                self._fit(X, progress=progress, valid=self._validation(data) if fit_on_train else None)
            else:
                self._fit(X, progress=progress)
        except BaseException:
            del self.train_  # a failed fit leaves the model unfitted: nothing half-trained is saved or served
            raise
        return self

    def _validation(self, data: Dataset) -> Validation | None:
        """The valid part's targets with the rows each user is scored from: the fitted rows, plus
        the fold-in history (``valid_input``) of users a by-user split held out. None when the
        valid part has no target pairs."""
        target = self.target_
        targets = data.matrix("valid") if target is None else as_csr(data.matrix("valid", target))
        if targets.nnz == 0:
            return None
        seen = self.seen
        channels = dict(getattr(self, "channels_", {})) if target is not None else {}
        fold = data.parts.get("valid_input")
        if fold is not None:  # held-out users have empty fitted rows: theirs are the fold-in rows
            seen = as_csr(seen + fold.matrix(target))
            channels = {a: as_csr(m + fold.matrix(a)) for a, m in channels.items()}
        if target is None:
            return Validation(targets, seen, seen, {}, folded=fold is not None)
        channels = self._with_friends(channels, np.arange(seen.shape[0]))
        return Validation(targets, self._combine(seen, channels), seen, channels, folded=fold is not None)

    @property
    def seen(self) -> sp.csr_matrix:
        """The binary target matrix of the fit (the union of all actions without a target)."""
        return self.__dict__["seen_"] if "seen_" in self.__dict__ else self.train_

    def _with_friends(self, channels: dict[str, sp.csr_matrix], users) -> dict[str, sp.csr_matrix]:
        """``channels`` plus the ``friends`` rows of known ``users`` (internal indices) when the
        model reads that channel and the caller did not give it."""
        if FRIENDS in self.aux_ and FRIENDS not in channels and self.social_ is not None and users is not None:
            # (B, n_items): the share of the user's friends who took the target on each item
            channels = {**channels, FRIENDS: (self.social_[users] @ self.seen).tocsr()}
        return channels

    def _combine(self, seen: sp.csr_matrix, channels: dict[str, sp.csr_matrix]) -> sp.csr_matrix:
        """Input rows ``seen + sum_a w_a * channel_a`` (B, n_items)."""
        X = seen.astype(np.float32).tocsr()
        for a, w in self.aux_.items():
            if a in channels and w:
                X = X + w * sp.csr_matrix(channels[a], dtype=np.float32)
        X = X.tocsr()
        X.eliminate_zeros()
        return X

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
    def _resolve(self, users, history) -> tuple[np.ndarray | None, sp.csr_matrix, sp.csr_matrix, dict]:
        """(users, input rows, target rows, aux rows by action) from users and/or a history: a
        matrix (the target's rows, or the union without a target) or a mapping action -> rows.
        Aux rows are only gathered for ``multi_channel`` models (others read the input alone)."""
        self._check_fitted()
        channels: dict[str, sp.csr_matrix] = {}
        if isinstance(history, dict):
            channels = {a: as_csr(h, self.n_items_) for a, h in history.items()}
            key = self.target_ if self.target_ is not None else next(iter(channels), None)
            unknown = sorted(set(channels) - {key, *self.aux_})
            if unknown:
                raise ValueError(f"history has action(s) {unknown}; {self.name} reads {[key, *self.aux_]}")
            n_rows = {h.shape[0] for h in channels.values()}
            if len(n_rows) > 1:
                raise ValueError(f"history matrices have different row counts {sorted(n_rows)}")
            history = channels.pop(key, None)
            if history is None:
                history = sp.csr_matrix((n_rows.pop(), self.n_items_), dtype=np.float32)
        elif history is not None:
            history = as_csr(history, self.n_items_)
        if users is None:
            if history is None:
                raise ValueError("give users, a history, or both")
            if not self.fold_in:
                raise ValueError(f"{self.name} cannot fold in unseen users; it only scores users seen at fit")
        else:
            users = np.atleast_1d(np.asarray(users))
            if users.dtype.kind not in "iu":
                raise TypeError(f"users must be integer indices, got {users.dtype}; map raw ids with user_ids_.index")
            bad = (users < 0) | (users >= self.n_users_)
            if bad.any():
                raise KeyError(f"user index {int(users[bad][0])} does not exist (the model knows {self.n_users_} users)")
            if history is None:
                if self.multi_channel and self.target_ is not None:
                    channels = self._with_friends({a: m[users] for a, m in self.channels_.items()}, users)
                return users, self.train_[users], self.seen[users], channels
            if history.shape[0] != len(users):
                raise ValueError(f"history has {history.shape[0]} rows for {len(users)} users")
        if self.target_ is None:
            return users, history, history, {}
        channels = self._with_friends(channels, users)
        return users, self._combine(history, channels), history, channels

    def _call_score(self, users, inputs, seen, channels) -> np.ndarray:
        if self.multi_channel:
            return self._score(users, inputs, seen, channels)
        return self._score(users, inputs)

    def score(self, users=None, history=None) -> np.ndarray:
        """Scores (B, n_items) for users (internal indices) and/or their histories: (B, n_items)
        rows, or a mapping action -> rows for a model fitted with a target and aux actions."""
        scores = self._call_score(*self._resolve(users, history))
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def _score(self, users: np.ndarray | None, history: sp.csr_matrix) -> np.ndarray:
        """(B, n_items) scores: an array or tensor, or a sparse matrix whose unstored entries score 0."""
        raise NotImplementedError

    def recommend(self, users=None, n: int = 10, exclude_seen: bool = True,
                  history=None, exclude: sp.spmatrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores, each (B, n), best first.

        With ``exclude_seen`` the items in the target history get no slot (``exclude``, a (B,
        n_items) matrix, replaces that mask, e.g. with every item the user touched); when fewer
        than ``n`` items remain, the tail of a row holds -1 with score -inf.
        """
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        users, inputs, seen, channels = self._resolve(users, history)
        scores = self._call_score(users, inputs, seen, channels)  # (B, n_items), dense or sparse
        if not exclude_seen:
            return top_n(scores, n)
        return top_n(scores, n, exclude=seen if exclude is None else exclude)

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
        arrays.update(_csr_arrays("train", self.train_, weighted=self.target_ is not None))
        if self.target_ is not None:
            arrays.update(_csr_arrays("seen", self.seen_))
            for a, m in self.channels_.items():
                arrays.update(_csr_arrays(f"channel.{a}", m))
        if self.social_ is not None:
            arrays.update(_csr_arrays("social", self.social_, weighted=True))
        meta = {"model": self.name, "params": self.get_params(), "shape": [self.n_users_, self.n_items_],
                "target": self.target_, "aux": self.aux_}
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
        """A model saved by :meth:`save`. A damaged folder (truncated or edited ``model.json``,
        hyperparameters of the wrong type, a corrupt or mismatched ``model.safetensors``) raises
        :class:`~feedgan.io.ArtifactError` naming the file, before anything is scored."""
        path = Path(path)
        cls, params, meta = read_model_meta(path)
        file = path / "model.safetensors"
        arrays = read_safetensors(file)
        check_layout(file, {k: list(v.shape) for k, v in arrays.items()}, meta)
        model = cls(**params)
        shape = tuple(meta["shape"])
        model.n_users_, model.n_items_ = shape
        model.target_, model.aux_ = meta["target"], meta["aux"]
        try:
            model.train_ = _csr_from(arrays, "train", shape)
            if model.target_ is not None:
                model.seen_ = _csr_from(arrays, "seen", shape)
                model.channels_ = {a: _csr_from(arrays, f"channel.{a}", shape) for a in model.aux_ if a != FRIENDS}
            model.social_ = _csr_from(arrays, "social", (shape[0], shape[0])) if "social.indptr" in arrays else None
            for key in ("user_ids", "item_ids"):
                ids = arrays[key] if key in arrays else np.array(meta[key])
                setattr(model, f"{key}_", IdMap(ids, key[:4]))
            model._set_state({k[6:]: v for k, v in arrays.items() if k.startswith("state.")})
            if model.n_users_:
                model.score(np.zeros(1, dtype=np.int64))  # the arrays fit this class: one known user scores
        except (DataError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ArtifactError(file, f"does not hold a working {cls.name} model ({type(exc).__name__}: {reason})"
                                ) from exc
        return model


def read_model_meta(path: str | Path) -> tuple[type[Recommender], dict, dict]:
    """The class, the checked hyperparameters and the checked ``model.json`` of a saved model,
    without reading its weights; :class:`~feedgan.io.ArtifactError` names what is wrong. ``meta``
    comes back with ``target`` (None or a name) and ``aux`` (name -> float) always present."""
    path = Path(path)
    file = path / "model.json"
    meta = read_json(file, missing=f"{path}: no model.json here; point at a folder written by model.save")
    if not isinstance(meta, dict):
        raise ArtifactError(file, f"holds a {type(meta).__name__}, not the object model.save writes")
    import feedgan.rec  # noqa: F401  (defines every model class, filling the registry)

    kind = meta.get("model")
    if not isinstance(kind, str):
        raise ArtifactError(file, "has no \"model\" (the model's kind, e.g. \"ease\")")
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ArtifactError(file, f"unknown model {kind!r}; known: {', '.join(sorted(_REGISTRY))}")
    try:
        params = check_params(cls, _field(meta, "params", dict), owner=kind)
        shape, target, aux = _checked_fields(meta)
    except ValueError as exc:  # ParamError included
        raise ArtifactError(file, str(exc)) from exc
    return cls, params, {**meta, "params": params, "shape": shape, "target": target, "aux": aux}


def _checked_fields(meta: dict) -> tuple[list[int], str | None, dict[str, float]]:
    """``shape``, ``target`` and ``aux`` of a ``model.json``, and the lengths of id lists in it;
    ValueError says which field is wrong."""
    shape = _field(meta, "shape", list)
    if len(shape) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError(f"\"shape\" must be [n_users, n_items], got {shape!r}")
    target = meta.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"\"target\" must be an action name or null, got {target!r}")
    try:
        aux = _aux_weights(_field(meta, "aux", dict, default={}))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"\"aux\" must map action names to weights >= 0 ({exc})") from None
    for key, n in (("user_ids", shape[0]), ("item_ids", shape[1])):
        if key in meta and (not isinstance(meta[key], list) or len(meta[key]) != n):
            raise ValueError(f"\"{key}\" must list {n} ids")
    return shape, target, aux


def _field(meta: dict, key: str, kind: type, default=None):
    value = meta.get(key, default)
    if not isinstance(value, kind):
        raise ValueError(f"\"{key}\" must be a JSON {'object' if kind is dict else 'array'}, got {value!r}")
    return value


def check_layout(file: Path, shapes: dict[str, list[int]], meta: dict) -> None:
    """The arrays a saved model needs, with shapes that fit ``meta``'s (n_users, n_items), from
    the safetensors header alone (``shapes``: name -> shape); :class:`~feedgan.io.ArtifactError`
    names the first array missing or of the wrong shape."""
    n_users, n_items = meta["shape"]
    need = {"train.indptr": [n_users + 1]}
    if meta["target"] is not None:
        need["seen.indptr"] = [n_users + 1]
        need.update({f"channel.{a}.indptr": [n_users + 1] for a in meta["aux"] if a != FRIENDS})
    for key, n in (("user_ids", n_users), ("item_ids", n_items)):
        if key not in meta:
            need[key] = [n]
    if "social.indptr" in shapes:
        need["social.indptr"] = [n_users + 1]
    for key, shape in need.items():
        if key not in shapes:
            raise ArtifactError(file, f"has no array {key!r}; it holds {', '.join(sorted(shapes)) or 'none'}")
        if shapes[key] != shape:
            raise ArtifactError(file, f"array {key!r} has shape {shapes[key]}, model.json's shape "
                                      f"{meta['shape']} needs {shape}")


def _aux_weights(aux) -> dict[str, float]:
    """``None`` / names / mapping name -> weight / text ``"cart=1,view=0.2"`` (a name alone:
    weight 1), as a mapping with float weights."""
    if aux is None:
        return {}
    if isinstance(aux, str):
        aux = dict(_weight_of(part) for part in aux.split(",") if part.strip())
    items = aux.items() if isinstance(aux, dict) else ((a, 1.0) for a in aux)
    out = {}
    for a, w in items:
        w = float(w)
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"aux weight of {a!r} must be a finite number >= 0, got {w}")
        out[str(a).strip()] = w
    return out


def _weight_of(part: str) -> tuple[str, float]:
    name, eq, w = part.strip().partition("=")
    try:
        return name.strip(), float(w) if eq else 1.0
    except ValueError:
        raise ValueError(f"bad aux weight {part.strip()!r}; write e.g. cart=1,view=0.2") from None


def _row_normalised(S: sp.spmatrix) -> sp.csr_matrix:
    """Binary social graph with rows summing to 1 (users without edges: empty rows)."""
    S = sp.csr_matrix(S, dtype=np.float32)
    S.data[:] = 1.0
    deg = np.asarray(S.sum(1)).ravel()
    return (sp.diags(1.0 / np.maximum(deg, 1.0)).astype(np.float32) @ S).tocsr()


def _csr_arrays(key: str, m: sp.csr_matrix, weighted: bool = False) -> dict[str, np.ndarray]:
    out = {f"{key}.indptr": m.indptr.astype(np.int64), f"{key}.indices": m.indices.astype(np.int64)}
    if weighted:
        out[f"{key}.data"] = np.ascontiguousarray(m.data, dtype=np.float32)
    return out


def _csr_from(arrays: dict, key: str, shape) -> sp.csr_matrix:
    indices = arrays[f"{key}.indices"]
    data = arrays.get(f"{key}.data", np.ones(len(indices), np.float32))
    return checked_csr(data, indices, arrays[f"{key}.indptr"], shape, key)


def top_n(scores, n: int, exclude: sp.spmatrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n item indices and scores, each (B, n), best first, of (B, n_items) scores:
    a tensor, an array, or a sparse matrix whose unstored entries score 0 (never modified).

    Equal scores go to the lower item index. The stored entries of ``exclude`` (B, n_items), e.g.
    the users' seen items, get no slot; -inf entries and the tail of a row with fewer than ``n``
    candidates become item -1 with score -inf.
    """
    shape = tuple(scores.shape)
    mask = None
    if exclude is not None:
        mask = sp.csr_matrix(exclude)
        if mask.shape != shape:
            raise ValueError(f"exclude has shape {mask.shape}; the scores are {shape}")
    if sp.issparse(scores):
        return _sparse_top_n(sp.csr_matrix(scores, dtype=np.float32), n, mask)
    scores = scores.float() if torch.is_tensor(scores) else torch.from_numpy(np.asarray(scores, dtype=np.float32))
    if mask is not None:
        scores = scores.clone()
        _mask_dense(scores, mask)
    return _dense_top_n(scores, n)


def _mask_dense(scores: torch.Tensor, mask: sp.csr_matrix) -> None:
    """Sets the stored entries of ``mask`` (B, n_items) to -inf in ``scores`` (B, n_items), in place."""
    rows = np.repeat(np.arange(mask.shape[0]), np.diff(mask.indptr))  # (nnz,) row of each excluded entry
    scores[torch.from_numpy(rows), torch.from_numpy(mask.indices.astype(np.int64))] = -torch.inf


def _dense_top_n(scores: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` of masked (B, n_items) scores. ``torch.topk`` picks arbitrarily among equal
    scores, so rows with a tie inside their list or at its last slot are re-ranked from the
    candidates that reach the last slot's score, lower item first."""
    n_eff = min(n, scores.shape[1])
    val, idx = torch.topk(scores, n_eff, dim=1)  # (B, n_eff) each
    if n_eff > 0:
        last = val[:, -1:]  # (B, 1)
        tied = ((scores >= last).sum(1) > n_eff) | (val[:, 1:] == val[:, :-1]).any(1)
        rows = torch.nonzero(tied).ravel()
        if len(rows):
            cand = scores[rows] >= last[rows]  # (R, n_items), at least n_eff per row
            r, c = torch.nonzero(cand, as_tuple=True)  # row-major, items ascending
            indptr = np.concatenate([[0], np.cumsum(cand.sum(1).numpy())])
            c, v, _ = row_topk(indptr, c.numpy(), scores[rows][r, c].numpy(), n_eff)
            idx[rows], val[rows] = torch.from_numpy(c).view(-1, n_eff), torch.from_numpy(v).view(-1, n_eff)
    idx[torch.isneginf(val)] = -1
    if n_eff < n:
        pad = n - n_eff
        idx = torch.cat([idx, torch.full((idx.shape[0], pad), -1, dtype=idx.dtype)], 1)
        val = torch.cat([val, torch.full((val.shape[0], pad), -torch.inf)], 1)
    return idx.numpy(), val.numpy()


def _sparse_top_n(scores: sp.csr_matrix, n: int, mask: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` of sparse (B, n_items) scores without a dense (B, n_items) array: a row whose
    ``n`` best unmasked stored scores are all positive beats every unstored (zero) item, so its
    list comes from its stored entries alone; the other rows go through the dense path."""
    B, n_items = scores.shape
    n_eff = min(n, n_items)
    n_masked = 0 if mask is None else np.diff(mask.indptr)  # (B,)
    # each row's n + n_masked best stored entries hold its n best unmasked ones
    items, values, counts = row_topk(scores.indptr, scores.indices, scores.data, n_eff + n_masked)
    rows = np.repeat(np.arange(B), counts)
    if mask is not None:
        masked = np.isin(rows * n_items + items, np.repeat(np.arange(B), n_masked) * n_items + mask.indices)
        items, values, rows = items[~masked], values[~masked], rows[~masked]
        counts = np.bincount(rows, minlength=B)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    first_n = within < n_eff
    items, values, counts = items[first_n], values[first_n], np.minimum(counts, n_eff)
    ends = np.cumsum(counts) - 1
    fast = (counts == n_eff) & (n_eff > 0)
    fast[fast] = values[ends[fast]] > 0
    idx = np.full((B, n), -1, dtype=np.int64)
    val = np.full((B, n), -np.inf, dtype=np.float32)
    take = np.repeat(fast, counts)
    idx[fast, :n_eff] = items[take].reshape(-1, n_eff)
    val[fast, :n_eff] = values[take].reshape(-1, n_eff)
    slow = np.flatnonzero(~fast)
    if len(slow):  # fewer than n positive candidates: zeros (unstored items) compete
        dense = torch.from_numpy(scores[slow].toarray())
        if mask is not None:
            _mask_dense(dense, mask[slow])
        idx[slow], val[slow] = _dense_top_n(dense, n)
    return idx, val


def row_topk(indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, k
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest entries of every row of a CSR layout, best first, equal values lower
    column first; the columns of a row need not be sorted.

    indptr: (n_rows + 1,) row boundaries; cols, values: (nnz,) columns and float32 values; k: an
    int or (n_rows,) ints. Returns (cols, values, counts): the kept entries row after row, best
    first, each (sum(counts),), and counts (n_rows,) = min(k, row length). Entries that cannot
    make a row's list are dropped first (:func:`_candidates`), then one sort of packed
    (row, value, column) 64-bit keys per group of rows replaces a loop over rows.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    counts = np.minimum(np.diff(indptr), np.maximum(k, 0))  # (n_rows,)
    return _packed_topk(*_candidates(indptr, cols, values, counts), counts)


def _packed_topk(indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, counts: np.ndarray):
    """:func:`row_topk` by sorting every entry: ``counts`` (n_rows,) entries kept per row."""
    lengths = np.diff(indptr)
    col_bits = max(1, int(cols.max()).bit_length()) if cols.size else 1
    if col_bits > 31:
        raise ValueError(f"row_topk: column indices need {col_bits} bits; at most 31 fit a packed key")
    group = 1 << (32 - col_bits)  # rows per sort: row, value and column bits fill 64
    out_cols, out_vals = [], []
    for r0 in range(0, len(lengths), group):
        r1 = min(r0 + group, len(lengths))
        lo, hi = indptr[r0], indptr[r1]
        key = _descending_bits(values[lo:hi]).astype(np.uint64)
        key <<= np.uint64(col_bits)
        key |= cols[lo:hi].astype(np.uint64)
        key |= np.repeat(np.arange(r1 - r0, dtype=np.uint64) << np.uint64(32 + col_bits), lengths[r0:r1])
        key.sort()  # row r keeps its range indptr[r]:indptr[r + 1], best first
        c = counts[r0:r1]
        first = np.cumsum(c) - c
        at = np.repeat(indptr[r0:r1] - lo - first, c) + np.arange(int(c.sum()))
        kept = key[at]
        out_cols.append((kept & np.uint64((1 << col_bits) - 1)).astype(np.int64))
        out_vals.append(_descending_bits((kept >> np.uint64(col_bits)).astype(np.uint32), inverse=True))
    if not out_cols:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), counts
    return np.concatenate(out_cols), np.concatenate(out_vals), counts


def _candidates(indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, counts: np.ndarray):
    """The entries of each row that can be among its ``counts[r]`` largest. A long row is cut into
    m = 4 counts[r] chunks: their maxima are m distinct entries, so the row's counts[r]-th largest
    value is at least the counts[r]-th largest chunk maximum, and smaller entries are dropped.
    Rows under 8x their count stay whole. Returns (indptr, cols, values) of the entries kept."""
    lengths = np.diff(indptr)
    long = np.flatnonzero((counts > 0) & (lengths >= 8 * counts))
    if not len(long):
        return indptr, cols, values
    m, size = 4 * counts[long], lengths[long]
    first = np.cumsum(m) - m  # where each long row's chunks begin among all chunks
    chunk = np.arange(int(m.sum())) - np.repeat(first, m)  # 0..m-1 within the row
    starts = np.repeat(indptr[long], m) + chunk * np.repeat(size, m) // np.repeat(m, m)
    # reduceat bounds: each row's chunk starts, then its end, so that no chunk runs into the next row
    at = np.arange(len(starts)) + np.repeat(np.arange(len(long)), m)
    bounds = np.empty(len(starts) + len(long), dtype=np.int64)
    bounds[at] = starts
    bounds[np.cumsum(m) + np.arange(len(long))] = indptr[long + 1]
    if bounds[-1] == len(values):  # the last row runs to the end anyway
        bounds = bounds[:-1]
    maxima = np.maximum.reduceat(values, bounds)[at]  # (sum(m),) row by row
    _, best, _ = _packed_topk(np.concatenate([[0], np.cumsum(m)]), chunk, maxima, counts[long])
    floor = np.full(len(lengths), -np.inf, dtype=np.float32)
    floor[long] = best[np.cumsum(counts[long]) - 1]  # the counts[r]-th largest chunk maximum
    keep = np.flatnonzero(values >= np.repeat(floor, lengths))  # (n_kept,) positions, ascending
    return np.searchsorted(keep, indptr), cols[keep], values[keep]


def _descending_bits(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """float32 -> uint32 whose ascending order is the floats' descending order (-0.0 as 0.0);
    with ``inverse``, those uint32 back to float32. The map flips the low 31 bits of non-negative
    floats and leaves negative ones as they are."""
    if inverse:
        bits = x.view(np.int32)
    else:
        x = np.asarray(x, dtype=np.float32) + np.float32(0.0)  # a copy; -0.0 + 0.0 = 0.0
        bits = x.view(np.int32)
    flip = ~(bits >> 31) & np.int32(0x7FFFFFFF)  # arithmetic shift: 0 for >= 0, -1 for < 0
    out = bits ^ flip
    return out.view(np.float32) if inverse else out.view(np.uint32)


def registry() -> dict[str, type[Recommender]]:
    """Model name -> class, for every recommender defined so far."""
    return dict(_REGISTRY)
