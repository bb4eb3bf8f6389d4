"""Cleaning steps between a raw log and a split: implicit conversion, deduplication, k-core.

Each step returns a new :class:`Interactions` and records what it removed in ``notes`` so that
``feedgan data inspect`` and run reports can say how much data a choice cost.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import DataError, Interactions


def to_implicit(inter: Interactions, threshold: float) -> Interactions:
    """Keep rows whose weight (a rating) is >= ``threshold``; every kept row gets weight 1."""
    keep = inter.frame["weight"].to_numpy() >= threshold
    if not keep.any():
        wmax = float(inter.frame["weight"].max())
        raise DataError(f"positive threshold {threshold} removes every interaction (largest weight {wmax})",
                        file=inter.source, fix="lower --positive-threshold")
    frame = inter.frame.loc[keep].copy()
    frame["weight"] = np.float32(1.0)
    return inter.with_frame(frame, below_threshold=int((~keep).sum()), positive_threshold=threshold)


DEDUP_RULES = ("auto", "max", "last", "sum", "count")


def merge_rule(action: str) -> str:
    """The ``auto`` rule for one action: ratings keep the largest (a 5 and a 4 stay 5), while counts and
    events (plays, views, clicks) add up."""
    return "max" if action == "rate" else "sum"


def deduplicate(inter: Interactions, how: str = "auto") -> Interactions:
    """Merge repeated (user, item, action[, part]) rows.

    ``how``: ``max`` keeps the largest weight (ratings), ``last`` the latest row, ``sum`` adds weights
    (counts), ``count`` sets the weight to the number of rows, ``auto`` picks per action (:func:`merge_rule`).
    Timestamps keep the earliest event, the latest for ``last``. The rule used is stored in
    ``notes["dedup"]`` and the number of merged rows in ``notes["duplicates_merged"]``.
    """
    if how not in DEDUP_RULES:
        raise DataError(f"unknown deduplication {how!r}", fix=f"use --dedup {'|'.join(DEDUP_RULES)}")
    rules = {a: merge_rule(a) if how == "auto" else how for a in inter.actions}
    used = how if how != "auto" else ", ".join(f"{a}: {r}" for a, r in rules.items())
    frame = inter.frame
    keys = ["user", "item", "action"] + (["part"] if inter.has_parts else [])
    dup = frame.duplicated(keys, keep=False)
    n_dup_rows = int(frame.duplicated(keys).sum())
    if n_dup_rows == 0:
        return inter.with_frame(frame, duplicates_merged=0, dedup=used)
    if "last" in rules.values() and inter.has_timestamps:
        frame = frame.sort_values("timestamp", kind="stable")
        dup = dup.loc[frame.index]
    single, multi = frame.loc[~dup], frame.loc[dup]
    merged = [_merge(multi.loc[multi["action"].isin([a for a, r in rules.items() if r == rule])], keys, rule,
                     inter.has_timestamps)[frame.columns] for rule in sorted(set(rules.values()))]
    out = pd.concat([single, *merged], ignore_index=True)
    for col in ("action", "part"):
        if col in frame.columns:
            out[col] = pd.Categorical(out[col], categories=frame[col].cat.categories)
    out["weight"] = out["weight"].astype(np.float32)
    return inter.with_frame(out, duplicates_merged=n_dup_rows, dedup=used)


def _merge(rows: pd.DataFrame, keys: list[str], rule: str, has_timestamps: bool) -> pd.DataFrame:
    """One row per ``keys`` group of ``rows`` (all repeated), its weight merged by ``rule``."""
    agg = {"weight": {"sum": "sum", "max": "max", "last": "last", "count": "size"}[rule]}
    if has_timestamps:
        agg["timestamp"] = "max" if rule == "last" else "min"
    return rows.groupby(keys, observed=True, sort=False).agg(agg).reset_index()


def k_core(inter: Interactions, k_user: int = 5, k_item: int | None = None) -> Interactions:
    """Iteratively drop users with fewer than ``k_user`` and items with fewer than ``k_item``
    distinct partners until both hold (the usual "k-core" filter)."""
    k_item = k_user if k_item is None else k_item
    frame = inter.frame
    before = len(frame)
    while True:
        pairs = frame[["user", "item"]].drop_duplicates()
        u_deg = pairs["user"].value_counts()
        i_deg = pairs["item"].value_counts()
        bad_u = u_deg.index[u_deg.to_numpy() < k_user]
        bad_i = i_deg.index[i_deg.to_numpy() < k_item]
        if len(bad_u) == 0 and len(bad_i) == 0:
            break
        frame = frame.loc[~frame["user"].isin(bad_u) & ~frame["item"].isin(bad_i)]
        if len(frame) == 0:
            raise DataError(f"{k_user}/{k_item}-core filtering removes every interaction",
                            file=inter.source, fix="use a smaller --k-core")
    return inter.with_frame(frame, k_core=[k_user, k_item], k_core_removed=before - len(frame))


def keep_actions(inter: Interactions, actions: list[str] | None) -> Interactions:
    """Restrict the log to the given actions (None keeps all)."""
    if not actions:
        return inter
    unknown = sorted(set(actions) - set(inter.actions))
    if unknown:
        raise DataError(f"action(s) {unknown} not in the log, which has {inter.actions}", file=inter.source,
                        fix="pick actions from that list")
    frame = inter.frame.loc[inter.frame["action"].isin(actions)].copy()
    frame["action"] = frame["action"].cat.remove_unused_categories()
    return inter.with_frame(frame, actions_kept=list(actions))
