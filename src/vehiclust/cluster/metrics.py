"""Metrics of one clustering. Nothing here is quadratic in N.

* Calinski-Harabasz and Davies-Bouldin come from the cluster centres in one O(N x D) pass
  (same definitions as scikit-learn's, which would also be O(N x D) but recompute the centres).
* The silhouette needs all pairwise distances, so it runs on ``repeats`` random samples and
  reports its mean and spread.
* Size balance, noise share: counts.
* Label checks (ARI, NMI, purity against a label column; identity consistency of images of the
  same vehicle) come from contingency tables, O(N log N). They are *checks*: the selection rule
  never reads them unless asked to.

Noise (label -1 of the density-based algorithms) is left out of the geometric metrics, which
describe the clusters that exist; the selection rule charges for it separately (coverage).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

NAN = float("nan")
BLOCK_ROWS = 65536  # rows per block of the passes over all rows


def cluster_geometry(X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (mean of members), sizes and each row's distance to its own centre (NaN for noise)."""
    member = labels >= 0
    k = int(labels.max()) + 1 if member.any() else 0
    sizes = np.bincount(labels[member], minlength=k)
    centers = np.zeros((k, X.shape[1]), dtype=np.float64)
    for start in range(0, len(X), 65536):
        block, lab = X[start:start + 65536], labels[start:start + 65536]
        keep = lab >= 0
        _accumulate(centers, block[keep], lab[keep], k)
    centers /= np.maximum(sizes, 1)[:, None]
    distance = np.full(len(X), np.nan, dtype=np.float32)
    for start in range(0, len(X), 65536):
        block, lab = X[start:start + 65536], labels[start:start + 65536]
        keep = np.flatnonzero(lab >= 0)
        diff = block[keep].astype(np.float32) - centers[lab[keep]].astype(np.float32)
        distance[start + keep] = np.sqrt((diff * diff).sum(1))
    return centers.astype(np.float32), sizes, distance


def _accumulate(centers: np.ndarray, block: np.ndarray, lab: np.ndarray, k: int) -> None:
    """Per-cluster sums as one sparse-times-dense product (np.add.at is slow on many rows)."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(k, len(lab)))
    centers += onehot @ block.astype(np.float64)


def internal_metrics(X: np.ndarray, labels: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                     distance: np.ndarray) -> dict[str, float]:
    """CH, DB and size statistics of the clustered (non-noise) rows, from the centres and each
    row's distance to its own centre (as :func:`cluster_geometry` gives them)."""
    member = labels >= 0
    d = distance[member].astype(np.float64)
    spread = np.column_stack([np.bincount(labels[member], weights=d, minlength=len(sizes)),
                              np.bincount(labels[member], weights=d * d, minlength=len(sizes))])
    return metrics_from_sums(len(labels), sizes, centers, spread)


def clustering_metrics(X: np.ndarray, labels: np.ndarray, executor=None, block_rows: int = BLOCK_ROWS
                       ) -> dict[str, float]:
    """:func:`internal_metrics` of ``labels`` over every row of ``X`` from per-cluster sums
    added block by block: in this process (the local executor), or as a sharded map over the
    rows written once for the workers to memory-map, so that no worker holds every row."""
    if executor is not None and executor.kind != "local":
        from vehiclust.executor.rows import measure_rows

        return measure_rows(X, labels, executor, block_rows)
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    blocks = [(X[start:start + block_rows], labels[start:start + block_rows]) for start in range(0, len(X), block_rows)]
    counts = sum((label_sums(block, lab, k) for block, lab in blocks), np.zeros((k, X.shape[1] + 1)))
    sizes, centres = centres_from_sums(counts)
    spread = sum((distance_sums(block, lab, centres) for block, lab in blocks), np.zeros((k, 2)))
    return metrics_from_sums(len(labels), sizes, centres, spread)


def label_sums(block: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, 1 + d): each cluster's member count and the sum of its members' rows in ``block``
    (noise left out); shards' sums add up to those of all rows."""
    keep = labels >= 0
    out = np.zeros((k, block.shape[1] + 1), dtype=np.float64)
    out[:, 0] = np.bincount(labels[keep], minlength=k)
    sums = out[:, 1:]  # a view: _accumulate adds into it
    _accumulate(sums, np.asarray(block)[keep], labels[keep], k)
    return out


