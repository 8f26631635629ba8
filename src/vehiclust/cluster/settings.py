"""What the cluster stage sweeps and how it chooses: one frozen dataclass, good without flags.

Every field is part of the stage's fingerprint, so changing any of them re-runs the stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vehiclust.cluster.select import k_grid
from vehiclust.errors import VehiclustError
from vehiclust.executor.base import ExecutorSettings

# k-means (centres), Ward (a hierarchy: one tree serves every k) and HDBSCAN (density, in the
# UMAP space, not told k). GMM, BIRCH, spectral, DBSCAN/OPTICS, average/complete linkage and
# the k-means variants are in the registry; measured, they add time more than they add wins.
DEFAULT_ALGORITHMS = ("kmeans", "ward", "hdbscan")
# Two linear spaces (cosine-like and per-dimension-scaled) and one non-linear embedding for the
# density-based algorithms; see vehiclust.cluster.preprocess for the grammar.
DEFAULT_PREPROCESSING = ("l2+pca", "std+pca", "l2+pca+umap")


@dataclass(frozen=True)
class ClusterSettings:
    """Settings of the cluster stage.

    Grid
        ``k_min``/``k_max``: the range of k swept by algorithms that take k (every integer up
        to 12, then a coarser grid, see :func:`k_grid`); ``k_values``: an explicit list that
        overrides the range; ``fixed_k``: one k, decided by the user (density-based algorithms,
        which cannot be told k, are then left out).
    What is swept
        ``algorithms``: names from :data:`vehiclust.cluster.algorithms.ALGORITHMS`;
        ``preprocessing``: specs such as ``"l2+pca"``, ``"std+pca:0.95"``, ``"pca:50w"``,
        ``"l2+pca+umap:8"`` (see :mod:`vehiclust.cluster.preprocess`); ``umap_components``,
        ``umap_neighbors``, ``umap_epochs``: the UMAP step's output dimensions, neighbours and
        optimisation epochs, the same at every N (umap-learn's own default drops from 500 to 200
        epochs above 10,000 fitted rows, so one row more would change the space).
    Sampling (every place that samples says so in runs.csv)
        ``preprocess_sample`` rows fit standardisation/PCA; ``fit_sample`` rows fit the linear
        algorithms (k-means, GMM, BIRCH, bisecting k-means); ``quadratic_sample`` rows fit the
        algorithms whose cost grows with N^2 (agglomerative, spectral, OPTICS, DBSCAN);
        ``umap_sample`` rows fit UMAP, and the density-based algorithms run on those same rows.
        The remaining rows are assigned (predict, nearest centroid or k-NN vote).
    Metrics
        silhouette on ``silhouette_repeats`` samples of ``silhouette_sample`` rows; stability =
        mean ARI between the run and ``stability_repeats`` refits with other seeds on resamples
        of 80% of the run's fit rows (at most ``stability_sample``); label checks against
        ``label_columns`` and ``identity_column`` of the collection when it has them (reported,
        never used to select).
    Selection
        ``prefer_few_clusters``: among runs within ``few_tolerance`` (relative) of the best
        score, take the one with the fewest clusters. ``min_cluster_share``/``max_noise_share``:
        runs with a smaller cluster or more noise than this are not selected.
    Benchmarks
        ``keep_run_labels``: also write every run's labels to ``clusterings/<descriptor>.runs.npz``
        (off for users: only a benchmark that scores every run against labels needs them).
    """

    k_min: int = 2
    k_max: int = 20
    k_values: tuple[int, ...] | None = None
    fixed_k: int | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    preprocessing: tuple[str, ...] = DEFAULT_PREPROCESSING
    pca_variance: float = 0.9
    pca_max_components: int = 64
    umap_components: int = 8
    umap_neighbors: int = 30
    umap_epochs: int = 200
    preprocess_sample: int = 50_000
    fit_sample: int = 100_000
    quadratic_sample: int = 10_000
    umap_sample: int = 20_000
    silhouette_sample: int = 3000
    silhouette_repeats: int = 3
    stability_sample: int = 10_000
    stability_repeats: int = 2
    label_columns: tuple[str, ...] = ("type", "color")
    identity_column: str = "vehicle_id"
    prefer_few_clusters: bool = False
    few_tolerance: float = 0.1
    min_cluster_share: float = 0.002
    max_noise_share: float = 0.5
    seed: int = 0
    keep_run_labels: bool = False
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)  # where every row is assigned

    def __post_init__(self):
        # lists (or comma-separated strings) are accepted, stored as tuples: hashable, stable fingerprint
        for name in ("k_values", "algorithms", "preprocessing", "label_columns"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            elif value is not None:
                value = tuple(value)
            if name == "k_values" and value is not None:
                value = tuple(int(v) for v in value)
            object.__setattr__(self, name, value)
        if not 2 <= self.k_min <= self.k_max:
            raise VehiclustError(f"cluster settings: need 2 <= k_min <= k_max, got {self.k_min}, {self.k_max}")
        if self.fixed_k is not None and self.fixed_k < 2:
            raise VehiclustError(f"cluster settings: fixed_k must be >= 2, got {self.fixed_k}")
        if self.k_values is not None and (not self.k_values or min(self.k_values) < 2):
            raise VehiclustError(f"cluster settings: k_values must be integers >= 2, got {self.k_values}")
        if not self.algorithms:
            raise VehiclustError("cluster settings: no algorithms to run")
        if not self.preprocessing:
            raise VehiclustError("cluster settings: no preprocessing to run (use 'none' for the raw vectors)")
        # names are checked here so that a typo fails before any work (imports are late: both
        # modules import this one)
        from vehiclust.cluster.algorithms import get_algorithm
        from vehiclust.cluster.preprocess import parse

        for name in self.algorithms:
            get_algorithm(name)
        for spec in self.preprocessing:
            parse(spec)

    def ks(self) -> list[int]:
        """The k values swept by algorithms that take k (the grid: :func:`vehiclust.cluster.select.k_grid`)."""
        if self.fixed_k is not None:
            return [self.fixed_k]
        if self.k_values is not None:
            return sorted(set(int(k) for k in self.k_values))
        return k_grid(self.k_min, self.k_max)


def parse_k_range(text: str) -> tuple[int, int]:
    """"2:15" -> (2, 15); "8" -> (8, 8)."""
    try:
        lo, _, hi = text.partition(":")
        k_min, k_max = int(lo), int(hi or lo)
    except ValueError as exc:
        raise VehiclustError(f"--k expects 'MIN:MAX' or 'K', got {text!r}") from exc
    if not 2 <= k_min <= k_max:
        raise VehiclustError(f"--k needs 2 <= MIN <= MAX, got {text!r}")
    return k_min, k_max


def parse_k(text: str) -> dict:
    """ClusterSettings fields for a ``--k`` value.

    ``"2:30"`` a range (dense up to 12, coarser above), ``"2:30:2"`` a range with a step,
    ``"4,6,9"`` a list, ``"8"`` one k fixed by the user.
    """
    text = text.strip()
    try:
        if "," in text:
            values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
            if not values or values[0] < 2:
                raise ValueError
            return {"k_values": values, "k_min": values[0], "k_max": values[-1]}
        parts = text.split(":")
        if len(parts) == 1:
            k = int(parts[0])
            if k < 2:
                raise ValueError
            return {"fixed_k": k, "k_min": k, "k_max": k}
        if len(parts) == 3:
            lo, hi, step = (int(p) for p in parts)
            if not 2 <= lo <= hi or step < 1:
                raise ValueError
            return {"k_values": tuple(range(lo, hi + 1, step)), "k_min": lo, "k_max": hi}
    except ValueError as exc:
        raise VehiclustError(f"--k expects 'MIN:MAX', 'MIN:MAX:STEP', 'K1,K2,...' or 'K' (all >= 2), "
                             f"got {text!r}") from exc
    k_min, k_max = parse_k_range(text)
    return {"k_min": k_min, "k_max": k_max}
