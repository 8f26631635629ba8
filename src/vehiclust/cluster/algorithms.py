"""Clustering algorithms behind one interface, and the registry the sweep picks them from.

Every estimator follows scikit-learn's shape: parameters in ``__init__``, ``fit(X)`` sets
``labels_`` (-1 = noise), and those that can place new rows have ``predict``. Each registry
entry (:class:`Algorithm`) adds what the sweep needs to run it at any N:

* ``fit_rows``: how many rows the estimator is fitted on. ``"all"`` for linear-time ones;
  ``"fit"`` (``fit_sample``), ``"quadratic"`` (``quadratic_sample``) or ``"umap"`` (the rows UMAP
  was fitted on) for the rest, because their time or memory grows faster than N;
* ``assign``: how the other rows get a label: ``"predict"`` (the model's own rule: nearest
  centroid, most likely component), ``"centroid"`` (nearest centre of the sample's clusters,
  right for Ward, whose clusters are compact), ``"knn"`` (majority of the 10 nearest fitted rows,
  right for shapes a centre does not describe: average/complete linkage, spectral, density);
* ``grid``: the parameter sets swept, from the k values or from the data size;
* ``path``: optional, one fit that serves the whole grid (a hierarchy cut at every k).

Adding an algorithm is one estimator class and one ``ALGORITHMS`` entry.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vehiclust.cluster.backends import kmeans_lloyd, knn_search, nearest_centroid
from vehiclust.errors import VehiclustError


# -- estimators ------------------------------------------------------------------------------

class KMeans:
    """k-means (Lloyd) with k-means++ seeding, best of ``n_init``; faiss when installed, else
    scikit-learn. ``predict`` is the nearest centre."""

    def __init__(self, n_clusters: int = 8, n_init: int = 3, max_iter: int = 50, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> KMeans:
        self.cluster_centers_, self.inertia_, self.backend_ = kmeans_lloyd(
            X, self.n_clusters, self.n_init, self.max_iter, self.random_state)
        self.labels_ = self.predict(X)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return nearest_centroid(X, self.cluster_centers_)[0]


class GaussianMixture:
    """Gaussian mixture (EM, k-means initialised). ``covariance="auto"``: full covariances up to
    16 dimensions (UMAP spaces, where clusters are elongated), diagonal above (a full 64 x 64
    covariance per component costs O(N k D^2) per iteration and overfits small clusters)."""

    def __init__(self, n_clusters: int = 8, covariance: str = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.covariance = covariance
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> GaussianMixture:
        from sklearn.mixture import GaussianMixture as SkGMM

        cov = self.covariance if self.covariance != "auto" else ("full" if X.shape[1] <= 16 else "diag")
        # regularise relative to the data's scale: l2+pca spaces have variances around 1e-3
        reg = 1e-4 * float(np.var(X, axis=0).mean()) + 1e-10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = SkGMM(n_components=self.n_clusters, covariance_type=cov, reg_covar=reg,
                                max_iter=200, random_state=self.random_state).fit(X)
        self.covariance_type_ = cov
        self.labels_ = self.predict(X)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X), dtype=np.int64)
        for start in range(0, len(X), 65536):
            out[start:start + 65536] = self.model_.predict(X[start:start + 65536])
        return out


class Agglomerative:
    """Hierarchical clustering (scipy's linkage: ward, average, complete, single), cut at
    ``n_clusters``. O(N^2) memory and time: the sweep fits it on a sample. One tree serves every
    k (``fit_tree`` + ``cut``)."""

    def __init__(self, n_clusters: int = 8, linkage: str = "ward"):
        self.n_clusters = n_clusters
        self.linkage = linkage

    def fit_tree(self, X: np.ndarray) -> Agglomerative:
        from scipy.cluster.hierarchy import linkage

        self.tree_ = linkage(np.asarray(X, dtype=np.float64), method=self.linkage)
        return self

    def cut(self, k: int) -> np.ndarray:
        from scipy.cluster.hierarchy import fcluster

        return fcluster(self.tree_, t=k, criterion="maxclust").astype(np.int64) - 1

    def fit(self, X: np.ndarray) -> Agglomerative:
        self.labels_ = self.fit_tree(X).cut(self.n_clusters)
        return self


class MiniBatchKMeans:
    """scikit-learn's mini-batch k-means: one pass over batches, for N too large for Lloyd."""

    def __init__(self, n_clusters: int = 8, random_state: int = 0):
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> MiniBatchKMeans:
        from sklearn.cluster import MiniBatchKMeans as SkMBK

        self.model_ = SkMBK(n_clusters=self.n_clusters, batch_size=4096, n_init=3,
                            random_state=self.random_state).fit(X)
        self.cluster_centers_ = self.model_.cluster_centers_
        self.labels_ = self.predict(X)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return nearest_centroid(X, self.cluster_centers_)[0]


class BisectingKMeans:
    """scikit-learn's bisecting k-means (splits the cluster with the largest inertia)."""

    def __init__(self, n_clusters: int = 8, random_state: int = 0):
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> BisectingKMeans:
        from sklearn.cluster import BisectingKMeans as SkBKM

        self.model_ = SkBKM(n_clusters=self.n_clusters, bisecting_strategy="largest_cluster",
                            random_state=self.random_state).fit(X)
        self.labels_ = self.model_.labels_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate([self.model_.predict(X[s:s + 65536]) for s in range(0, len(X), 65536)])


class Birch:
    """BIRCH: a CF-tree of subclusters, then agglomerative clustering of the subclusters into k.
    ``threshold="auto"``: the median distance of a row to its nearest neighbour, so the tree
    has roughly one subcluster per few rows whatever the scale of the space."""

    def __init__(self, n_clusters: int = 8, threshold: float | str = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> Birch:
        from sklearn.cluster import Birch as SkBirch

        threshold = self.threshold
        if threshold == "auto":
            probe = X[np.random.default_rng(self.random_state).choice(len(X), min(len(X), 2000), replace=False)]
            threshold = float(np.median(knn_search(probe, probe, 2)[0][:, 1])) or 1e-3
        self.threshold_ = threshold
        self.model_ = SkBirch(n_clusters=self.n_clusters, threshold=threshold).fit(X)
        self.labels_ = self.model_.labels_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate([self.model_.predict(X[s:s + 65536]) for s in range(0, len(X), 65536)])


class HDBSCAN:
    """HDBSCAN (fast_hdbscan, else scikit-learn's). It finds clusters of any shape and density
    and calls the rest noise; it is not told k. ``min_cluster_size`` is the smallest group worth
    calling a cluster; ``min_samples`` how conservative the density estimate is (larger: more
    noise). Works in a few dimensions (UMAP), not in hundreds."""

    def __init__(self, min_cluster_size: int = 50, min_samples: int | None = 10):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples

    def fit(self, X: np.ndarray) -> HDBSCAN:
        X = np.ascontiguousarray(X, dtype=np.float64)
        min_samples = min(self.min_samples or self.min_cluster_size, len(X) - 1)
        if importlib.util.find_spec("fast_hdbscan") is not None:
            import fast_hdbscan

            self.backend_ = "fast_hdbscan"
            model = fast_hdbscan.HDBSCAN(min_cluster_size=self.min_cluster_size, min_samples=min_samples)
        else:
            from sklearn.cluster import HDBSCAN as SkHDBSCAN

            self.backend_ = "sklearn"
            model = SkHDBSCAN(min_cluster_size=self.min_cluster_size, min_samples=min_samples)
        self.labels_ = np.asarray(model.fit(X).labels_, dtype=np.int64)
        return self


def kdistance_knee(X: np.ndarray, k: int) -> float:
    """The knee of the sorted distances to the k-th neighbour: the point of the curve farthest
    from the chord between its ends (both axes scaled to [0, 1]). Rows left of the knee sit in
    dense regions; DBSCAN's ``eps`` there separates them from the sparse rest."""
    dist = np.sort(knn_search(X, X, k + 1)[0][:, -1])
    if dist[-1] <= dist[0]:
        return float(dist[-1]) or 1e-6
    x = np.linspace(0, 1, len(dist))
    y = (dist - dist[0]) / (dist[-1] - dist[0])
    return float(dist[int(np.argmax(x - y))])


class DBSCAN:
    """DBSCAN with ``eps="knee"``: eps from the k-distance curve (:func:`kdistance_knee`) times
    ``eps_scale``, so the grid is data-driven rather than in units of the space."""

    def __init__(self, eps: float | str = "knee", eps_scale: float = 1.0, min_samples: int = 10):
        self.eps = eps
        self.eps_scale = eps_scale
        self.min_samples = min_samples

    def fit(self, X: np.ndarray) -> DBSCAN:
        from sklearn.cluster import DBSCAN as SkDBSCAN

        base = kdistance_knee(X, self.min_samples) if self.eps == "knee" else float(self.eps)
        self.eps_ = base * self.eps_scale
        self.labels_ = SkDBSCAN(eps=self.eps_, min_samples=self.min_samples).fit(X).labels_.astype(np.int64)
        return self


class OPTICS:
    """OPTICS with the xi method: DBSCAN over all eps at once. Pure Python in parts: slow, so
    it runs on a small sample. With small ``min_samples`` or ``xi`` the xi method calls the
    flanks of every cluster noise (half of three clean Gaussian blobs at min_samples=10,
    xi=0.05), hence the defaults."""

    def __init__(self, min_samples: int = 20, xi: float = 0.1, min_cluster_size: float = 0.02):
        self.min_samples = min_samples
        self.xi = xi
        self.min_cluster_size = min_cluster_size

    def fit(self, X: np.ndarray) -> OPTICS:
        from sklearn.cluster import OPTICS as SkOPTICS

        self.labels_ = SkOPTICS(min_samples=self.min_samples, xi=self.xi,
                                min_cluster_size=self.min_cluster_size).fit(X).labels_.astype(np.int64)
        return self


class Spectral:
    """Spectral clustering on a k-nearest-neighbour graph (labels by cluster_qr, no k-means
    restarts). Finds non-convex clusters; needs an eigendecomposition of an N x N graph, so
    it runs on a sample."""

    def __init__(self, n_clusters: int = 8, n_neighbors: int = 15, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> Spectral:
        from sklearn.cluster import SpectralClustering

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected"
            model = SpectralClustering(n_clusters=self.n_clusters, affinity="nearest_neighbors",
                                       n_neighbors=min(self.n_neighbors, len(X) - 1), assign_labels="cluster_qr",
                                       random_state=self.random_state)
            self.labels_ = model.fit(X).labels_.astype(np.int64)
        return self


# -- registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridContext:
    ks: list[int]
    n_fit: int
    dims: int


def _k_grid(ctx: GridContext) -> list[dict]:
    return [{"k": k} for k in ctx.ks if k < ctx.n_fit]


DENSITY_MIN_ROWS = 100  # a density estimate from 10 neighbours needs a few hundred rows to mean anything


def _hdbscan_grid(ctx: GridContext) -> list[dict]:
    """Smallest cluster at 0.5%, 1% and 2% of the fitted rows (at least 5 rows)."""
    if ctx.n_fit < DENSITY_MIN_ROWS:
        return []
    sizes = sorted({max(5, int(round(f * ctx.n_fit))) for f in (0.005, 0.01, 0.02)})
    return [{"min_cluster_size": s} for s in sizes]


def _dbscan_grid(ctx: GridContext) -> list[dict]:
    return [{"eps_scale": s} for s in (0.75, 1.0, 1.5)] if ctx.n_fit >= DENSITY_MIN_ROWS else []


def _optics_grid(ctx: GridContext) -> list[dict]:
    return [{"xi": xi} for xi in (0.05, 0.1, 0.2)] if ctx.n_fit >= DENSITY_MIN_ROWS else []


def _tree_path(linkage: str) -> Callable[[np.ndarray, list[dict], int], list[np.ndarray]]:
    def path(X: np.ndarray, grid: list[dict], seed: int) -> list[np.ndarray]:
        tree = Agglomerative(linkage=linkage).fit_tree(X)
        return [tree.cut(p["k"]) for p in grid]

    return path


@dataclass(frozen=True)
class Algorithm:
    """One registry entry: how to build the estimator and how the sweep runs it at scale."""

    name: str
    make: Callable[[dict, int], object]  # (params, seed) -> unfitted estimator
    grid: Callable[[GridContext], list[dict]]
    fit_rows: str = "all"  # "all" | "fit" | "quadratic" | "umap"
    assign: str = "predict"  # "predict" | "centroid" | "knn"
    noise: bool = False
    max_dims: int | None = None  # density-based: only in low-dimensional spaces
    max_fit_rows: int | None = None  # a hard cap on top of fit_rows
    path: Callable[[np.ndarray, list[dict], int], list[np.ndarray]] | None = None

    @property
    def takes_k(self) -> bool:
        return self.grid is _k_grid


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in [
    Algorithm("kmeans", lambda p, s: KMeans(p["k"], random_state=s), _k_grid, fit_rows="fit"),
    Algorithm("minibatch_kmeans", lambda p, s: MiniBatchKMeans(p["k"], random_state=s), _k_grid),
    Algorithm("bisecting_kmeans", lambda p, s: BisectingKMeans(p["k"], random_state=s), _k_grid, fit_rows="fit"),
    Algorithm("gmm", lambda p, s: GaussianMixture(p["k"], random_state=s), _k_grid, fit_rows="fit",
              max_fit_rows=50_000),
    Algorithm("ward", lambda p, s: Agglomerative(p["k"], "ward"), _k_grid, fit_rows="quadratic",
              assign="centroid", path=_tree_path("ward")),
    Algorithm("average", lambda p, s: Agglomerative(p["k"], "average"), _k_grid, fit_rows="quadratic",
              assign="knn", path=_tree_path("average")),
    Algorithm("complete", lambda p, s: Agglomerative(p["k"], "complete"), _k_grid, fit_rows="quadratic",
              assign="knn", path=_tree_path("complete")),
    Algorithm("birch", lambda p, s: Birch(p["k"], random_state=s), _k_grid, fit_rows="fit", max_fit_rows=50_000),
    Algorithm("spectral", lambda p, s: Spectral(p["k"], random_state=s), _k_grid, fit_rows="quadratic",
              assign="knn", max_fit_rows=3000),
    Algorithm("hdbscan", lambda p, s: HDBSCAN(p["min_cluster_size"]), _hdbscan_grid, fit_rows="umap",
              assign="knn", noise=True, max_dims=16),
    Algorithm("dbscan", lambda p, s: DBSCAN(eps_scale=p["eps_scale"]), _dbscan_grid, fit_rows="quadratic",
              assign="knn", noise=True, max_dims=16),
    Algorithm("optics", lambda p, s: OPTICS(xi=p["xi"]), _optics_grid, fit_rows="quadratic", assign="knn",
              noise=True, max_dims=16, max_fit_rows=5000),
]}


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise VehiclustError(f"unknown clustering algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def format_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())
