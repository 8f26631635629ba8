"""Numerical kernels with an optional fast backend: faiss when installed, NumPy/scikit-learn
otherwise. Results agree up to floating-point and seeding differences; the backend used is
recorded in runs.csv.

Everything here works on chunks of rows so that a 416k-row query never builds an N x M
distance matrix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator

import numpy as np

CHUNK = 32768
FAISS_MIN_ROWS = 20_000  # below this, faiss's thread start-up costs more than scikit-learn's whole fit


SINGLE_THREAD_BELOW = 50_000  # rows: below this every fit takes milliseconds


def thread_budget(n_rows: int) -> int:
    """Threads worth using: the cores nobody else is using (1 for small inputs).

    OpenMP and BLAS threads spin while they wait for a core; on a shared machine with no core
    to spare that is ruinous: faiss k-means on 100k x 64 took 11.6 s with 2 threads and 0.57 s
    with 1 on a busy 2-core machine (scikit-learn: 3.4 s vs 2.2 s).
    """
    cores = os.cpu_count() or 1
    if n_rows < SINGLE_THREAD_BELOW or cores == 1:
        return 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return int(max(1, min(cores, round(cores - busy + 0.5))))


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """BLAS/OpenMP (threadpoolctl), faiss and numba all at ``n`` threads, restored afterwards."""
    from threadpoolctl import threadpool_limits

    faiss = _module("faiss")
    numba = _module("numba")  # UMAP and fast_hdbscan run on numba's own thread pool
    before = (faiss.omp_get_max_threads() if faiss else None, numba.get_num_threads() if numba else None)
    with threadpool_limits(limits=n):
        if faiss:
            faiss.omp_set_num_threads(n)
        if numba:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            if faiss:
                faiss.omp_set_num_threads(before[0])
            if numba:
                numba.set_num_threads(before[1])


def _module(name: str):
    if name in sys.modules:
        return sys.modules[name]
    return importlib.import_module(name) if importlib.util.find_spec(name) is not None else None


def has_faiss() -> bool:
    return importlib.util.find_spec("faiss") is not None


def as_f32(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)


def nearest_centroid(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre of every row and the (Euclidean) distance to it."""
    centers = as_f32(centers)
    c2 = (centers.astype(np.float64) ** 2).sum(1)
    labels = np.empty(len(X), dtype=np.int64)
    dist = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), CHUNK):
        block = as_f32(X[start:start + CHUNK])
        d2 = c2[None, :] - 2.0 * (block @ centers.T) + (block.astype(np.float64) ** 2).sum(1)[:, None]
        idx = d2.argmin(1)
        labels[start:start + len(block)] = idx
        dist[start:start + len(block)] = np.sqrt(np.maximum(d2[np.arange(len(block)), idx], 0.0))
    return labels, dist


def knn_search(reference: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of every query row (Euclidean): (distances, indices)."""
    reference, k = as_f32(reference), min(k, len(reference))
    if has_faiss():
        import faiss

        index = faiss.IndexFlatL2(reference.shape[1])
        index.add(reference)
        dist = np.empty((len(queries), k), dtype=np.float32)
        idx = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), CHUNK):
            d, i = index.search(as_f32(queries[start:start + CHUNK]), k)
            dist[start:start + len(d)], idx[start:start + len(i)] = np.sqrt(np.maximum(d, 0)), i
        return dist, idx
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k).fit(reference)
    dist = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), CHUNK):
        d, i = nn.kneighbors(as_f32(queries[start:start + CHUNK]))
        dist[start:start + len(d)], idx[start:start + len(i)] = d, i
    return dist, idx


UMAP_EXACT_BELOW = 4096  # umap-learn computes every distance itself below this many rows


def umap_neighbour_graph(X: np.ndarray, k: int):
    """UMAP's ``precomputed_knn`` for ``X``: every row's ``k`` nearest rows (itself first), found
    exactly here instead of by pynndescent, whose search numba compiles anew in every process
    (it cannot be cached: 45-85 s on the 2-core machine, more than the layout itself) and which
    is approximate; ``(None, None, None)`` below the size where umap-learn is exact anyway."""
    if len(X) < UMAP_EXACT_BELOW:
        return None, None, None
    distances, indices = knn_search(X, X, k)
    return indices, distances, None


def knn_vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority label of each row's neighbours (columns ordered nearest first; ties go to the
    label whose votes are nearer). Label -1 (noise) takes part like any other label, so a row
    among noise stays noise."""
    shifted = neighbour_labels.astype(np.int64) + 1
    n, k = shifted.shape
    width = int(shifted.max()) + 1 if shifted.size else 1
    # nearer neighbours weigh slightly more: this only ever decides ties
    weights = np.tile(1.0 - np.arange(k) / (10.0 * k), n)
    flat = (np.arange(n)[:, None] * width + shifted).ravel()
    votes = np.bincount(flat, weights=weights, minlength=n * width).reshape(n, width)
    return votes.argmax(1) - 1


def kmeans_lloyd(X: np.ndarray, k: int, n_init: int, max_iter: int, seed: int) -> tuple[np.ndarray, float, str]:
    """Centres of the best of ``n_init`` k-means runs, each seeded by k-means++.

    faiss runs Lloyd's iterations about 10-50x faster than scikit-learn on CPU; scikit-learn's
    ``KMeans`` is the fallback. k-means++ seeding is done here for both, on at most 20,000 rows
    (faiss's own seeding is uniform random, which misses small clusters).
    """
    from sklearn.cluster import kmeans_plusplus

    X = as_f32(X)
    rng = np.random.default_rng(seed)
    if has_faiss() and len(X) >= FAISS_MIN_ROWS:
        import faiss

        best, best_obj = None, np.inf
        for i in range(n_init):
            probe = X if len(X) <= 20000 else X[np.sort(rng.choice(len(X), 20000, replace=False))]
            init, _ = kmeans_plusplus(probe, k, random_state=seed + i)
            km = faiss.Kmeans(X.shape[1], k, niter=max_iter, seed=seed + i, verbose=False,
                              min_points_per_centroid=1, max_points_per_centroid=max(len(X) // k + 1, 1))
            km.train(X, init_centroids=as_f32(init))
            obj = float(km.obj[-1]) if len(km.obj) else np.inf
            if obj < best_obj or best is None:
                best, best_obj = km.centroids.copy(), obj
        return best, best_obj, "faiss"
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(X)
    return model.cluster_centers_.astype(np.float32), float(model.inertia_), "sklearn"
