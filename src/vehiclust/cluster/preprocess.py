"""Descriptor matrix -> the space a clustering runs in.

A preprocessing is a chain of steps written ``step+step+...`` (runs.csv records it as written):

========== ==================================================================================
``none``   the vectors as they are
``std``    standardisation: each column to mean 0, variance 1 (columns on different scales)
``l2``     each row to unit length: CNN features live on directions, so this makes Euclidean
           k-means behave like cosine k-means
``pca``    PCA keeping ``pca_variance`` of the variance, at most ``pca_max_components``;
           ``pca:0.95`` another variance target, ``pca:50`` exactly 50 components, a trailing
           ``w`` (``pca:50w``) whitens (every component to unit variance)
``umap``   UMAP to ``umap_components`` dimensions (``umap:5`` five), last step only. Density-
           based algorithms need it: in hundreds of dimensions all distances look alike
========== ==================================================================================

Scale: the linear steps are fitted on ``preprocess_sample`` rows and applied to every row chunk
by chunk, straight from the float16 memmap, so the N x D matrix is never converted whole; their
output (at most ``pca_max_components`` wide) is what lives in memory. UMAP is fitted on
``umap_sample`` rows; the other rows are placed at the distance-weighted mean of the embeddings
of their 10 nearest fitted rows (the starting point of umap's own ``transform``, without its
optimisation epochs, which take minutes per 100k rows).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, validate_data

from vehiclust.cluster.backends import knn_search, knn_vote, umap_neighbour_graph
from vehiclust.cluster.settings import ClusterSettings
from vehiclust.errors import VehiclustError

CHUNK = 16384
MAX_SPACE_BYTES = 2 << 30  # an unreduced 416k x 2560 float32 space (4 GB) is refused
# Above this a reduced space lives in a memory-mapped file in the executor's scratch folder: the
# sweep's passes over every row stream through it, and Ray's workers map the same file.
IN_MEMORY_SPACE_BYTES = 512 << 20
UMAP_ROWS_PER_NEIGHBOUR = 20  # below 20 x n_neighbors rows a "neighbourhood" is a tenth of the data
UMAP_INTERPOLATION_NEIGHBOURS = 10
SILHOUETTE_COLUMNS = 512  # one-hot columns per shared product: 3,000 x 512 float64 is 12 MB
DISTANCE_CACHE_BYTES = 256 << 20  # three 3000-row silhouette samples (72 MB each as float64) fit
FLOATS = (np.float32, np.float64)  # kept as given: converting a 50k x 2560 sample costs memory


# -- steps: scikit-learn transformers -----------------------------------------------------
# Standardize and L2Normalize do what StandardScaler and Normalizer do, kept by hand for their
# arithmetic: float64 statistics of float32 input, float32 output, the numbers runs.csv was
# measured with.

class Float32Transformer(TransformerMixin, BaseEstimator):
    """A step whose output is float32 whatever its input: the spaces are float32 (memory)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class Standardize(Float32Transformer):
    """Columns to mean 0, variance 1 (constant columns are only centred)."""

    def fit(self, X, y=None) -> Standardize:
        X = np.asarray(validate_data(self, X, dtype=FLOATS), dtype=np.float64)
        self.mean_ = X.mean(0)
        std = X.std(0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "mean_")
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        return ((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_).astype(np.float32)


class L2Normalize(Float32Transformer):
    """Rows to unit Euclidean length (all-zero rows stay zero, rows with NaN stay NaN).
    Stateless: ``transform`` works unfitted (the outlier stage uses it so). A 1-D descriptor is
    left as it is: normalised, every value would become its sign."""

    def fit(self, X, y=None) -> L2Normalize:
        validate_data(self, X, dtype=FLOATS, ensure_all_finite=False)
        return self

    def transform(self, X) -> np.ndarray:
        X = validate_data(self, X, dtype=FLOATS, reset=False, ensure_all_finite=False)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 2 and X.shape[1] == 1:
            return X
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.requires_fit = False
        return tags


class PCAReduce(Float32Transformer):
    """PCA to ``n_components`` or to the fewest components reaching ``variance`` of the total
    (capped at ``max_components``); optional whitening.

    Fitted with scikit-learn's PCA (randomized SVD when only a few of many components are
    needed), so a 50k x 2560 sample takes seconds.
    """

    def __init__(self, n_components: int | None = None, variance: float = 0.9, max_components: int = 64,
                 whiten: bool = False, random_state: int = 0):
        self.n_components = n_components
        self.variance = variance
        self.max_components = max_components
        self.whiten = whiten
        self.random_state = random_state

    def fit(self, X, y=None) -> PCAReduce:
        from sklearn.decomposition import PCA

        X = np.asarray(validate_data(self, X, dtype=FLOATS), dtype=np.float32)
        cap = min(self.n_components or self.max_components, X.shape[1], max(len(X) - 1, 1))
        pca = PCA(n_components=cap, random_state=self.random_state).fit(X)
        ratio = np.cumsum(pca.explained_variance_ratio_)
        n = cap if self.n_components else int(min(np.searchsorted(ratio, self.variance) + 1, cap))
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_[:n].astype(np.float32)
        self.explained_variance_ = pca.explained_variance_[:n]
        self.explained_variance_ratio_ = float(ratio[n - 1])
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "components_")
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        out = (np.asarray(X, dtype=np.float32) - self.mean_) @ self.components_.T
        if self.whiten:
            out /= np.sqrt(np.maximum(self.explained_variance_, 1e-12)).astype(np.float32)
        return out


