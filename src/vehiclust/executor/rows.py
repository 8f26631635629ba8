"""Applying fitted models to every row as a sharded map: each worker memory-maps the matrix,
applies the function to its rows and writes the result as one file per shard; the driver
assembles them into a memory-mapped ``.npy``. No process holds every row.

The functions (:class:`RowFunction`) carry what was fitted on a sample (centres, a transform, a
detector's sample), pickled once into the work folder; heavy state that does not pickle (faiss
indexes) is rebuilt by ``prepare`` on each worker, deterministically from the same sample.
"""

from __future__ import annotations

import atexit
import pickle
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vehiclust.executor.base import ExecutorSettings, ShardJob, create_executor, provenance
from vehiclust.runfolder import write_npy

SHARD_ROWS = 65536


class RowFunction:
    """``fn(block, positions)``: the result for ``block``, the rows at ``positions`` (0..n-1 of
    the rows being mapped)."""

    transform: object = None  # a fitted transformer applied to each block first (preprocessing)

    def prepare(self) -> None:
        """Build the state that does not pickle, once per worker."""

    def prepared_block(self, block: np.ndarray) -> np.ndarray:
        return block if self.transform is None else self.transform.transform(block)

    def __call__(self, block: np.ndarray, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Transformed(RowFunction):
    """The rows through a fitted preprocessing (``cluster.preprocess.apply_linear`` per shard)."""

    transform: object = None

    def __call__(self, block, positions):
        return np.asarray(self.prepared_block(np.asarray(block, dtype=np.float32)), dtype=np.float32)


@dataclass
class Predict(RowFunction):
    """A fitted estimator's ``predict`` (or ``score_samples``, ``decision_function``...)."""

    model: object
    method: str = "predict"
    transform: object = None

    def __call__(self, block, positions):
        return np.asarray(getattr(self.model, self.method)(self.prepared_block(block)))


@dataclass
class NearestCentre(RowFunction):
    """Label of the nearest centre (the assignment of k-means-like algorithms)."""

    centres: np.ndarray
    transform: object = None

    def __call__(self, block, positions):
        from vehiclust.cluster.backends import nearest_centroid

        return nearest_centroid(self.prepared_block(block), self.centres)[0]


@dataclass
class KnnVote(RowFunction):
    """Majority label of the ``k`` nearest sample rows; the sample's rows keep their own label
    (as :meth:`vehiclust.cluster.preprocess.Space.assign_knn`)."""

    sample: np.ndarray  # the (transformed) sample rows
    sample_labels: np.ndarray
    sample_positions: np.ndarray  # where the sample rows are among the rows mapped
    k: int = 10
    transform: object = None

    def __call__(self, block, positions):
        from vehiclust.cluster.backends import knn_search, knn_vote

        votes = knn_vote(self.sample_labels[knn_search(self.sample, self.prepared_block(block), self.k)[1]])
        at, own = _positions_in(self.sample_positions, positions)
        votes[own] = self.sample_labels[at[own]]
        return votes


def _positions_in(sample_positions: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``positions``: its index in ``sample_positions`` (any order), and whether it is there."""
    order = np.argsort(sample_positions, kind="stable")
    found = np.minimum(np.searchsorted(sample_positions[order], positions), len(order) - 1)
    return order[found], sample_positions[order[found]] == positions


@dataclass
class DetectorScores(RowFunction):
    """Raw scores of the outlier detectors (one column each) against their fitted sample."""

    names: tuple[str, ...]
    settings: object  # DetectorSettings
    sample: np.ndarray  # the projected sample rows
    fit_positions: np.ndarray  # where they are among the rows mapped
    transform: object = None
    fitted: dict = field(default_factory=dict, repr=False)

    def __getstate__(self):
        return {**self.__dict__, "fitted": {}, "neighbours": None}

    def prepare(self):
        from vehiclust.outliers.detectors import DETECTORS, Neighbours, create_detector

        self.neighbours = None
        if any("neighbours" in DETECTORS.get(n).needs for n in self.names):
            self.neighbours = Neighbours(self.sample, self.settings.k, self.settings.backend)
        self.fitted = {n: create_detector(n, self.settings).fit(self.sample, self.neighbours) for n in self.names}

    def __call__(self, block, positions):
        X = np.ascontiguousarray(self.prepared_block(block), dtype=np.float32)
        self_rows = np.full(len(positions), -1, dtype=np.int64)
        at, own = _positions_in(self.fit_positions, positions)
        self_rows[own] = at[own]
        return np.column_stack([self.fitted[n].score(X, self.neighbours, self_rows) for n in self.names])


@dataclass
class LabelSums(RowFunction):
    """Per-cluster member counts and row sums of a shard (``cluster.metrics.label_sums``)."""

    labels_file: str  # the labels of every row mapped, memory-mapped by each worker
    k: int

    def prepare(self):
        self.labels = np.load(self.labels_file, mmap_mode="r")

    def __call__(self, block, positions):
        from vehiclust.cluster.metrics import label_sums

        return label_sums(block, np.asarray(self.labels[positions]), self.k)


@dataclass
class DistanceSums(LabelSums):
    """Per-cluster sums of the distances to the centre and of their squares (``cluster.metrics.distance_sums``)."""

    centres: np.ndarray = None

    def __call__(self, block, positions):
        from vehiclust.cluster.metrics import distance_sums

        return distance_sums(block, np.asarray(self.labels[positions]), self.centres)


@dataclass
class RowShards(ShardJob):
    source: str  # the .npy matrix, memory-mapped by each worker
    rows_file: str | None  # .npy of the matrix rows mapped (None: every row)
    function_file: str  # the pickled RowFunction
    folder: str  # one result file per shard
    bounds: list[tuple[int, int]]

    def shard_path(self, index: int) -> Path:
        return Path(self.folder) / f"shard_{index:06d}.npy"

    def stored(self, index: int) -> bool:
        return self.shard_path(index).exists()

    def setup(self, threads: int | None) -> None:
        from threadpoolctl import threadpool_limits

        if threads:
            threadpool_limits(threads)
        self.matrix = np.load(self.source, mmap_mode="r")
        self.rows = None if self.rows_file is None else np.load(self.rows_file)
        with open(self.function_file, "rb") as fh:
            self.function = pickle.load(fh)  # written by this run's driver, in its own work folder
        self.function.prepare()

    def run(self, index: int) -> dict:
        start, stop = self.bounds[index]
        positions = np.arange(start, stop)
        block = np.asarray(self.matrix[positions if self.rows is None else self.rows[start:stop]])
        write_npy(self.shard_path(index), self.function(block, positions))
        return {"rows": stop - start}


def map_rows(matrix_path: Path, function: RowFunction, out: Path, settings: ExecutorSettings = ExecutorSettings(),
             rows: np.ndarray | None = None, shard_rows: int = SHARD_ROWS) -> tuple[np.ndarray, dict]:
    """``function`` over ``rows`` of the matrix at ``matrix_path`` (every row when None), one
    shard of ``shard_rows`` at a time on the executor; the result is written to ``out`` (.npy)
    and returned memory-mapped, with the provenance of the shards computed."""
    out = Path(out)
    work = out.parent / f".{out.stem}.shards"
    n = len(rows) if rows is not None else np.load(matrix_path, mmap_mode="r").shape[0]
    job, manifest, executor = _run_shards(matrix_path, function, work, settings, rows, n, shard_rows)
    _assemble(out, [job.shard_path(i) for i in range(len(job.bounds))], n)
    shutil.rmtree(work, ignore_errors=True)
    return np.load(out, mmap_mode="r"), provenance(executor, manifest)


def reduce_rows(matrix_path: Path, function: RowFunction, work: Path, settings: ExecutorSettings = ExecutorSettings(),
                shard_rows: int = SHARD_ROWS) -> np.ndarray:
    """The sum over shards of ``function``'s result for each shard of the matrix's rows (per-
    cluster sums, say): only these small arrays come back to the driver, never rows."""
    n = np.load(matrix_path, mmap_mode="r").shape[0]
    job, _, _ = _run_shards(matrix_path, function, work, settings, None, n, shard_rows)
    total = sum(np.load(job.shard_path(i)) for i in range(len(job.bounds)))
    shutil.rmtree(work, ignore_errors=True)
    return total


def _run_shards(matrix_path: Path, function: RowFunction, work: Path, settings: ExecutorSettings,
                rows: np.ndarray | None, n: int, shard_rows: int) -> tuple[RowShards, list[dict], str]:
    """Every shard of ``function`` over the ``n`` rows mapped, one result file each in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    rows_file = None
    if rows is not None:
        rows_file = str(work / "rows.npy")
        np.save(rows_file, np.asarray(rows, dtype=np.int64))
    with open(work / "function.pkl", "wb") as fh:
        pickle.dump(function, fh)
    bounds = [(s, min(s + shard_rows, n)) for s in range(0, n, shard_rows)]
    job = RowShards(str(matrix_path), rows_file, str(work / "function.pkl"), str(work), bounds)
    executor = create_executor(settings)
    return job, executor.map(job, list(range(len(bounds)))), executor.name


def _assemble(out: Path, shards: list[Path], n: int) -> None:
    from vehiclust.runfolder import atomic_path

    first = np.load(shards[0], mmap_mode="r") if shards else np.empty(0)
    with atomic_path(out) as tmp:
        result = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=(n, *first.shape[1:]))
        start = 0
        for path in shards:
            part = np.load(path, mmap_mode="r")
            result[start:start + len(part)] = part
            start += len(part)
        result.flush()
        del result


@dataclass
class Projection:
    """L2-normalised rows, then the PCA fitted on the sample (``outliers.detectors.project``
    row by row)."""

    pca: object  # a fitted PCA, or None when the rows are narrower than its components

    def transform(self, block: np.ndarray) -> np.ndarray:
        from vehiclust.cluster.preprocess import L2Normalize

        from vehiclust.outliers.detectors import reduce_exactly

        return reduce_exactly(self.pca, L2Normalize().transform(block))


def score_rows(matrix_path: Path, rows: np.ndarray, settings, out: Path,
               executor: ExecutorSettings = ExecutorSettings(), shard_rows: int = SHARD_ROWS
               ) -> tuple[dict[str, np.ndarray], dict]:
    """``outliers.detectors.score_descriptor`` as a sharded map: the sample and the PCA are
    fitted here (the sample only is in memory), each worker scores its shards."""
    from sklearn.decomposition import PCA

    from vehiclust.cluster.preprocess import L2Normalize

    matrix = np.load(matrix_path, mmap_mode="r")
    rng = np.random.default_rng(settings.seed)
    n_fit = min(settings.fit_sample, len(rows))
    fit_positions = np.sort(rng.choice(len(rows), size=n_fit, replace=False))
    sample = L2Normalize().transform(np.asarray(matrix[rows[fit_positions]]))
    n_comp = min(settings.pca_components, sample.shape[1], max(n_fit - 1, 1))
    pca = PCA(n_components=n_comp, random_state=settings.seed).fit(sample) if n_comp < sample.shape[1] else None
    projection = Projection(pca)
    sample_rows = projection.transform(np.asarray(matrix[rows[fit_positions]]))
    function = DetectorScores(tuple(settings.detectors), replace(settings, executor=ExecutorSettings()), sample_rows,
                              fit_positions, projection)  # the executor (and its hook) stays with the driver
    scores, shards = map_rows(matrix_path, function, out, executor, rows, shard_rows)
    return {name: np.asarray(scores[:, i]) for i, name in enumerate(settings.detectors)}, shards


def score_stored_rows(matrix: np.ndarray, rows: np.ndarray, settings) -> dict[str, np.ndarray]:
    """:func:`score_rows` for a descriptor matrix memory-mapped from the run folder (the
    workers read its file); the shard results go to a work folder beside it and are removed."""
    from vehiclust.errors import VehiclustError

    source = getattr(matrix, "filename", None)
    if source is None:
        raise VehiclustError("the ray executor scores descriptors stored as .npy in the run folder only")
    import tempfile

    source = Path(source)
    # a new folder of its own beside the matrix (the workers reach the run folder): a fixed
    # name could meet a file or folder of that name already there, and remove it at the end
    folder = Path(tempfile.mkdtemp(prefix=f".{source.stem}-detector-scores.", dir=source.parent))
    try:
        scores, _ = score_rows(source, rows, settings, folder / "scores.npy", settings.executor)
        return {name: np.array(values) for name, values in scores.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def assign_rows(X: np.ndarray, assign: str, model, fit_idx: np.ndarray, fit_labels: np.ndarray,
                settings: ExecutorSettings) -> np.ndarray:
    """``cluster.sweep.assign`` on the executor: labels for every row of ``X`` from the rows
    fitted (``assign``: predict, centroid or knn). The rows are written once to the executor's
    scratch folder (shared storage on a cluster) for the workers to memory-map."""
    import tempfile

    from vehiclust.cluster.metrics import cluster_geometry

    if len(fit_idx) == len(X):
        return fit_labels
    if assign == "predict" and model is not None and hasattr(model, "predict"):
        function: RowFunction = Predict(model)
    elif assign == "centroid":
        function = NearestCentre(cluster_geometry(X[fit_idx], fit_labels)[0])
    else:
        function = KnnVote(np.asarray(X[fit_idx]), np.asarray(fit_labels), np.asarray(fit_idx))
    source = stored_rows(X, settings.scratch)
    with tempfile.TemporaryDirectory(prefix="vehiclust-labels-", dir=settings.scratch) as work:
        labels, _ = map_rows(source, function, Path(work) / "labels.npy", settings)
        labels = np.array(labels)
    if not isinstance(function, KnnVote):
        labels[fit_idx] = fit_labels
    return labels


_STORED: dict[int, tuple[np.ndarray, Path]] = {}  # id(rows) -> (the rows, their file): one space at a time
_MAPPED: dict[int, tuple[np.ndarray, Path]] = {}  # spaces that live in a scratch file of their own


def stored_rows(X: np.ndarray, scratch: str | None) -> Path:
    """``X`` written once for the workers to memory-map: the sweep assigns every parameter set
    of a space from the same rows. The previous space's file goes when the next one comes."""
    import tempfile

    mapped = _MAPPED.get(id(X))
    if mapped is not None and mapped[0] is X:
        if X.flags.writeable:
            X.flush()
        return mapped[1]
    cached = _STORED.get(id(X))
    if cached is not None and cached[0] is X:
        return cached[1]
    _drop_stored()
    folder = Path(tempfile.mkdtemp(prefix="vehiclust-rows-", dir=scratch))
    np.save(folder / "rows.npy", np.ascontiguousarray(X))
    _STORED[id(X)] = (X, folder / "rows.npy")
    return folder / "rows.npy"


def scratch_rows(shape: tuple[int, int], scratch: str | None) -> np.ndarray:
    """A float32 matrix memory-mapped from a new file in ``scratch``, known to
    :func:`stored_rows` as its own file (so it is never copied for the workers)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="vehiclust-rows-", dir=scratch))
    X = np.lib.format.open_memmap(folder / "rows.npy", mode="w+", dtype=np.float32, shape=shape)
    _MAPPED[id(X)] = (X, folder / "rows.npy")
    return X


def holds_scratch_rows(arrays) -> bool:
    """Whether any of ``arrays`` is a matrix of :func:`scratch_rows` (or :func:`transformed_rows`)."""
    return any(id(a) in _MAPPED for a in arrays if a is not None)


def transformed_rows(matrix: np.memmap, rows: np.ndarray, chain, settings: ExecutorSettings,
                     shard_rows: int) -> np.ndarray:
    """``chain.transform`` of ``matrix[rows]`` as a sharded map on the executor, into a scratch
    file of :func:`scratch_rows`'s kind (mapped by later passes as it is)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="vehiclust-rows-", dir=settings.scratch))
    X, _ = map_rows(Path(matrix.filename), Transformed(transform=chain), folder / "rows.npy", settings, rows,
                    shard_rows)
    _MAPPED[id(X)] = (X, folder / "rows.npy")
    return X


def _drop_stored() -> None:
    for _, path in _STORED.values():
        shutil.rmtree(path.parent, ignore_errors=True)
    _STORED.clear()


def drop_scratch_rows() -> None:
    """Remove every scratch file of :func:`scratch_rows` (a mapped matrix stays readable until
    it is closed: POSIX keeps an unlinked file while it is mapped)."""
    for _, path in _MAPPED.values():
        shutil.rmtree(path.parent, ignore_errors=True)
    _MAPPED.clear()


atexit.register(_drop_stored)
atexit.register(drop_scratch_rows)


def measure_rows(X: np.ndarray, labels: np.ndarray, settings: ExecutorSettings, shard_rows: int = SHARD_ROWS
                 ) -> dict[str, float]:
    """``cluster.metrics.clustering_metrics`` on the executor: the rows are written once to the
    scratch folder (shared with the assignment), the workers add up per-cluster counts and sums
    (the centres), then distances to those centres (CH's dispersion, DB's scatter), per shard."""
    import tempfile

    from vehiclust.cluster.metrics import centres_from_sums, metrics_from_sums

    source = stored_rows(X, settings.scratch)
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    with tempfile.TemporaryDirectory(prefix="vehiclust-sums-", dir=settings.scratch) as work:
        labels_file = str(Path(work) / "labels.npy")
        np.save(labels_file, np.asarray(labels, dtype=np.int64))
        counts = reduce_rows(source, LabelSums(labels_file, k), Path(work) / "counts", settings, shard_rows)
        sizes, centres = centres_from_sums(counts)
        spread = reduce_rows(source, DistanceSums(labels_file, k, centres), Path(work) / "spread", settings,
                             shard_rows)
    return metrics_from_sums(len(labels), sizes, centres, spread)
