"""Choosing a run: per descriptor, then overall, with the reason written beside it.

Calinski-Harabasz is reported but does not vote: it falls with k on real data, so using it
always picks the smallest k of the grid (the case's public solutions fell into this).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# (column, higher is better)
VOTING_METRICS = (("silhouette", True), ("davies_bouldin", False), ("stability", True))


def select_run(runs: pd.DataFrame) -> pd.DataFrame:
    """Mark the run with the best mean rank over the voting metrics."""
    runs = runs.copy()
    ranks = []
    for column, higher in VOTING_METRICS:
        values = runs[column].astype(float)
        # rank 1 = best; missing values rank last
        ranks.append(values.rank(ascending=not higher, method="average", na_option="bottom"))
    runs["score"] = -np.mean(ranks, axis=0) / len(runs)  # in [-1, 0); higher is better
    best = int(runs["score"].to_numpy().argmax())
    runs["selected"] = False
    runs.loc[runs.index[best], "selected"] = True
    runs["reason"] = ""
    runs.loc[runs.index[best], "reason"] = _reason(runs, best, ranks)
    return runs


def _reason(runs: pd.DataFrame, best: int, ranks: list[pd.Series]) -> str:
    parts = [f"{column.replace('_', ' ')} {runs[column].iloc[best]:.3f} (rank {ranks[i].iloc[best]:g}/{len(runs)})"
             for i, (column, _) in enumerate(VOTING_METRICS)]
    return "best mean rank of " + ", ".join(parts) + "; Calinski-Harabasz reported, not used (it falls with k)"


def select_overall(runs: pd.DataFrame) -> pd.DataFrame:
    """Across descriptors: the selected run with the lowest Davies-Bouldin (it compares across
    spaces better than CH or silhouette), ties broken by stability."""
    runs = runs.copy()
    runs["best_overall"] = False
    chosen = runs[runs["selected"]].sort_values(["davies_bouldin", "stability"], ascending=[True, False])
    if len(chosen):
        index = chosen.index[0]
        runs.loc[index, "best_overall"] = True
        runs.loc[index, "reason"] += (f"; best overall: lowest Davies-Bouldin among the "
                                      f"{len(chosen)} descriptors' selected runs")
    return runs
