"""Outlier checks. Each check gives every image a score in [0, 1] and flags it at 0.5, the
documented threshold (as in cleanvision: scores and flags side by side in outliers.csv).

| check          | basis                                   | threshold (score 0.5)            |
|----------------|-----------------------------------------|----------------------------------|
| unreadable     | the file could not be read or decoded   | absolute: any failure scores 1   |
| invalid_vector | the descriptor file had NaN/inf there   | absolute                         |
| small          | shorter side of the image               | absolute: under 32 px            |
| isolated       | distance to the assigned cluster centre,| relative to the cluster: robust  |
|                | robust z-score within the cluster       | z of 3.5 (median + 3.5 x MAD)    |
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SMALL_SIDE_PX = 32
ISOLATION_Z = 3.5
FLAG_AT = 0.5


def unreadable_score(table: pd.DataFrame, decode_errors: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """1 for files that could not be used; the reason text per row ('' when fine)."""
    reasons = table["error"].fillna("").astype(str).tolist()
    for row, reason in decode_errors.items():
        if not reasons[row]:
            reasons[row] = reason
    return np.array([1.0 if r else 0.0 for r in reasons]), reasons


def small_score(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Halfway (0.5) at a 32 px shorter side, 1 at 0 px, 0 from 64 px up; unknown size scores 0."""
    side = np.minimum(width, height).astype(float)
    score = np.clip(1.0 - side / (2 * SMALL_SIDE_PX), 0.0, 1.0)
    return np.where(side > 0, score, 0.0)


def isolation_score(labels: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Robust z of the distance to the own centre within each cluster, mapped to z / (z + 3.5)."""
    score = np.zeros(len(labels))
    for cluster_id in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == cluster_id)
        d = distance[members].astype(float)
        median = np.median(d)
        mad = 1.4826 * np.median(np.abs(d - median))
        z = (d - median) / max(mad, 1e-9)
        score[members] = np.where(z > 0, z / (z + ISOLATION_Z), 0.0)
    return score