class KNNPlacement(TransformerMixin, BaseEstimator):
    """Places rows an embedding was not fitted on: ``fit(X, Y)`` takes the fitted rows (input
    space) and their embedding; ``transform`` puts each new row at the mean of the embeddings
    of its ``n_neighbors`` nearest fitted rows, weighted by 1 / distance.

    This is KNeighborsRegressor(weights="distance") written out: the search goes through
    :func:`knn_search` (faiss when installed, chunked), and :meth:`kneighbors` lets one search
    serve several embeddings of the same rows (the report's 2D and 3D maps).
    """

    def __init__(self, n_neighbors: int = UMAP_INTERPOLATION_NEIGHBOURS):
        self.n_neighbors = n_neighbors

    def fit(self, X, y=None) -> KNNPlacement:
        self.reference_ = np.ascontiguousarray(validate_data(self, X, dtype=FLOATS), dtype=np.float32)
        self.embedding_ = None if y is None else np.asarray(y, dtype=np.float32)
        return self

    def kneighbors(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "reference_")
        X = validate_data(self, X, dtype=FLOATS, reset=False, ensure_min_samples=0)  # nothing to place: fine
        return knn_search(self.reference_, X, min(self.n_neighbors, len(self.reference_)))

    def interpolate(self, distance: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The placement from a :meth:`kneighbors` result."""
        weights = 1.0 / np.maximum(distance, 1e-6)
        weights /= weights.sum(1, keepdims=True)
        return np.einsum("nk,nkd->nd", weights, self.embedding_[index]).astype(np.float32)

    def transform(self, X) -> np.ndarray:
        return self.interpolate(*self.kneighbors(X))


class UMAPEmbed(TransformerMixin, BaseEstimator):
    """UMAP fitted on the rows given to ``fit``; ``transform`` places new rows with
    :class:`KNNPlacement` in the input space (see the module docstring).

    ``min_dist=0`` packs clusters tightly, as recommended for clustering (umap-learn's docs,
    "Using UMAP for Clustering"). Always seeded, hence single-threaded and reproducible: with
    numba's compilation done, seeded and parallel layouts took the same 23-24 s on 20k rows on
    the busy 2-core machine this was measured on.
    """

    def __init__(self, n_components: int = 8, n_neighbors: int = 30, min_dist: float = 0.0,
                 n_epochs: int = 200, random_state: int = 0):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state

    def fit(self, X, y=None) -> UMAPEmbed:
        import umap

        X = np.ascontiguousarray(validate_data(self, X, dtype=FLOATS), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            neighbours = min(self.n_neighbors, len(X) - 1)
            model = umap.UMAP(n_components=self.n_components, n_neighbors=neighbours, min_dist=self.min_dist,
                              n_epochs=self.n_epochs, random_state=self.random_state, precomputed_knn=umap_neighbour_graph(X, neighbours))
            self.embedding_ = model.fit_transform(X).astype(np.float32)
        self.placement_ = KNNPlacement().fit(X, self.embedding_)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "placement_")
        return self.placement_.transform(X)


def has_umap() -> bool:
    return importlib.util.find_spec("umap") is not None


# -- parsing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    name: str
    arg: str = ""


STEPS = {"none", "std", "l2", "pca", "umap"}
ALIASES = {"standardize": "std", "standardise": "std", "standardization": "std", "normalize": "l2",
           "l2norm": "l2", "raw": "none"}


def parse(spec: str) -> list[Step]:
    """``"l2+pca:50w+umap"`` -> [Step('l2'), Step('pca', '50w'), Step('umap')]."""
    steps = []
    for part in spec.strip().lower().split("+"):
        name, _, arg = part.strip().partition(":")
        name = ALIASES.get(name, name)
        if name not in STEPS:
            raise VehiclustError(f"preprocessing {spec!r}: unknown step {name!r}; "
                                 f"known: {', '.join(sorted(STEPS))} (joined with '+')")
        if name != "none":
            steps.append(Step(name, arg))
    if any(s.name == "umap" for s in steps[:-1]):
        raise VehiclustError(f"preprocessing {spec!r}: umap can only be the last step")
    return steps


def make_pipeline_of(steps: list[Step], settings: ClusterSettings) -> Pipeline:
    """The linear steps as one scikit-learn pipeline (``passthrough`` for none)."""
    named = [(f"{i}_{step.name}", make_step(step, settings)) for i, step in enumerate(steps)]
    return Pipeline(named or [("none", "passthrough")])


def make_step(step: Step, settings: ClusterSettings):
    if step.name == "std":
        return Standardize()
    if step.name == "l2":
        return L2Normalize()
    if step.name == "pca":
        arg, whiten = step.arg, step.arg.endswith("w")
        arg = arg[:-1] if whiten else arg
        try:
            value = float(arg) if arg else None
        except ValueError as exc:
            raise VehiclustError(f"pca:{step.arg}: expected a variance share (0.9) or a count (50)") from exc
        if value is None or value < 1:
            return PCAReduce(variance=value or settings.pca_variance, max_components=settings.pca_max_components,
                             whiten=whiten, random_state=settings.seed)
        return PCAReduce(n_components=int(value), whiten=whiten, random_state=settings.seed)
    if step.name == "umap":
        return UMAPEmbed(n_components=int(step.arg) if step.arg else settings.umap_components,
                         n_neighbors=settings.umap_neighbors, n_epochs=settings.umap_epochs,
                         random_state=settings.seed)
    raise AssertionError(step)


# -- spaces ----------------------------------------------------------------------------------

@dataclass
class Space:
    """The valid rows of one descriptor after one preprocessing: ``X`` is n x d float32, row i
    of X is row ``rows[i]`` of the collection.

    ``exact`` lists the rows whose coordinates were fitted rather than interpolated (UMAP); the
    density-based algorithms, which run on a sample anyway, draw their sample from them.
    ``input_X`` is, for a UMAP space, the linear space it was computed from (shared, not copied).
    """

    name: str
    X: np.ndarray
    info: dict
    exact: np.ndarray | None = None
    input_X: np.ndarray | None = None  # the linear space UMAP started from
    _neighbours: dict = field(default_factory=dict, repr=False)
    _distances: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.X)

    def __getstate__(self) -> dict:
        """Pickled (for a worker process) without its caches: the distance matrices alone may
        weigh hundreds of MB, and a worker computes what it needs again."""
        return {**self.__dict__, "_neighbours": {}, "_distances": {}}

    def sample(self, size: int | None, seed: int) -> np.ndarray:
        """Sorted indices of ``size`` rows (all rows when ``size`` is None or >= n)."""
        if size is None or size >= self.n:
            return np.arange(self.n)
        rng = np.random.default_rng(seed)
        pool = self.exact if self.exact is not None and len(self.exact) >= size else np.arange(self.n)
        return np.sort(rng.choice(pool, size=size, replace=False))

    def pairwise_distances(self, idx: np.ndarray) -> np.ndarray:
        """scikit-learn's Euclidean distances between the rows ``idx`` of X, widened to float64
        (exactly: every float32 is a float64) for the silhouette's matrix product. The silhouette
        samples depend on the seed and on which rows are clustered, not on the labels, so every
        run of a space without noise reads the same few matrices; at most
        ``DISTANCE_CACHE_BYTES`` of them are kept (the oldest go first). Widened once here
        rather than once per run: the copy cost three times the product it feeds."""
        from sklearn.metrics import pairwise_distances

        key = (len(idx), hash(idx.tobytes()))
        if key not in self._distances:
            matrix = pairwise_distances(self.X[idx]).astype(np.float64, copy=False)
            while self._distances and sum(m.nbytes for m in self._distances.values()) + matrix.nbytes \
                    > DISTANCE_CACHE_BYTES:
                self._distances.pop(next(iter(self._distances)))
            if matrix.nbytes <= DISTANCE_CACHE_BYTES:
                self._distances[key] = matrix
            return matrix
        return self._distances[key]

    def silhouette(self, idx: np.ndarray, labels: np.ndarray) -> float:
        """scikit-learn's ``silhouette_score(X[idx], labels)`` on the cached distances (see
        :meth:`silhouettes`)."""
        return self.silhouettes(idx, [labels])[0]

    def silhouettes(self, idx: np.ndarray, labelings: list[np.ndarray]) -> list[float]:
        """scikit-learn's ``silhouette_score(X[idx], labels)`` for each of ``labelings`` (labels
        of the rows ``idx``), step for step, on the cached distances, but with each row's
        per-cluster distance sums as one matrix product instead of scikit-learn's bincount per
        row (ten times slower at 3,000 rows). The labelings share that product: their one-hot
        columns sit side by side, so the distance matrix, whose reading is most of the cost, is
        read once for a whole family instead of once per run. The sums are float64 rounded to
        float32 as there, so only the order of the additions differs: a float32 result changes
        in its last bit about once in 10^5 sums."""
        distances = self.pairwise_distances(idx)
        dtype = np.result_type(self.X.dtype, np.float32)  # scikit-learn's distances keep float32 / float64
        encoded = [_codes_of(labels) for labels in labelings]
        scores = []
        for batch in _column_batches(encoded, SILHOUETTE_COLUMNS):
            onehot = np.zeros((len(idx), sum(len(freqs) for _, freqs in batch)))
            offsets = np.cumsum([0] + [len(freqs) for _, freqs in batch])
            for (codes, _), offset in zip(batch, offsets):
                onehot[np.arange(len(idx)), offset + codes] = 1.0
            sums = (distances @ onehot).astype(dtype)
            scores += [_silhouette_from_sums(sums[:, offset:offset + len(freqs)], codes, freqs)
                       for (codes, freqs), offset in zip(batch, offsets)]
        return scores

    def assign_knn(self, sample: np.ndarray, sample_labels: np.ndarray, k: int = 10) -> np.ndarray:
        """Labels for all rows: the sample keeps its own, every other row takes the majority
        label of its ``k`` nearest sample rows. Neighbours are searched once per sample."""
        key = (len(sample), hash(sample.tobytes()), k)
        if key not in self._neighbours:
            self._neighbours = {key: knn_search(self.X[sample], self.X, k)[1]}  # one sample at a time
        votes = knn_vote(sample_labels[self._neighbours[key]])
        votes[sample] = sample_labels
        return votes


def _codes_of(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..k-1 of ``labels`` and each code's count; refused as scikit-learn refuses."""
    classes, codes = np.unique(labels, return_inverse=True)
    if not 1 < len(classes) < len(codes):
        raise ValueError(f"Number of labels is {len(classes)}. Valid values are 2 to n_samples - 1 (inclusive)")
    return codes, np.bincount(codes)


