"""``Dataset``: stable id maps, one CSR matrix per action and part, and the social graph.

The one object every model and metric consumes::

    from feedgan.data import load_dataset
    ds = load_dataset("u.data", format="movielens", split="random", positive_threshold=4, seed=0)
    X = ds.matrix("train")                 # (n_users, n_items) binary CSR, all actions
    likes = ds.matrix("train", "like")     # (n_users, n_items) CSR of like weights
    ds.user_ids.raw(ds.user_ids.index(["42"]))  # raw ids round-trip

Indices are stable: users and items are numbered in sorted order of their raw ids, so the same
log always gives the same numbering, whatever its row order. Id maps travel with every artifact
(:meth:`Dataset.save`), so a saved model answers in the raw ids its user knows.
"""
from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..io import ArtifactError, atomic_path, read_json, write_json
from ..sparse import checked_csr
from .clean import deduplicate, k_core, keep_actions, to_implicit
from .schema import EXPOSURE, DataError, Interactions
from .split import PART_NAMES, split


class IdMap:
    """Bidirectional map between raw ids (int64 or str) and contiguous indices 0..n-1."""

    def __init__(self, raw: np.ndarray, name: str = "id"):
        self.name = name
        self._raw = np.asarray(raw)
        self._index = pd.Index(self._raw)
        if not self._index.is_unique:
            raise DataError(f"{name} id map has duplicates", fix="build id maps with IdMap.from_values")

    @classmethod
    def from_values(cls, values, name: str = "id") -> "IdMap":
        arr = np.asarray(pd.Series(values).to_numpy())
        return cls(np.unique(arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(str)), name)

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def values(self) -> np.ndarray:
        return self._raw

    def index(self, raw, *, missing: str = "raise") -> np.ndarray:
        """Indices of raw ids. ``missing="raise"`` errors on unknown ids, ``"ignore"`` gives -1."""
        raw = np.atleast_1d(np.asarray(raw))
        if self._raw.dtype.kind in "iu" and raw.dtype.kind not in "iu":
            # ids typed as text ("42") against an integer map: convert what parses, the rest is unknown
            num = pd.to_numeric(pd.Series(raw.astype(str)), errors="coerce").to_numpy()
            ok = np.isfinite(num) & (num == np.round(num))
            idx = np.full(len(raw), -1, dtype=np.int64)
            idx[ok] = self._index.get_indexer(num[ok].astype(np.int64))
        else:
            query = raw if self._raw.dtype.kind in "iu" else raw.astype(str)
            idx = self._index.get_indexer(query)
        if missing == "raise" and (idx < 0).any():
            unknown = raw[idx < 0][:3].tolist()
            raise KeyError(f"unknown {self.name} id(s) {unknown} (the data has {len(self)} {self.name}s)")
        return idx

    def raw(self, idx) -> np.ndarray:
        return self._raw[np.asarray(idx)]

    def to_array(self) -> np.ndarray:
        """For saving: int64 or unicode array (never an object array, so no pickle is needed)."""
        return self._raw if self._raw.dtype.kind in "iu" else self._raw.astype(str)


@dataclass
class DataConfig:
    """How a log becomes a Dataset. Stored with every run, so the run can be rebuilt."""

    path: str | None = None
    format: str = "auto"
    split: str = "random"
    valid: float = 0.1
    test: float = 0.2
    target: float = 0.2  # by-user split: share of a held-out user's pairs used as targets
    seed: int = 0
    positive_threshold: float | None = None
    k_core: int | None = None
    actions: list[str] | None = None
    dedup: str = "auto"  # how repeated rows merge: auto (ratings max, counts sum), max, last, sum, count
    columns: dict[str, str | int] | None = None  # ours -> the file's column name, or its 0-based position
    sep: str | None = None  # csv / tsv / uir separator: one character or "whitespace" (None: the format's own)
    header: bool = True  # csv / tsv: False reads the first line as data (map the columns by position)
    social: str | None = None  # a friend edge file (src, dst [, weight]) in the log's user ids
    social_columns: dict[str, str | int] | None = None  # src / dst / weight -> the edge file's column name or position
    social_sep: str | None = None  # the edge file's separator (None: tab, comma or whitespace, from its first line)
    social_header: bool | None = None  # whether its first line names the columns (None: guessed)
    # hold out pairs of this action only (None: every pair); its other actions on a held-out item
    # stay in train when aux_in_train (see feedgan.data.split)
    target_action: str | None = None
    aux_in_train: bool = True