def centres_from_sums(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes (int) and centres (float64) from the added :func:`label_sums`."""
    sizes = counts[:, 0].astype(np.int64)
    return sizes, counts[:, 1:] / np.maximum(sizes, 1)[:, None]


def distance_sums(block: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(k, 2): per cluster, the sum of its members' Euclidean distances to the centre (DB) and
    of their squares (CH's within-cluster dispersion). DB's mean distance is not a function of
    sums and sums of squares of the rows, hence this second pass once the centres are known."""
    keep = np.flatnonzero(labels >= 0)
    lab = labels[keep]
    diff = np.asarray(block)[keep].astype(np.float64) - centres[lab]
    squared = (diff * diff).sum(1)
    k = len(centres)
    return np.column_stack([np.bincount(lab, weights=np.sqrt(squared), minlength=k),
                            np.bincount(lab, weights=squared, minlength=k)])


def metrics_from_sums(n_rows: int, sizes: np.ndarray, centres: np.ndarray, spread: np.ndarray) -> dict[str, float]:
    """CH, DB and size statistics from per-cluster sizes, centres and ``spread`` (per cluster:
    the sum of distances to the centre and of their squares); ``n_rows`` counts noise too.
    Same definitions as scikit-learn's calinski_harabasz_score and davies_bouldin_score."""
    n, k = int(sizes.sum()), int((sizes > 0).sum())
    share = sizes[sizes > 0] / max(n, 1)
    out = {
        "n_clusters": k,
        "noise_share": float(1 - n / max(n_rows, 1)),
        "min_cluster_share": float(share.min()) if k else NAN,
        "max_cluster_share": float(share.max()) if k else NAN,
        # 1 = all clusters the same size, 0 = everything in one cluster
        "size_balance": float(-(share * np.log(share)).sum() / np.log(k)) if k > 1 else 0.0,
        "calinski_harabasz": NAN,
        "davies_bouldin": NAN,
    }
    if k < 2 or n <= k:
        return out
    live = sizes > 0
    c = centres[live].astype(np.float64)
    overall = (c * sizes[live, None]).sum(0) / n
    between = float((sizes[live] * ((c - overall) ** 2).sum(1)).sum())
    within = float(spread[live, 1].sum())
    out["calinski_harabasz"] = between * (n - k) / (within * (k - 1)) if within > 0 else float("inf")
    scatter = spread[live, 0] / sizes[live]
    gaps = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(gaps, np.inf)
    ratio = (scatter[:, None] + scatter[None, :]) / np.maximum(gaps, 1e-12)
    out["davies_bouldin"] = float(ratio.max(1).mean())
    return out


def silhouette_on_samples(X: np.ndarray, labels: np.ndarray, sample_size: int, repeats: int,
                          seed: int, score: Callable[[np.ndarray, np.ndarray], float] | None = None) -> dict[str, float]:
    """Mean and spread of the silhouette over ``repeats`` samples of the clustered rows.

    O(sample_size^2 x D) each; with all rows fewer than ``sample_size`` it is exact (one pass).
    ``score(idx, labels[idx])``: the silhouette of ``X[idx]`` from a caller that keeps the
    distances across the runs of one space (:meth:`vehiclust.cluster.preprocess.Space.silhouette`).
    """
    many = None if score is None else (lambda idx, labelings: [score(idx, lab) for lab in labelings])
    return silhouettes_on_samples(X, [labels], sample_size, repeats, seed, many)[0]


def silhouettes_on_samples(X: np.ndarray, labelings: list[np.ndarray], sample_size: int, repeats: int, seed: int,
                           score: Callable[[np.ndarray, list[np.ndarray]], list[float]] | None = None,
                           ) -> list[dict[str, float]]:
    """:func:`silhouette_on_samples` of each labeling of the same rows, the same numbers as one
    call each (every labeling draws its samples from the same seed), but the labelings that
    cluster the same rows share their samples, so ``score(idx, [labels[idx], ...])``
    (:meth:`vehiclust.cluster.preprocess.Space.silhouettes`) scores them together."""
    out: list[dict[str, float] | None] = [None] * len(labelings)
    for members, group in _by_members(labelings).items():
        members = np.frombuffer(members, dtype=np.int64)
        size = min(sample_size, len(members))
        exact = size == len(members)
        rng = np.random.default_rng(seed)
        values: dict[int, list[float]] = {i: [] for i in group}
        for _ in range(1 if exact else repeats):
            idx = members if exact else np.sort(rng.choice(members, size=size, replace=False))
            scored = [i for i in group if len(idx) >= 3 and len(np.unique(labelings[i][idx])) >= 2]
            if not scored:
                continue
            sampled = [labelings[i][idx] for i in scored]
            results = score(idx, sampled) if score is not None else \
                [silhouette_score(X[idx], lab) for lab in sampled]
            for i, value in zip(scored, results):
                values[i].append(float(value))
        for i in group:
            out[i] = _silhouette_summary(values[i], size)
    return out


def _by_members(labelings: list[np.ndarray]) -> dict[bytes, list[int]]:
    """Labelings grouped by the rows they cluster (label >= 0), keyed by those rows' bytes."""
    groups: dict[bytes, list[int]] = {}
    for i, labels in enumerate(labelings):
        groups.setdefault(np.flatnonzero(labels >= 0).astype(np.int64).tobytes(), []).append(i)
    return groups


def _silhouette_summary(values: list[float], size: int) -> dict[str, float]:
    return {
        "silhouette": float(np.mean(values)) if values else NAN,
        "silhouette_std": float(np.std(values)) if len(values) > 1 else (0.0 if values else NAN),
        "silhouette_sample": int(size),
        "silhouette_repeats": len(values),
    }


# -- label checks --------------------------------------------------------------------------

def _codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a label column; missing or empty values get -1."""
    series = values.astype("object")
    missing = series.isna() | (series.astype(str).str.strip() == "")
    codes, _ = pd.factorize(series.where(~missing))
    codes[missing.to_numpy()] = -1
    return codes


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense contingency table of two non-negative code arrays (small number of codes)."""
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    return np.bincount(a.astype(np.int64) * nb + b, minlength=na * nb).reshape(na, nb)


def _comb2(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float((x * (x - 1) / 2).sum())


def ari_from_table(table: np.ndarray) -> float:
    n = table.sum()
    if n < 2:
        return NAN
    index, a, b = _comb2(table), _comb2(table.sum(1)), _comb2(table.sum(0))
    expected = a * b / (n * (n - 1) / 2)
    top = (a + b) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def nmi_from_table(table: np.ndarray) -> float:
    """NMI with the arithmetic-mean normalisation (scikit-learn's default)."""
    n = table.sum()
    p = table[table > 0] / n
    pa, pb = table.sum(1) / n, table.sum(0) / n
    ha, hb = -(pa[pa > 0] * np.log(pa[pa > 0])).sum(), -(pb[pb > 0] * np.log(pb[pb > 0])).sum()
    rows, cols = np.nonzero(table)
    mi = float((p * np.log(p / (pa[rows] * pb[cols]))).sum())
    denom = (ha + hb) / 2
    return 1.0 if denom == 0 else float(mi / denom)


class LabelChecks:
    """ARI/NMI/purity per label column and identity consistency per vehicle, for many
    clusterings of the same rows: the label columns are encoded once.

    ``table`` is aligned with the labels that :meth:`__call__` gets (the clustered rows of the
    collection; noise is -1). Missing or empty label values are left out.

    ``identity_consistency``: share of images (of vehicles with at least two images) that sit
    in their vehicle's most common cluster (noise never counts as consistent);
    ``identity_consistency_chance``: the same for the labels shuffled, the level a clustering
    with these cluster sizes reaches by chance.
    """

    def __init__(self, table: pd.DataFrame | None, label_columns: tuple[str, ...], identity_column: str | None,
                 seed: int = 0):
        self.columns: dict[str, np.ndarray] = {}
        self.ids: np.ndarray | None = None
        self.seed = seed
        if table is None:
            return
        for column in label_columns:
            if column in table.columns:
                codes = _codes(table[column])
                if (codes >= 0).sum() >= 2 and len(np.unique(codes[codes >= 0])) >= 2:
                    self.columns[column] = codes
        if identity_column and identity_column in table.columns:
            ids = _codes(table[identity_column])
            sizes = np.bincount(ids[ids >= 0])
            grouped = (ids >= 0) & (sizes[np.maximum(ids, 0)] >= 2) if len(sizes) else ids >= 0
            if grouped.any():
                self.ids = np.where(grouped, ids, -1)

    def __call__(self, labels: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        noise_as_code = labels.astype(np.int64) + 1  # noise is its own "cluster" for ARI/NMI
        for column, codes in self.columns.items():
            known = codes >= 0
            t = contingency(noise_as_code[known], codes[known])
            out[f"ari_{column}"] = ari_from_table(t)
            out[f"nmi_{column}"] = nmi_from_table(t)
            clustered = t[1:]
            out[f"purity_{column}"] = float(clustered.max(1).sum() / max(clustered.sum(), 1)) if len(clustered) else NAN
        if self.ids is not None:
            out["identity_consistency"] = identity_consistency(labels, self.ids)
            shuffled = np.random.default_rng(self.seed).permutation(labels)
            out["identity_consistency_chance"] = identity_consistency(shuffled, self.ids)
        return out


def label_checks(labels: np.ndarray, table: pd.DataFrame, label_columns: tuple[str, ...],
                 identity_column: str | None, seed: int = 0) -> dict[str, float]:
    """:class:`LabelChecks` for one clustering."""
    return LabelChecks(table, label_columns, identity_column, seed)(labels)


def identity_consistency(labels: np.ndarray, ids: np.ndarray) -> float:
    """See :class:`LabelChecks`; ``ids`` is -1 for rows outside a group of two or more."""
    grouped = ids >= 0
    if not grouped.any():
        return NAN
    clustered = grouped & (labels >= 0)
    if not clustered.any():
        return 0.0
    width = int(labels.max()) + 1
    counts = np.bincount(ids[clustered].astype(np.int64) * width + labels[clustered],
                         minlength=(int(ids.max()) + 1) * width).reshape(-1, width)
    return float(counts.max(1).sum() / grouped.sum())