def _column_batches(encoded: list, width: int) -> list[list]:
    """Consecutive groups of labelings whose clusters add up to at most ``width`` columns
    (a single labeling wider than that is a group of its own)."""
    batches, current, used = [], [], 0
    for item in encoded:
        if current and used + len(item[1]) > width:
            batches.append(current)
            current, used = [], 0
        current.append(item)
        used += len(item[1])
    return batches + [current] if current else batches


def _silhouette_from_sums(sums: np.ndarray, codes: np.ndarray, freqs: np.ndarray) -> float:
    """The mean silhouette from each row's distance sum to every cluster (rows x clusters)."""
    n = len(codes)
    own = (np.arange(n), codes)
    intra = sums[own]
    sums[own] = np.inf
    sums /= freqs
    inter = sums.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= (freqs - 1).take(codes, mode="clip")
        values = inter - intra
        values /= np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(values)))


def valid_rows(matrix: np.ndarray, invalid: dict[int, str]) -> np.ndarray:
    """Rows not marked invalid and without NaN/inf (checked chunk by chunk)."""
    keep = np.ones(matrix.shape[0], dtype=bool)
    keep[np.fromiter(invalid, dtype=np.int64, count=len(invalid))] = False
    for start in range(0, matrix.shape[0], CHUNK * 4):
        block = np.asarray(matrix[start:start + CHUNK * 4])
        keep[start:start + len(block)] &= np.isfinite(block).all(1)
    return np.flatnonzero(keep)


