"""Clustering algorithms: scikit-learn estimators, each registered in ``ALGORITHMS`` with a spec
that declares every option and role the sweep reads.

Every estimator derives from scikit-learn's ``BaseEstimator`` and ``ClusterMixin``: parameters
in ``__init__`` (so ``get_params``/``set_params``/``clone`` work), ``fit(X)`` sets ``labels_``
(-1 = noise), those that can place new rows have ``predict``; inputs are checked with
``sklearn.utils.validation``. The names end in ``Clusterer`` so that none shadows scikit-learn's.

The spec (:class:`AlgorithmSpec`) adds what the sweep needs to run the estimator at any N:

* ``fit_rows``: how many rows the estimator is fitted on. ``"all"`` for linear-time ones;
  ``"fit"`` (``fit_sample``), ``"quadratic"`` (``quadratic_sample``) or ``"umap"`` (the rows UMAP
  was fitted on) for the rest, because their time or memory grows faster than N;
  ``max_fit_rows`` caps it further;
* ``assign``: how the other rows get a label: ``"predict"`` (the model's own rule: nearest
  centroid, most likely component), ``"centroid"`` (nearest centre of the sample's clusters,
  right for Ward, whose clusters are compact), ``"knn"`` (majority of the 10 nearest fitted rows,
  right for shapes a centre does not describe: average/complete linkage, spectral, density);
* ``grid``: the parameter sets swept, from the k values or from the data size (``takes_k``:
  the grid is the k grid, and ``k`` is passed as ``n_clusters``);
* ``noise``: whether it may call rows noise (-1); ``max_dims``: only in spaces this narrow;
* ``path``: one fit serves the whole grid (a hierarchy cut at every k: ``fit_path``);
* ``backend``, ``needs_graph``, ``fixed``: what it runs on, whether it builds a neighbour graph,
  constructor parameters fixed by the entry (the linkage of ``ward``/``average``/``complete``).

Adding an algorithm is one estimator class with its ``@ALGORITHMS.add(...)`` line, here.
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from vehiclust.cluster.backends import kmeans_lloyd, knn_search, nearest_centroid
from vehiclust.registry import Registry

PREDICT_CHUNK = 65536
DENSITY_MIN_ROWS = 100  # a density estimate from 10 neighbours needs a few hundred rows to mean anything
FLOATS = (np.float32, np.float64)  # kept as given: the spaces are float32, and copies cost memory


@dataclass(frozen=True)
class GridContext:
    ks: list[int]
    n_fit: int
    dims: int


def k_param_grid(ctx: GridContext) -> list[dict]:
    return [{"k": k} for k in ctx.ks if k < ctx.n_fit]


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


@dataclass(frozen=True)
class AlgorithmSpec:
    """One registry entry: how to build the estimator and how the sweep runs it at scale."""

    name: str
    factory: type  # the estimator class
    summary: str
    grid: Callable[[GridContext], list[dict]] = k_param_grid
    takes_k: bool = True
    noise: bool = False
    fit_rows: str = "all"  # "all" | "fit" | "quadratic" | "umap"
    assign: str = "predict"  # "predict" | "centroid" | "knn"
    max_dims: int | None = None  # density-based: only in low-dimensional spaces
    max_fit_rows: int | None = None  # a hard cap on top of fit_rows
    path: bool = False  # one fit_path serves the whole grid
    backend: str = "scikit-learn"
    needs_graph: bool = False
    fixed: dict = field(default_factory=dict)  # constructor parameters fixed by this entry

    @property
    def seeded(self) -> bool:
        return "random_state" in inspect.signature(self.factory).parameters

    def make(self, params: dict, seed: int) -> BaseEstimator:
        """The unfitted estimator for one parameter set of the grid (``k`` -> ``n_clusters``)."""
        kwargs = {("n_clusters" if key == "k" else key): value for key, value in params.items()}
        if self.seeded:
            kwargs["random_state"] = seed
        return self.factory(**self.fixed, **kwargs)

    def reseeded(self, estimator: BaseEstimator, seed: int) -> BaseEstimator:
        """A clone of ``estimator`` (unfitted, same parameters) with another seed."""
        from sklearn.base import clone

        copy = clone(estimator)
        return copy.set_params(random_state=seed) if self.seeded else copy


ALGORITHMS: Registry[AlgorithmSpec] = Registry("clustering algorithm", AlgorithmSpec)


def get_algorithm(name: str) -> AlgorithmSpec:
    return ALGORITHMS.get(name)


def format_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _predict_in_chunks(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(predict(X[s:s + PREDICT_CHUNK]), dtype=np.int64)
                           for s in range(0, len(X), PREDICT_CHUNK)])


# -- estimators ------------------------------------------------------------------------------

class NearestCentrePredict:
    """``predict``: the nearest of ``cluster_centers_``."""

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "cluster_centers_")
        return nearest_centroid(validate_data(self, X, dtype=FLOATS, reset=False), self.cluster_centers_)[0]


class ModelPredict:
    """``predict``: the wrapped scikit-learn ``model_``'s, chunk by chunk."""

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return _predict_in_chunks(self.model_.predict, validate_data(self, X, dtype=FLOATS, reset=False))


