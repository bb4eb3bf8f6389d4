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


def deduplicate(inter: Interactions, how: str = "sum") -> Interactions:
    """Merge repeated (user, item, action[, part]) rows.

    ``how``: ``sum`` adds weights (counts), ``max`` keeps the largest (ratings), ``last`` keeps
    the latest row. Timestamps keep the earliest event for ``sum``/``max`` and the latest for
    ``last``. The number of merged rows is stored in ``notes["duplicates_merged"]``.
    """
    if how not in ("sum", "max", "last"):
        raise DataError(f"unknown deduplication {how!r}", fix="use sum, max or last")
    frame = inter.frame
    keys = ["user", "item", "action"] + (["part"] if inter.has_parts else [])
    dup = frame.duplicated(keys, keep=False)
    n_dup_rows = int(frame.duplicated(keys).sum())
    if n_dup_rows == 0:
        return inter.with_frame(frame, duplicates_merged=0)
    if how == "last" and inter.has_timestamps:
        frame = frame.sort_values("timestamp", kind="stable")
    single, multi = frame.loc[~dup], frame.loc[dup]
    agg = {"weight": {"sum": "sum", "max": "max", "last": "last"}[how]}
    if inter.has_timestamps:
        agg["timestamp"] = "max" if how == "last" else "min"
    merged = multi.groupby(keys, observed=True, sort=False).agg(agg).reset_index()
    out = pd.concat([single, merged[frame.columns]], ignore_index=True)
    for col in ("action", "part"):
        if col in frame.columns:
            out[col] = pd.Categorical(out[col], categories=frame[col].cat.categories)
    return inter.with_frame(out, duplicates_merged=n_dup_rows)


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
