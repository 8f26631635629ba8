"""Internal metrics of one clustering. Nothing here is quadratic in N: silhouette runs on
samples (and reports its spread), the others are O(N x D)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score


def silhouette_on_samples(X: np.ndarray, labels: np.ndarray, sample_size: int, repeats: int,
                          seed: int) -> tuple[float, float, int]:
    """Mean and standard deviation of the silhouette over ``repeats`` random samples."""
    rng = np.random.default_rng(seed)
    size = min(sample_size, len(X))
    values = []
    for _ in range(repeats if size < len(X) else 1):
        idx = rng.choice(len(X), size=size, replace=False)
        if len(np.unique(labels[idx])) < 2:
            continue
        values.append(silhouette_score(X[idx], labels[idx]))
    if not values:
        return float("nan"), float("nan"), size
    return float(np.mean(values)), float(np.std(values)), size


def internal_metrics(X: np.ndarray, labels: np.ndarray, sample_size: int = 5000, repeats: int = 3,
                     seed: int = 0) -> dict[str, float]:
    n_clusters = len(np.unique(labels))
    if n_clusters < 2:
        return {"calinski_harabasz": float("nan"), "davies_bouldin": float("nan"),
                "silhouette": float("nan"), "silhouette_std": float("nan"),
                "silhouette_sample": 0, "min_cluster_share": 1.0}
    sil, sil_std, sil_n = silhouette_on_samples(X, labels, sample_size, repeats, seed)
    sizes = np.bincount(labels)
    return {
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
        "silhouette": sil,
        "silhouette_std": sil_std,
        "silhouette_sample": int(sil_n),
        "min_cluster_share": float(sizes.min() / sizes.sum()),
    }
