"""What a clustering's geometry reaches beyond a partition of structureless data of the same
shape; used by the best rule (:mod:`vehiclust.compare.table`, in each clustering's own space)
and the fine level (:mod:`vehiclust.cluster.levels`, inside each coarse cluster).

Why not the score itself: silhouette and Davies-Bouldin reach high values on any clean 2-way
split and on low-dimensional descriptors, and some value on anything, so a descriptor of pure
noise, a single binary attribute or one that does not apply to the collection would compete as
an equal.

``geometry``
    mean(silhouette+, 1 / (1 + Davies-Bouldin)), the geometric half of the selection score.
``reference``
    the geometry of k-means with the same number of clusters on ``REFERENCES`` structureless
    copies of the space: each column permuted independently (``permuted``: every
    marginal kept, every dependence between columns gone) or Gaussian with the same covariance
    (``gaussian``). The reference at the same k removes the bias to few clusters; the permuted
    one also removes the bias to non-Gaussian marginals (a softmax at its simplex corners, one
    bimodal column), which a Gaussian reference rewards as structure.
``excess``
    (geometry - reference) / (1 - reference), with a spread from resampling the rows and the
    references' spread.
``agreement``
    the mean adjusted mutual information with the other clusterings compared (AMI: corrected
    for chance, so more clusters gain nothing by themselves).
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, silhouette_score

from vehiclust.cluster.metrics import cluster_geometry, internal_metrics

REFERENCES = 3
BOOTSTRAPS = 4
RESAMPLE_SHARE = 0.8
REFERENCE_KINDS = ("permuted", "gaussian")


def geometry(X: np.ndarray, labels: np.ndarray) -> float:
    """mean(silhouette+, 1/(1+DB)) of the clustered rows (NaN with fewer than 2 clusters)."""
    member = labels >= 0
    codes = np.unique(labels[member], return_inverse=True)[1]
    if codes.max(initial=-1) < 1 or member.sum() <= codes.max() + 1:
        return float("nan")
    Xm = X[member]
    centers, sizes, distance = cluster_geometry(Xm, codes)
    db = internal_metrics(Xm, codes, centers, sizes, distance)["davies_bouldin"]
    return (max(float(silhouette_score(Xm, codes)), 0.0) + 1.0 / (1.0 + db)) / 2


def structureless(X: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of X without its structure: columns permuted independently, or Gaussian rows with
    X's mean and covariance."""
    if kind == "permuted":
        return np.column_stack([rng.permutation(column) for column in X.T])
    centred = X - X.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    scale = singular / np.sqrt(max(len(X) - 1, 1))
    return (rng.standard_normal((len(X), len(scale))) * scale) @ vt + X.mean(0)


def reference_geometry(X: np.ndarray, k: int, kind: str, seed: int, repeats: int = REFERENCES) -> tuple[float, float]:
    """Mean and spread of the geometry of k-means with k clusters on structureless copies of X."""
    rng = np.random.default_rng(seed)
    values = []
    for r in range(repeats):
        reference = structureless(X.astype(np.float64), kind, rng)
        values.append(geometry(reference, KMeans(k, n_init=2, random_state=seed + r).fit_predict(reference)))
    return float(np.mean(values)), float(np.std(values))


def resampled_geometry(X: np.ndarray, labels: np.ndarray, seed: int, repeats: int = BOOTSTRAPS) -> tuple[float, float]:
    """The geometry on all rows of X, and its spread over resamples of ``RESAMPLE_SHARE`` of them."""
    rng = np.random.default_rng(seed)
    size = int(RESAMPLE_SHARE * len(X))
    values = [geometry(X[pick], labels[pick])
              for pick in (np.sort(rng.choice(len(X), size=size, replace=False)) for _ in range(repeats))]
    return geometry(X, labels), float(np.nanstd(values))


def excess(X: np.ndarray, labels: np.ndarray, kind: str, seed: int, references: int = REFERENCES,
           bootstraps: int = BOOTSTRAPS) -> dict[str, float]:
    """geometry, reference, excess and its spread of ``labels`` (rows of X) against ``kind``."""
    return least_excess(X, labels, (kind,), seed, references, bootstraps)


def least_excess(X: np.ndarray, labels: np.ndarray, kinds: tuple[str, ...], seed: int,
                 references: int = REFERENCES, bootstraps: int = BOOTSTRAPS) -> dict[str, float]:
    """:func:`excess` against the reference of ``kinds`` that explains most of the geometry: the
    structure beyond every one of them (the observed geometry is measured once)."""
    k = len(np.unique(labels[labels >= 0]))
    if k < 2:
        return {"geometry": np.nan, "reference": np.nan, "excess": 0.0, "excess_std": 0.0}
    observed, observed_std = resampled_geometry(X, labels, seed, bootstraps)
    reference, reference_std = max(reference_geometry(X, k, kind, seed, references) for kind in kinds)
    room = max(1.0 - reference, 1e-9)
    return {"geometry": observed, "reference": reference, "excess": (observed - reference) / room,
            "excess_std": float(np.hypot(observed_std, reference_std) / room)}


def agreement(labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Each clustering's mean AMI with the others (noise rows count as one more cluster)."""
    names = list(labels)
    if len(names) < 2:
        return {n: np.nan for n in names}
    pair = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pair[a, b] = pair[b, a] = float(adjusted_mutual_info_score(labels[a], labels[b]))
    return {a: float(np.mean([pair[a, b] for b in names if b != a])) for a in names}


def resampled_agreement(labels: dict[str, np.ndarray], seed: int,
                        repeats: int = BOOTSTRAPS) -> dict[str, tuple[float, float]]:
    """Each clustering's mean AMI with the others on all rows, and its spread over resamples of
    ``RESAMPLE_SHARE`` of the rows."""
    rng = np.random.default_rng(seed)
    rows = len(next(iter(labels.values())))
    size = int(RESAMPLE_SHARE * rows)
    draws = [agreement({n: lab[pick] for n, lab in labels.items()})
             for pick in (np.sort(rng.choice(rows, size=size, replace=False)) for _ in range(repeats))]
    full = agreement(labels)
    return {n: (full[n], float(np.std([d[n] for d in draws]))) for n in labels}