class SeededKClusterer(ClusterMixin, BaseEstimator):
    """Parameters of the wrappers that take only k and a seed."""

    def __init__(self, n_clusters: int = 8, random_state: int = 0):
        self.n_clusters = n_clusters
        self.random_state = random_state


@ALGORITHMS.add("kmeans", summary="k-means (Lloyd, k-means++ seeding; faiss when installed)", fit_rows="fit",
                backend="faiss, else scikit-learn")
class KMeansClusterer(NearestCentrePredict, ClusterMixin, BaseEstimator):
    """k-means (Lloyd) with k-means++ seeding, best of ``n_init``; faiss when installed, else
    scikit-learn. ``predict`` is the nearest centre."""

    def __init__(self, n_clusters: int = 8, n_init: int = 3, max_iter: int = 50, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y=None) -> KMeansClusterer:
        X = validate_data(self, X, dtype=FLOATS)
        self.cluster_centers_, self.inertia_, self.backend_ = kmeans_lloyd(
            X, self.n_clusters, self.n_init, self.max_iter, self.random_state)
        self.labels_ = self.predict(X)
        return self


@ALGORITHMS.add("minibatch_kmeans", summary="mini-batch k-means (one pass over batches, for very large N)")
class MiniBatchKMeansClusterer(NearestCentrePredict, SeededKClusterer):
    """scikit-learn's mini-batch k-means: one pass over batches, for N too large for Lloyd."""

    def fit(self, X, y=None) -> MiniBatchKMeansClusterer:
        from sklearn.cluster import MiniBatchKMeans

        X = validate_data(self, X, dtype=FLOATS)
        self.model_ = MiniBatchKMeans(n_clusters=self.n_clusters, batch_size=4096, n_init=3,
                                      random_state=self.random_state).fit(X)
        self.cluster_centers_ = self.model_.cluster_centers_
        self.labels_ = self.predict(X)
        return self


@ALGORITHMS.add("bisecting_kmeans", summary="bisecting k-means (splits the cluster with the largest inertia)",
                fit_rows="fit")
class BisectingKMeansClusterer(ModelPredict, SeededKClusterer):
    """scikit-learn's bisecting k-means (splits the cluster with the largest inertia)."""

    def fit(self, X, y=None) -> BisectingKMeansClusterer:
        from sklearn.cluster import BisectingKMeans

        X = validate_data(self, X, dtype=FLOATS)
        self.model_ = BisectingKMeans(n_clusters=self.n_clusters, bisecting_strategy="largest_cluster",
                                      random_state=self.random_state).fit(X)
        self.labels_ = self.model_.labels_
        return self


@ALGORITHMS.add("gmm", summary="Gaussian mixture (EM; full covariances up to 16 dims, diagonal above)",
                fit_rows="fit", max_fit_rows=50_000)
