"""Outlier detectors in descriptor space, one registry: ``DETECTORS`` (``create_detector(name)``).

Each detector is fitted on a sample of rows and then scores every row (the shape that scales:
fit on 20k, score 416k in chunks). Scores are *raw* (higher = more outlying, in the detector's
own units); :func:`vehiclust.robust.robust_z` turns them into robust z-scores so that detectors
and descriptors can be combined. Each spec states what its detector needs besides the sample:

=========  =====================================================================  ==========
name       raw score                                                              needs
=========  =====================================================================  ==========
knn        mean distance to the k nearest sample rows (faiss: exact below 8,192   neighbours
           sample rows, inverted lists above)
lof        local outlier factor against the sample (same neighbours as knn)        neighbours
iforest    isolation forest path length (sklearn ``-score_samples``)               seed
ecod       ECOD: summed log tail probabilities of each coordinate (Li et al. 2022)
glosh      HDBSCAN's GLOSH outlier score, fitted on the sample
=========  =====================================================================  ==========

Adding a detector: a :class:`Detector` subclass here with ``@DETECTORS.add(name, ...)``, and
nothing else (the contract test in ``tests/test_outliers.py`` picks it up). The distance to the
assigned cluster centre joins the same consensus; the ``isolated`` check reads it from the
cluster stage's ``clusterings/<name>.npz`` (:mod:`vehiclust.outliers.checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vehiclust.errors import VehiclustError
from vehiclust.executor.base import ExecutorSettings
from vehiclust.registry import Registry

CHUNK = 32768
IVF_FROM = 8192  # sample rows from which faiss searches inverted lists instead of every row


@dataclass(frozen=True)
class DetectorSettings:
    # the defaults are the detectors that separated the demo's planted outliers best and kept
    # the tails of outlier-free (Gaussian, Student-t, blob) collections short; LOF and GLOSH are
    # there by name (LOF's ratio has a heavy right tail on clean data; GLOSH fits a whole
    # HDBSCAN on the sample)
    detectors: tuple[str, ...] = ("knn", "iforest", "ecod")
    fit_sample: int = 20000
    pca_components: int = 64
    k: int = 20
    seed: int = 0
    backend: str = "auto"  # neighbour search: "auto" (faiss), "faiss", "sklearn"
    extra: dict = field(default_factory=dict)
    executor: ExecutorSettings = ExecutorSettings()  # where every row is scored (local: this process)


# -- neighbours, shared by knn and lof ----------------------------------------------------------
class Neighbours:
    """k nearest sample rows of every row, computed once per descriptor and shared."""

    def __init__(self, sample: np.ndarray, k: int, backend: str = "auto"):
        self.sample = np.ascontiguousarray(sample, dtype=np.float32)
        self.k = min(k, len(sample) - 1)
        if self.k < 1:
            raise VehiclustError("outlier detectors need at least 2 sample rows")
        self.backend = "faiss" if backend == "auto" else backend
        if self.backend == "faiss":
            import faiss

            dim = self.sample.shape[1]
            if len(self.sample) >= IVF_FROM:
                # inverted lists: about 3x faster than exhaustive search at 20k x 64, and the mean
                # k-NN distance correlates 0.998 with the exact one
                nlist = min(int(4 * np.sqrt(len(self.sample))), len(self.sample) // 39)  # faiss: >= 39 per list
                self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
                self.index.train(self.sample)
                self.index.nprobe = max(8, nlist // 20)
                self.backend = "faiss-ivf"
            else:
                self.index = faiss.IndexFlatL2(dim)
            self.index.add(self.sample)
        elif self.backend == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            self.index = NearestNeighbors(n_neighbors=self.k + 1).fit(self.sample)
        else:
            raise VehiclustError(f"unknown neighbour backend {backend!r}; use auto, faiss or sklearn")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.sample_kdist, self.sample_lrd = self._sample_density()

    def query(self, X: np.ndarray, self_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances, sample indices) of the k nearest sample rows; ``self_rows[i]`` is row i's own
        position in the sample (-1 if none), which is left out of its neighbours."""
        key = id(X)
        if key in self._cache:
            return self._cache[key]
        X = np.ascontiguousarray(X, dtype=np.float32)
        dist = np.empty((len(X), self.k), dtype=np.float32)
        index = np.empty((len(X), self.k), dtype=np.int64)
        for start in range(0, len(X), CHUNK):
            block = X[start:start + CHUNK]
            if self.backend.startswith("faiss"):
                d2, idx = self.index.search(block, self.k + 1)
                missing = idx < 0  # inverted lists that held fewer rows than asked for
                if missing.any():
                    d2 = np.where(missing, np.nanmax(np.where(missing, np.nan, d2), axis=1, keepdims=True), d2)
                    idx = np.where(missing, idx[:, :1], idx)
                d = np.sqrt(np.maximum(d2, 0.0))
            else:
                d, idx = self.index.kneighbors(block, n_neighbors=self.k + 1)
            own = None if self_rows is None else self_rows[start:start + CHUNK]
            keep = _drop_self(idx, own, self.k)
            dist[start:start + len(block)] = np.take_along_axis(d, keep, axis=1)
            index[start:start + len(block)] = np.take_along_axis(idx, keep, axis=1)
        self._cache = {key: (dist, index)}
        return dist, index

    def _sample_density(self) -> tuple[np.ndarray, np.ndarray]:
        own = np.arange(len(self.sample))
        d, idx = self.query(self.sample, own)
        kdist = d[:, -1]
        reach = np.maximum(d, kdist[idx])
        lrd = 1.0 / np.maximum(reach.mean(axis=1), 1e-12)
        self._cache = {}
        return kdist, lrd