def build_spaces(matrix: np.ndarray, rows: np.ndarray, specs: tuple[str, ...], settings: ClusterSettings,
                 reporter_message=lambda text: None, spec_done=lambda: None) -> list[Space]:
    """Every preprocessing of ``specs`` applied to ``matrix[rows]`` (see :func:`iter_spaces`)."""
    return list(iter_spaces(matrix, rows, specs, settings, reporter_message, spec_done))


def iter_spaces(matrix: np.ndarray, rows: np.ndarray, specs: tuple[str, ...], settings: ClusterSettings,
                reporter_message=lambda text: None, spec_done=lambda: None) -> Iterator[Space]:
    """Each preprocessing of ``specs`` applied to ``matrix[rows]``, as soon as it is built; specs
    that share a linear prefix (``l2+pca`` and ``l2+pca+umap``) share its computation.
    ``spec_done`` is called after each spec, built or skipped (progress: at 416k rows one UMAP
    space takes minutes)."""
    linear_cache: dict[str, tuple[np.ndarray, dict]] = {}
    for spec in specs:
        space = _build_space(matrix, rows, spec, settings, reporter_message, linear_cache)
        spec_done()
        if space is not None:
            yield space


def _build_space(matrix: np.ndarray, rows: np.ndarray, spec: str, settings: ClusterSettings,
                 reporter_message, linear_cache: dict) -> Space | None:
    """One spec's space, or None (with a message) when it cannot be built."""
    steps = parse(spec)
    linear = [s for s in steps if s.name != "umap"]
    key = "+".join(f"{s.name}:{s.arg}" for s in linear)
    if key not in linear_cache:
        width = _output_width(linear, settings, matrix.shape[1])
        if len(rows) * width * 4 > MAX_SPACE_BYTES:
            reporter_message(f"preprocessing {spec}: skipped, {len(rows):,} x {width} float32 would need "
                             f"{len(rows) * width * 4 / 2**30:.1f} GB; add a pca step")
            return None
        linear_cache[key] = apply_linear(matrix, rows, linear, settings)
    X, info = linear_cache[key]
    info = dict(info, preprocessing=spec)
    exact, input_X = None, None
    if steps and steps[-1].name == "umap":
        need = UMAP_ROWS_PER_NEIGHBOUR * settings.umap_neighbors
        if not has_umap():
            reporter_message(f"preprocessing {spec}: skipped, umap-learn is not installed")
            return None
        if len(X) < need:
            reporter_message(f"preprocessing {spec}: skipped, {len(X)} rows are too few for UMAP "
                             f"with {settings.umap_neighbors} neighbours (needs {need})")
            return None
        input_X = X
        X, info, exact = apply_umap(X, make_step(steps[-1], settings), info, settings)
    return Space(spec, X, info, exact, input_X)


