"""Which images each montage shows: per cluster the most typical (closest to its centre), a
random sample and the borderline ones (nearly as close to another cluster's centre as to their
own); per outlier reason the highest-scored images."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vehiclust.report.maps import MapSettings, _linear_reducer, _reduced
from vehiclust.runfolder import RunFolder

TYPICAL = 10
RANDOM = 10
BORDERLINE = 8
GALLERY = 16
FIT_SAMPLE = 20_000


def reduced_space(run: RunFolder, name: str, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """``rows`` of the descriptor, standardised and PCA-reduced (fitted on a sample): the
    space in which "closest to another cluster" is measured, the same for every algorithm."""
    matrix = run.load_descriptor(name)
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(rows, min(FIT_SAMPLE, len(rows)), replace=False))
    reducer = _linear_reducer(matrix, fit_rows, MapSettings(seed=seed))
    return _reduced(matrix, rows, reducer)


def border_ratio(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance to the own cluster's mean over the distance to the nearest other mean: near 1
    on the border between two clusters, near 0 at the centre."""
    clusters = np.unique(labels)
    means = np.stack([points[labels == c].mean(0) for c in clusters])
    distances = _chunked_distances(points, means)
    own_index = (np.arange(len(points)), np.searchsorted(clusters, labels))
    own = distances[own_index]
    distances[own_index] = np.inf
    other = distances.min(1) if len(clusters) > 1 else np.full(len(points), np.inf)
    return own / np.maximum(other, 1e-12)


def _chunked_distances(points: np.ndarray, means: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    return np.concatenate([np.linalg.norm(points[s:s + chunk, None, :] - means[None], axis=2)
                           for s in range(0, len(points), chunk)])


def cluster_montages(run: RunFolder, name: str, labels: np.ndarray, distance: np.ndarray,
                     seed: int = 0) -> dict[int, dict[str, np.ndarray]]:
    """cluster -> {"typical", "random", "borderline"}: collection rows, best first."""
    rows = np.flatnonzero(labels >= 0)
    if len(rows) == 0:
        return {}
    if name in run.descriptor_names():
        ratio = np.full(len(labels), np.nan)
        ratio[rows] = border_ratio(reduced_space(run, name, rows, seed), labels[rows])
    else:  # no matrix of its own (e.g. a consensus clustering): the farthest from the centre
        ratio = distance.astype(np.float64)
    rng = np.random.default_rng(seed)
    montages = {}
    for cluster in np.unique(labels[rows]):
        members = np.flatnonzero(labels == cluster)
        typical = members[np.argsort(np.nan_to_num(distance[members], nan=np.inf), kind="stable")][:TYPICAL]
        border = members[np.argsort(-np.nan_to_num(ratio[members], nan=-1), kind="stable")][:BORDERLINE]
        sample = np.sort(rng.choice(members, min(RANDOM, len(members)), replace=False))
        montages[int(cluster)] = {"typical": typical, "random": sample, "borderline": border}
    return montages


def reason_galleries(verdicts: pd.DataFrame) -> dict[str, np.ndarray]:
    """reason -> collection rows with that reason, highest outlier score first (at most GALLERY)."""
    reasons = verdicts["outlier_reasons"].astype(str).str.split(";")
    exploded = reasons.explode()
    galleries = {}
    for reason in exploded[exploded != ""].value_counts().index:
        mask = reasons.map(lambda r: reason in r).to_numpy()
        scores = verdicts["outlier_score"].to_numpy()[mask]
        galleries[reason] = np.flatnonzero(mask)[np.argsort(-scores, kind="stable")][:GALLERY]
    return galleries