def _drop_self(idx: np.ndarray, own: np.ndarray | None, k: int) -> np.ndarray:
    """Column positions of the k neighbours to keep: the first k that are not the row itself."""
    if own is None:
        return np.tile(np.arange(k), (len(idx), 1))
    is_self = idx == own[:, None]
    is_self[:, -1] |= ~is_self.any(axis=1)  # no self among them: drop the farthest instead
    order = np.argsort(is_self, axis=1, kind="stable")  # False (keep) first, in distance order
    return order[:, :k]


# -- detectors ----------------------------------------------------------------------------------
class Detector:
    """Fitted on the sample, then scores every row; ``neighbours`` is given to those that need it."""

    def fit(self, sample: np.ndarray, neighbours: Neighbours | None) -> Detector:
        return self

    def score(self, X: np.ndarray, neighbours: Neighbours | None, self_rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    factory: Callable[..., Detector]
    summary: str
    log_scale: bool = False  # robust z of log(score): for positive, right-skewed scores
    needs: tuple[str, ...] = ()  # "neighbours": the shared k nearest sample rows; "seed": the run's seed


DETECTORS: Registry[DetectorSpec] = Registry("outlier detector", DetectorSpec)


@DETECTORS.add("knn", summary="mean distance to the k nearest sample rows", log_scale=True, needs=("neighbours",))
class KnnDistance(Detector):
    def score(self, X, neighbours, self_rows):
        dist, _ = neighbours.query(X, self_rows)
        return dist.mean(axis=1).astype(np.float64)


@DETECTORS.add("lof", summary="local outlier factor against the sample", log_scale=True, needs=("neighbours",))
class LocalOutlierFactor(Detector):
    """LOF (Breunig et al. 2000) of every row against the sample's reachability densities."""

    def score(self, X, neighbours, self_rows):
        dist, index = neighbours.query(X, self_rows)
        reach = np.maximum(dist, neighbours.sample_kdist[index])
        lrd = 1.0 / np.maximum(reach.mean(axis=1), 1e-12)
        return (neighbours.sample_lrd[index].mean(axis=1) / lrd).astype(np.float64)


@DETECTORS.add("iforest", summary="isolation forest path length", needs=("seed",))
class IsolationForestDetector(Detector):
    def __init__(self, seed: int = 0, n_estimators: int = 100):
        self.seed, self.n_estimators = seed, n_estimators

    def fit(self, sample, neighbours):
        from sklearn.ensemble import IsolationForest

        self.model = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(sample)
        return self

    def score(self, X, neighbours, self_rows):
        return np.concatenate([-self.model.score_samples(X[s:s + CHUNK]) for s in range(0, len(X), CHUNK)])


@DETECTORS.add("ecod", summary="summed log tail probabilities of each coordinate", log_scale=True)
class Ecod(Detector):
    """ECOD (Li et al., TKDE 2022): per coordinate, the empirical left and right tail probability
    of the value against the sample; the score sums -log of them over coordinates, taking for each
    coordinate the tail its skewness points to (as in the paper's O = max(O_left, O_right, O_auto))."""

    def fit(self, sample, neighbours):
        self.sorted = np.sort(np.asarray(sample, dtype=np.float64), axis=0)
        n = len(self.sorted)
        mean = self.sorted.mean(axis=0)
        sd = self.sorted.std(axis=0) + 1e-12
        self.skew = ((self.sorted - mean) ** 3).mean(axis=0) / sd ** 3
        self.n = n
        return self

    def score(self, X, neighbours, self_rows):
        out = np.empty(len(X))
        n = self.n
        for start in range(0, len(X), CHUNK):
            block = np.asarray(X[start:start + CHUNK], dtype=np.float64)
            left = np.empty_like(block)
            right = np.empty_like(block)
            for j in range(block.shape[1]):
                column = self.sorted[:, j]
                left[:, j] = np.searchsorted(column, block[:, j], side="right")
                right[:, j] = n - np.searchsorted(column, block[:, j], side="left")
            # tail probabilities with the row itself counted (never 0)
            log_left = -np.log((left + 1.0) / (n + 1.0))
            log_right = -np.log((right + 1.0) / (n + 1.0))
            auto = np.where(self.skew < 0, log_left, log_right)
            out[start:start + len(block)] = np.maximum.reduce([log_left.sum(1), log_right.sum(1), auto.sum(1)])
        return out


@DETECTORS.add("glosh", summary="HDBSCAN's GLOSH outlier score")
class Glosh(Detector):
    """HDBSCAN's GLOSH outlier score (Campello et al. 2015); rows outside the sample get the score
    of hdbscan's ``approximate_predict_scores``."""

    def __init__(self, min_cluster_size: int = 25):
        self.min_cluster_size = min_cluster_size

    def fit(self, sample, neighbours):
        import hdbscan

        self.model = hdbscan.HDBSCAN(min_cluster_size=self.min_cluster_size, prediction_data=True).fit(sample)
        return self

    def score(self, X, neighbours, self_rows):
        import hdbscan

        out = np.empty(len(X))
        for start in range(0, len(X), CHUNK):
            out[start:start + CHUNK] = hdbscan.approximate_predict_scores(self.model, X[start:start + CHUNK])
        in_sample = self_rows >= 0
        out[in_sample] = self.model.outlier_scores_[self_rows[in_sample]]
        return np.nan_to_num(out, nan=0.0)


def create_detector(name: str, settings: DetectorSettings = DetectorSettings()) -> Detector:
    spec = DETECTORS.get(name)
    options = dict(settings.extra.get(name, {}))
    if "seed" in spec.needs:
        options.setdefault("seed", settings.seed)
    return spec.factory(**options)


# -- one descriptor -----------------------------------------------------------------------------
def project(matrix: np.ndarray, rows: np.ndarray, fit_rows: np.ndarray, components: int, seed: int) -> np.ndarray:
    """L2-normalised rows, PCA-reduced (fitted on ``fit_rows``), chunk by chunk, float32."""
    from sklearn.decomposition import PCA

    from vehiclust.cluster.preprocess import L2Normalize

    normalise = L2Normalize().transform
    sample = normalise(matrix[fit_rows])
    n_comp = min(components, sample.shape[1], max(len(fit_rows) - 1, 1))
    pca = PCA(n_components=n_comp, random_state=seed).fit(sample) if n_comp < sample.shape[1] else None
    out = np.empty((len(rows), n_comp if pca is not None else sample.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), CHUNK):
        block = normalise(matrix[rows[start:start + CHUNK]])
        out[start:start + len(block)] = reduce_exactly(pca, block)
    return out


def reduce_exactly(pca, block: np.ndarray) -> np.ndarray:
    """``pca.transform`` in float64, rounded to float32: in float32 the product's last bit depends
    on how many rows a batch holds (BLAS blocking), so a row scored in a shard of other rows, or a
    duplicate of a sample row, would step past its equal in ECOD's ranks."""
    return block if pca is None else pca.transform(block.astype(np.float64)).astype(np.float32)


def score_descriptor(matrix: np.ndarray, rows: np.ndarray, settings: DetectorSettings = DetectorSettings()
                     ) -> dict[str, np.ndarray]:
    """Raw scores of every detector for ``rows`` of ``matrix`` (fitted on a sample of them)."""
    rng = np.random.default_rng(settings.seed)
    n_fit = min(settings.fit_sample, len(rows))
    fit_positions = np.sort(rng.choice(len(rows), size=n_fit, replace=False))
    X = project(matrix, rows, rows[fit_positions], settings.pca_components, settings.seed)
    sample = X[fit_positions]
    self_rows = np.full(len(rows), -1, dtype=np.int64)
    self_rows[fit_positions] = np.arange(n_fit)
    neighbours = None
    if any("neighbours" in DETECTORS.get(n).needs for n in settings.detectors):
        neighbours = Neighbours(sample, settings.k, settings.backend)
    scores = {}
    for name in settings.detectors:
        detector = create_detector(name, settings).fit(sample, neighbours)
        scores[name] = detector.score(X, neighbours, self_rows)
    return scores