def allocate_space(n: int, width: int, scratch: str | None) -> np.ndarray:
    """n x width float32 rows: in memory when small, else memory-mapped from a file in
    ``scratch`` (None: the system's temporary folder) that the executor's workers read as it is;
    the file goes when the descriptor's sweep ends (``sweep_descriptor``) or the process does."""
    if n * width * 4 <= IN_MEMORY_SPACE_BYTES:
        return np.empty((n, width), dtype=np.float32)
    from vehiclust.executor.rows import scratch_rows

    return scratch_rows((n, width), scratch)


def _output_width(steps: list[Step], settings: ClusterSettings, width: int) -> int:
    for step in steps:
        if step.name == "pca":
            arg = step.arg.rstrip("w")
            width = min(width, int(float(arg)) if arg and float(arg) >= 1 else settings.pca_max_components)
    return width


def apply_linear(matrix: np.ndarray, rows: np.ndarray, steps: list[Step],
                 settings: ClusterSettings) -> tuple[np.ndarray, dict]:
    """Fit the steps on a sample of ``rows``, then transform every row chunk by chunk."""
    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    fit_rows = rows if len(rows) <= settings.preprocess_sample else \
        np.sort(rng.choice(rows, size=settings.preprocess_sample, replace=False))
    chain = make_pipeline_of(steps, settings)
    if steps:
        chain.fit(np.asarray(matrix[fit_rows], dtype=np.float32))
    pcas = [t for _, t in chain.steps if isinstance(t, PCAReduce)]
    pca = pcas[0] if pcas else None
    width = pcas[-1].components_.shape[0] if pcas else matrix.shape[1]
    if steps and settings.executor.kind != "local" and getattr(matrix, "filename", None):
        from vehiclust.executor.rows import transformed_rows

        X = transformed_rows(matrix, rows, chain, settings.executor, CHUNK)  # the same blocks as below
    else:
        X = allocate_space(len(rows), width, settings.executor.scratch)
        for start in range(0, len(rows), CHUNK):
            block = np.asarray(matrix[rows[start:start + CHUNK]], dtype=np.float32)
            X[start:start + len(block)] = chain.transform(block) if steps else block
    info = {
        "space_dims": int(width),
        "explained_variance": pca.explained_variance_ratio_ if pca is not None else 1.0,
        "preprocess_fit_rows": int(len(fit_rows)) if steps else 0,
        "preprocess_seconds": round(time.perf_counter() - started, 3),
    }
    return X, info


def apply_umap(X: np.ndarray, embed: UMAPEmbed, info: dict, settings: ClusterSettings):
    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed + 7)
    exact = np.arange(len(X)) if len(X) <= settings.umap_sample else \
        np.sort(rng.choice(len(X), size=settings.umap_sample, replace=False))
    embed.fit(X[exact])
    out = allocate_space(len(X), embed.n_components, settings.executor.scratch)
    out[exact] = embed.embedding_
    rest = np.setdiff1d(np.arange(len(X)), exact, assume_unique=True)
    for start in range(0, len(rest), CHUNK):  # each row is placed on its own: chunks change nothing
        out[rest[start:start + CHUNK]] = embed.transform(X[rest[start:start + CHUNK]])
    info = dict(info, space_dims=int(embed.n_components), umap_fit_rows=int(len(exact)),
                preprocess_seconds=round(info["preprocess_seconds"] + time.perf_counter() - started, 3))
    return out, info, (exact if len(rest) else None)
