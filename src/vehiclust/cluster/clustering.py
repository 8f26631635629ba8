"""One stored clustering, ``clusterings/<name>.npz`` (the run folder's ``CLUSTERING`` artifact, which
reads and writes it through this class): its arrays named once, with save and load.

Written by the cluster stage for each descriptor (and, through the same sweep, by the compare
stage for each mixture) and by the compare stage for the consensus; read by the compare,
outliers and report stages and by :func:`vehiclust.load_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from vehiclust.runfolder import atomic_path


@dataclass
class Clustering:
    """``labels``: cluster per collection row (cluster 0 the largest; -1 for noise and rows
    without a valid vector); ``distance``: each row's distance to its cluster's centre in the
    clustering's space (NaN where there is none); ``centers``: one row per cluster (0 x 0 for
    the consensus, which has no space); ``embedding_rows``: the rows that were clustered;
    ``distance_input``: for a UMAP space, the distance in the linear space it started from (UMAP
    pulls far-off rows into the clusters they border, so its distances hide outliers)."""

    labels: np.ndarray
    distance: np.ndarray
    centers: np.ndarray
    embedding_rows: np.ndarray
    preprocessing: str
    algorithm: str
    params: str
    distance_input: np.ndarray | None = None

    def save(self, path: Path) -> None:
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> Clustering:
        with np.load(path) as data:
            values = {f.name: data[f.name] if f.name in data.files else None for f in fields(cls)}
        for name in ("preprocessing", "algorithm", "params"):
            values[name] = str(values[name])
        return cls(**values)

    @classmethod
    def load_labels(cls, path: Path) -> np.ndarray:
        """Only the labels (the other arrays are not read)."""
        with np.load(path) as data:
            return data["labels"]
