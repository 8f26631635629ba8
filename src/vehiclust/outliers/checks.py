"""Checks of the outliers stage that are not about image quality: unreadable files and the
distance to the assigned cluster centre. (Image quality checks live in
:mod:`vehiclust.quality.checks`, descriptor-space detectors in :mod:`vehiclust.outliers.detectors`.)

| check          | basis                                   | threshold (score 0.5)            |
|----------------|-----------------------------------------|----------------------------------|
| unreadable     | the file could not be read or decoded   | absolute: any failure scores 1   |
| invalid_vector | the descriptor file had NaN/inf there   | absolute                         |
| centroid       | distance to the assigned cluster centre,| relative to the cluster: robust  |
|                | robust z-score within the cluster       | z (one input of ``isolated``)    |
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vehiclust.robust import robust_z

SMALL_SIDE_PX = 32
FLAG_AT = 0.5


def unreadable_score(table: pd.DataFrame, decode_errors: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """1 for files that could not be used; the reason text per row ('' when fine)."""
    reasons = table["error"].fillna("").astype(str).tolist()
    for row, reason in decode_errors.items():
        if not reasons[row]:
            reasons[row] = reason
    return np.array([1.0 if r else 0.0 for r in reasons]), reasons


def small_score(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Halfway (0.5) at a 32 px shorter side, 1 at 0 px, 0 from 64 px up; unknown size scores 0.
    (Kept for callers of the first version; the verdict uses ``vehiclust.quality.checks.Small``.)"""
    side = np.minimum(width, height).astype(float)
    score = np.clip(1.0 - side / (2 * SMALL_SIDE_PX), 0.0, 1.0)
    return np.where(side > 0, score, 0.0)


def cluster_distance_z(labels: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Robust z of the distance to the own centre within each cluster (0 for unclustered rows)."""
    z = np.zeros(len(labels))
    for cluster_id in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == cluster_id)
        z[members] = robust_z(distance[members], log_scale=True)
    return np.nan_to_num(z)