class GaussianMixtureClusterer(ModelPredict, ClusterMixin, BaseEstimator):
    """Gaussian mixture (EM, k-means initialised). ``covariance="auto"``: full covariances up to
    16 dimensions (UMAP spaces, where clusters are elongated), diagonal above (a full 64 x 64
    covariance per component costs O(N k D^2) per iteration and overfits small clusters)."""

    def __init__(self, n_clusters: int = 8, covariance: str = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.covariance = covariance
        self.random_state = random_state

    def fit(self, X, y=None) -> GaussianMixtureClusterer:
        from sklearn.mixture import GaussianMixture

        X = validate_data(self, X, dtype=FLOATS)
        cov = self.covariance if self.covariance != "auto" else ("full" if X.shape[1] <= 16 else "diag")
        # regularise relative to the data's scale: l2+pca spaces have variances around 1e-3
        reg = 1e-4 * float(np.var(X, axis=0).mean()) + 1e-10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = GaussianMixture(n_components=self.n_clusters, covariance_type=cov, reg_covar=reg,
                                          max_iter=200, random_state=self.random_state).fit(X)
        self.covariance_type_ = cov
        self.labels_ = self.predict(X)
        return self


@ALGORITHMS.add("complete", summary="complete-linkage hierarchy cut at k", fit_rows="quadratic", assign="knn",
                path=True, backend="fastcluster", fixed={"linkage": "complete"})
@ALGORITHMS.add("average", summary="average-linkage hierarchy cut at k", fit_rows="quadratic", assign="knn",
                path=True, backend="fastcluster", fixed={"linkage": "average"})
@ALGORITHMS.add("ward", summary="Ward hierarchy cut at k (one tree serves every k)", fit_rows="quadratic",
                assign="centroid", path=True, backend="fastcluster", fixed={"linkage": "ward"})
class LinkageClusterer(ClusterMixin, BaseEstimator):
    """Hierarchical clustering (ward, average, complete, single linkage), cut at ``n_clusters``.
    O(N^2) time (and memory, but for Ward on few dimensions): the sweep fits it on a sample. One
    tree serves every k (:meth:`fit_path`)."""

    def __init__(self, n_clusters: int = 8, linkage: str = "ward"):
        self.n_clusters = n_clusters
        self.linkage = linkage

    def fit_tree(self, X) -> LinkageClusterer:
        X = validate_data(self, X, dtype=FLOATS, ensure_min_samples=2)
        self.tree_ = linkage_tree(np.asarray(X, dtype=np.float64), self.linkage)
        return self

    def cut(self, k: int) -> np.ndarray:
        from scipy.cluster.hierarchy import fcluster

        check_is_fitted(self, "tree_")
        return fcluster(self.tree_, t=k, criterion="maxclust").astype(np.int64) - 1

    def fit(self, X, y=None) -> LinkageClusterer:
        self.labels_ = self.fit_tree(X).cut(self.n_clusters)
        return self

    def fit_path(self, X, ks: list[int]) -> list[np.ndarray]:
        """Labels at every k of ``ks`` from one tree."""
        self.fit_tree(X)
        return [self.cut(k) for k in ks]


WARD_VECTOR_MAX_DIMS = 24  # measured: up to here the vector variant is the faster one (7x at 8 dims)


def linkage_tree(X: np.ndarray, method: str) -> np.ndarray:
    """scipy's linkage matrix of ``X`` (Euclidean), computed by fastcluster, whose algorithms
    scipy's own are (Müllner 2011) but run 2x faster here on 5,000 rows; for Ward on few
    dimensions its vector variant, which needs no distance matrix, 7x faster at 8 dimensions."""
    import fastcluster

    if method == "ward" and X.shape[1] <= WARD_VECTOR_MAX_DIMS:
        return fastcluster.linkage_vector(X, method="ward")
    return fastcluster.linkage(X, method=method, preserve_input=True)


@ALGORITHMS.add("birch", summary="BIRCH (a CF-tree of subclusters, merged into k)", fit_rows="fit",
                max_fit_rows=50_000)
class BirchClusterer(ModelPredict, ClusterMixin, BaseEstimator):
    """BIRCH: a CF-tree of subclusters, then agglomerative clustering of the subclusters into k.
    ``threshold="auto"``: the median distance of a row to its nearest neighbour, so the tree
    has roughly one subcluster per few rows whatever the scale of the space."""

    def __init__(self, n_clusters: int = 8, threshold: float | str = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, X, y=None) -> BirchClusterer:
        from sklearn.cluster import Birch

        X = validate_data(self, X, dtype=FLOATS, ensure_min_samples=2)
        threshold = self.threshold
        if threshold == "auto":
            probe = X[np.random.default_rng(self.random_state).choice(len(X), min(len(X), 2000), replace=False)]
            threshold = float(np.median(knn_search(probe, probe, 2)[0][:, 1])) or 1e-3
        self.threshold_ = threshold
        self.model_ = Birch(n_clusters=self.n_clusters, threshold=threshold).fit(X)
        self.labels_ = self.model_.labels_
        return self


@ALGORITHMS.add("spectral", summary="spectral clustering on a k-NN graph (cluster_qr labels)",
                fit_rows="quadratic", assign="knn", max_fit_rows=3000, needs_graph=True)
class SpectralClusterer(ClusterMixin, BaseEstimator):
    """Spectral clustering on a k-nearest-neighbour graph (labels by cluster_qr, no k-means
    restarts). Finds non-convex clusters; needs an eigendecomposition of an N x N graph, so
    it runs on a sample."""

    def __init__(self, n_clusters: int = 8, n_neighbors: int = 15, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X, y=None) -> SpectralClusterer:
        from sklearn.cluster import SpectralClustering

        X = validate_data(self, X, dtype=FLOATS, ensure_min_samples=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected"
            model = SpectralClustering(n_clusters=self.n_clusters, affinity="nearest_neighbors",
                                       n_neighbors=min(self.n_neighbors, len(X) - 1), assign_labels="cluster_qr",
                                       random_state=self.random_state)
            self.labels_ = model.fit(X).labels_.astype(np.int64)
        return self


@ALGORITHMS.add("hdbscan", summary="HDBSCAN (density; not told k; calls the rest noise)", grid=_hdbscan_grid,
                takes_k=False, noise=True, fit_rows="umap", assign="knn", max_dims=16,
                backend="fast_hdbscan, else scikit-learn", needs_graph=True)
class HDBSCANClusterer(ClusterMixin, BaseEstimator):
    """HDBSCAN (fast_hdbscan, else scikit-learn's). It finds clusters of any shape and density
    and calls the rest noise; it is not told k. ``min_cluster_size`` is the smallest group worth
    calling a cluster; ``min_samples`` how conservative the density estimate is (larger: more
    noise). Works in a few dimensions (UMAP), not in hundreds."""

    def __init__(self, min_cluster_size: int = 50, min_samples: int | None = 10):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples

    def fit(self, X, y=None) -> HDBSCANClusterer:
        X = np.ascontiguousarray(validate_data(self, X, dtype=FLOATS, ensure_min_samples=2), dtype=np.float64)
        min_samples = min(self.min_samples or self.min_cluster_size, len(X) - 1)
        if importlib.util.find_spec("fast_hdbscan") is not None:
            import fast_hdbscan

            self.backend_ = "fast_hdbscan"
            model = fast_hdbscan.HDBSCAN(min_cluster_size=self.min_cluster_size, min_samples=min_samples)
        else:
            from sklearn.cluster import HDBSCAN

            self.backend_ = "sklearn"
            model = HDBSCAN(min_cluster_size=self.min_cluster_size, min_samples=min_samples)
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


@ALGORITHMS.add("dbscan", summary="DBSCAN with eps from the k-distance knee", grid=_dbscan_grid, takes_k=False,
                noise=True, fit_rows="quadratic", assign="knn", max_dims=16, needs_graph=True)
class KneeDBSCANClusterer(ClusterMixin, BaseEstimator):
    """DBSCAN with ``eps="knee"``: eps from the k-distance curve (:func:`kdistance_knee`) times
    ``eps_scale``, so the grid is data-driven rather than in units of the space."""

    def __init__(self, eps: float | str = "knee", eps_scale: float = 1.0, min_samples: int = 10):
        self.eps = eps
        self.eps_scale = eps_scale
        self.min_samples = min_samples

    def fit(self, X, y=None) -> KneeDBSCANClusterer:
        from sklearn.cluster import DBSCAN

        X = validate_data(self, X, dtype=FLOATS)
        base = kdistance_knee(X, self.min_samples) if self.eps == "knee" else float(self.eps)
        self.eps_ = base * self.eps_scale
        self.labels_ = DBSCAN(eps=self.eps_, min_samples=self.min_samples).fit(X).labels_.astype(np.int64)
        return self


@ALGORITHMS.add("optics", summary="OPTICS with the xi method (DBSCAN over all eps; slow, small sample)",
                grid=_optics_grid, takes_k=False, noise=True, fit_rows="quadratic", assign="knn", max_dims=16,
                max_fit_rows=5000, needs_graph=True)
class OPTICSClusterer(ClusterMixin, BaseEstimator):
    """OPTICS with the xi method: DBSCAN over all eps at once. Pure Python in parts: slow, so
    it runs on a small sample. With small ``min_samples`` or ``xi`` the xi method calls the
    flanks of every cluster noise (half of three clean Gaussian blobs at min_samples=10,
    xi=0.05), hence the defaults."""

    def __init__(self, min_samples: int = 20, xi: float = 0.1, min_cluster_size: float = 0.02):
        self.min_samples = min_samples
        self.xi = xi
        self.min_cluster_size = min_cluster_size

    def fit(self, X, y=None) -> OPTICSClusterer:
        from sklearn.cluster import OPTICS

        X = validate_data(self, X, dtype=FLOATS, ensure_min_samples=2)
        self.labels_ = OPTICS(min_samples=self.min_samples, xi=self.xi,
                              min_cluster_size=self.min_cluster_size).fit(X).labels_.astype(np.int64)
        return self