@dataclass
class Part:
    """One part of the split: a weighted CSR matrix per action, all (n_users, n_items)."""

    actions: dict[str, sp.csr_matrix] = field(default_factory=dict)

    @property
    def nnz(self) -> int:
        return int(self.matrix().nnz)

    def matrix(self, action: str | list[str] | tuple[str, ...] | None = None) -> sp.csr_matrix:
        """Binary union over ``action`` (None: every action but exposures); a single action name
        gives its weights."""
        if isinstance(action, str):
            if action not in self.actions:
                raise KeyError(f"unknown action {action!r}; the data has {sorted(self.actions)}")
            return self.actions[action]
        names = [a for a in self.actions if a != EXPOSURE] if action is None else list(action)
        for a in names:
            if a not in self.actions:
                raise KeyError(f"unknown action {a!r}; the data has {sorted(self.actions)}")
        mats = [self.actions[a] for a in names]
        if not mats:  # an exposure-only log, or an empty selection
            shape = next(iter(self.actions.values())).shape
            return sp.csr_matrix(shape, dtype=np.float32)
        return _binary_union(mats)


class Dataset:
    """Id maps + per-part, per-action CSR matrices + optional social graph (users x users CSR)."""

    def __init__(self, user_ids: IdMap, item_ids: IdMap, parts: dict[str, Part],
                 social: sp.csr_matrix | None = None, meta: dict | None = None):
        self.user_ids, self.item_ids, self.parts = user_ids, item_ids, parts
        self.social = social
        self.meta = meta or {}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_interactions(cls, inter: Interactions, codes: np.ndarray | None = None,
                          meta: dict | None = None) -> "Dataset":
        """Build from a log and per-row part codes (from :func:`feedgan.data.split.split`)."""
        frame = inter.frame
        if codes is None:
            codes = np.zeros(len(frame), dtype=np.int8)
        if len(codes) != len(frame):
            raise ValueError(f"codes has {len(codes)} entries for {len(frame)} rows")
        social_users = [] if inter.social is None else [inter.social["src"], inter.social["dst"]]
        all_users = pd.concat([frame["user"], *social_users], ignore_index=True)
        users = IdMap.from_values(all_users, "user")
        items = IdMap.from_values(frame["item"], "item")
        u = users.index(frame["user"].to_numpy())
        i = items.index(frame["item"].to_numpy())
        w = frame["weight"].to_numpy(np.float32)
        act = frame["action"].cat.codes.to_numpy()
        shape = (len(users), len(items))
        parts = {}
        for code, name in enumerate(PART_NAMES):
            in_part = codes == code
            if not in_part.any() and name not in ("train", "valid", "test"):
                continue
            mats = {}
            for a_code, a_name in enumerate(frame["action"].cat.categories):
                m = in_part & (act == a_code)
                mats[str(a_name)] = sp.csr_matrix((w[m], (u[m], i[m])), shape=shape, dtype=np.float32)
            parts[name] = Part(mats)
        social = None
        if inter.social is not None:
            s = users.index(inter.social["src"].to_numpy())
            d = users.index(inter.social["dst"].to_numpy())
            social = sp.csr_matrix((inter.social["weight"].to_numpy(np.float32), (s, d)),
                                   shape=(len(users), len(users)))
        return cls(users, items, parts, social, {"source": inter.source, **(meta or {}), "notes": inter.notes})

    # -- access -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def actions(self) -> list[str]:
        return list(self.parts["train"].actions)

    @property
    def target_action(self) -> str | None:
        """The action whose pairs the split held out (None: every pair was a candidate)."""
        return self.meta.get("config", {}).get("target_action")

    def __getattr__(self, name: str) -> Part:
        parts = self.__dict__.get("parts", {})
        if name in parts:
            return parts[name]
        raise AttributeError(name)

    def matrix(self, part: str = "train", action: str | list[str] | None = None) -> sp.csr_matrix:
        if part not in self.parts:
            raise KeyError(f"no part {part!r}; this dataset has {sorted(self.parts)}")
        return self.parts[part].matrix(action)

    def history(self, part: str = "valid", action: str | list[str] | tuple[str, ...] | None = None) -> sp.csr_matrix:
        """What a model may see when predicting ``part``: its fold-in input for held-out users
        (by-user split), train for validation, train + valid for test. Binary; ``action`` as in
        :meth:`Part.matrix` (None: every action but exposures)."""
        names = [action] if isinstance(action, str) else action
        base = self.matrix("train", names)
        if part == "test":
            base = base + self.matrix("valid", names)
        inp = self.parts.get(f"{part}_input")
        if inp is not None:
            base = base + inp.matrix(names)
        base = base.tocsr()
        base.data[:] = 1.0
        return base

    def stats(self) -> dict:
        """Counts, density, action mix and degree summaries, per part."""
        out = {"users": self.n_users, "items": self.n_items, "actions": self.actions, "parts": {}}
        total = None
        for name, part in self.parts.items():
            m = part.matrix()
            total = m if total is None else total + m
            out["parts"][name] = {"pairs": int(m.nnz), "users": int((m.getnnz(1) > 0).sum()),
                                  "items": int((m.getnnz(0) > 0).sum()),
                                  "by_action": {a: int(x.nnz) for a, x in part.actions.items()}}
        total.data[:] = 1
        total.eliminate_zeros()
        out["pairs"] = int(total.nnz)
        # users counts those with interactions; the id map may also hold social-graph-only users
        out["users"] = int((total.getnnz(1) > 0).sum())
        out["social_only_users"] = self.n_users - out["users"]
        out["density"] = total.nnz / max(1, out["users"] * self.n_items)
        out["interactions"] = int(sum(sum(x.nnz for x in p.actions.values()) for p in self.parts.values()))
        out["by_action"] = {a: sum(p.actions[a].nnz for p in self.parts.values()) for a in self.actions}
        ud, idg = total.getnnz(1), total.getnnz(0)
        out["user_degree"] = _quantiles(ud)
        out["item_degree"] = _quantiles(idg)
        out["funnel"] = self._funnel()
        out["social_edges"] = 0 if self.social is None else int(self.social.nnz)
        out["notes"] = self.meta.get("notes", {})
        return out

    def _funnel(self) -> dict[str, float]:
        """Pair-level conversion rates ``"b|a"`` = share of (user, item) pairs with action ``a`` that
        also have ``b``: every action from the base (exposures when the log has them, else the most
        common action), and each action from the next more common one (view -> like -> share)."""
        pairs = {a: _binary_union([p.actions[a] for p in self.parts.values()]) for a in self.actions}
        pairs = {a: m for a, m in pairs.items() if m.nnz}
        order = sorted(pairs, key=lambda a: (a != EXPOSURE, -pairs[a].nnz))
        out: dict[str, float] = {}
        for j, b in enumerate(order[1:], 1):
            for a in dict.fromkeys([order[0], order[j - 1]]):
                out[f"{b}|{a}"] = float(pairs[a].multiply(pairs[b]).nnz / pairs[a].nnz)
        return out

    # -- persistence (data, never pickle) -----------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``dataset.npz`` (id maps + CSR arrays) and ``dataset.json`` (meta) into a folder."""
        path = Path(path)
        arrays = {"user_ids": self.user_ids.to_array(), "item_ids": self.item_ids.to_array()}
        index = {}
        for pname, part in self.parts.items():
            for aname, m in part.actions.items():
                key = f"{pname}__{len(index)}"
                index[key] = [pname, aname]
                arrays[f"{key}__indptr"], arrays[f"{key}__indices"], arrays[f"{key}__data"] = \
                    m.indptr, m.indices, m.data
        if self.social is not None:
            s = self.social
            arrays["social__indptr"], arrays["social__indices"], arrays["social__data"] = s.indptr, s.indices, s.data
        with atomic_path(path / "dataset.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        write_json(path / "dataset.json", {"shape": [self.n_users, self.n_items], "matrices": index,
                                           "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "Dataset":
        """Read a folder written by :meth:`save`; a damaged or foreign one is an
        :class:`~feedgan.io.ArtifactError` naming the file, never a traceback."""
        path = Path(path)
        if not (path / "dataset.json").exists() or not (path / "dataset.npz").exists():
            raise DataError("no saved dataset here", file=path, fix="save one with Dataset.save")
        meta = read_json(path / "dataset.json")
        try:
            with np.load(path / "dataset.npz", allow_pickle=False) as npz:
                return cls._from_arrays(meta, npz)
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            problem = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            raise ArtifactError(path / "dataset.npz", f"does not match dataset.json ({problem})") from exc

    @classmethod
    def _from_arrays(cls, meta: dict, arrays) -> "Dataset":
        shape = tuple(int(n) for n in meta["shape"])
        parts: dict[str, Part] = {}
        for key, (pname, aname) in meta["matrices"].items():
            m = checked_csr(arrays[f"{key}__data"], arrays[f"{key}__indices"], arrays[f"{key}__indptr"], shape,
                            f"{pname}/{aname}")
            parts.setdefault(pname, Part()).actions[aname] = m
        social = None
        if "social__indptr" in arrays:
            social = checked_csr(arrays["social__data"], arrays["social__indices"], arrays["social__indptr"],
                                 (shape[0], shape[0]), "social")
        user_ids, item_ids = arrays["user_ids"], arrays["item_ids"]
        if len(user_ids) != shape[0] or len(item_ids) != shape[1]:
            raise ValueError(f"{len(user_ids)} user ids and {len(item_ids)} item ids for a {shape} matrix")
        return cls(IdMap(user_ids, "user"), IdMap(item_ids, "item"), parts, social, meta["meta"])


def _binary_union(mats) -> sp.csr_matrix:
    m = sum(mats[1:], mats[0].copy()).tocsr()
    m.data[:] = 1.0
    m.eliminate_zeros()
    return m


def _quantiles(deg: np.ndarray) -> dict:
    deg = deg[deg > 0]
    if len(deg) == 0:
        return {"min": 0, "median": 0, "mean": 0.0, "p90": 0, "max": 0}
    return {"min": int(deg.min()), "median": float(np.median(deg)), "mean": float(deg.mean()),
            "p90": float(np.quantile(deg, 0.9)), "max": int(deg.max())}


def prepare(inter: Interactions, cfg: DataConfig) -> Dataset:
    """Clean and split a log as ``cfg`` says: actions, implicit threshold, dedup, k-core, split."""
    inter = keep_actions(inter, cfg.actions)
    if cfg.positive_threshold is not None:
        inter = to_implicit(inter, cfg.positive_threshold)
    inter = deduplicate(inter, cfg.dedup)
    if cfg.k_core:
        inter = k_core(inter, cfg.k_core)
    codes = split(inter, cfg.split, valid=cfg.valid, test=cfg.test, target=cfg.target, seed=cfg.seed,
                  target_action=cfg.target_action, aux_in_train=cfg.aux_in_train)
    return Dataset.from_interactions(inter, codes, meta={"config": asdict(cfg)})


def read_log(cfg: DataConfig) -> Interactions:
    """The log (and friend graph) ``cfg`` names, read with its reader options."""
    from .readers import read

    return read(cfg.path, cfg.format, columns=cfg.columns, sep=cfg.sep, header=cfg.header, social=cfg.social,
                social_columns=cfg.social_columns, social_sep=cfg.social_sep, social_header=cfg.social_header)


def load_dataset(path: str | Path, format: str = "auto", **options) -> Dataset:
    """Read a log and turn it into a split :class:`Dataset` in one call (options: see DataConfig)."""
    cfg = DataConfig(path=str(path), format=format, **options)
    return prepare(read_log(cfg), cfg)
