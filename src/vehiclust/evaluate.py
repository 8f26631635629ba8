"""External scores against a ground truth (the demo's, or any labelled collection's).

Clusterings are scored on the clean images only (ARI / NMI against type, colour and vehicle
identity); the outlier verdict by precision and recall overall and recall per outlier kind.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vehiclust.rules import JOINT, JOINT_COLUMNS, joint_label

LABELS = ("type", "color", JOINT, "vehicle_id")


def clustering_columns(clusters: pd.DataFrame) -> list[str]:
    """``cluster`` and every ``cluster_<name>`` holding labels (not ``cluster_name``, the words)."""
    return [c for c in clusters.columns if (c == "cluster" or c.startswith("cluster_"))
            and pd.api.types.is_integer_dtype(clusters[c])]


def clustering_scores(clusters: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per clustering column and label: ARI and NMI on clean, clustered images."""
    merged = clusters.merge(truth, on="path", how="inner", suffixes=("", "_truth"))
    clean = merged[~merged["is_outlier_truth"].astype(bool)].copy()
    parts = [f"{p}_truth" if f"{p}_truth" in clean.columns else p for p in JOINT_COLUMNS]
    if all(p in clean.columns for p in parts):
        clean[JOINT] = joint_label(clean[parts].astype(str), parts)
    rows = []
    for column in clustering_columns(clusters):
        usable = clean[clean[column] >= 0]
        for label in LABELS:
            target = f"{label}_truth" if f"{label}_truth" in usable.columns else label
            if target not in usable.columns or usable.empty:
                continue
            truth_labels = usable[target].astype(str)
            rows.append({"clustering": column, "label": label, "n": len(usable),
                         "ari": adjusted_rand_score(truth_labels, usable[column]),
                         "nmi": normalized_mutual_info_score(truth_labels, usable[column])})
    return pd.DataFrame(rows)


def outlier_scores(clusters: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Precision / recall of the verdict overall, and recall per planted kind."""
    merged = clusters.merge(truth, on="path", how="inner", suffixes=("", "_truth"))
    predicted = merged["is_outlier"].astype(bool).to_numpy()
    actual = merged["is_outlier_truth"].astype(bool).to_numpy()
    rows = [{"kind": "all", "n": int(actual.sum()),
             "precision": _ratio((predicted & actual).sum(), predicted.sum()),
             "recall": _ratio((predicted & actual).sum(), actual.sum())}]
    for kind, group in merged[actual].groupby("outlier_kind"):
        rows.append({"kind": kind, "n": len(group), "precision": np.nan,
                     "recall": _ratio(group["is_outlier"].astype(bool).sum(), len(group))})
    return pd.DataFrame(rows)


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")
