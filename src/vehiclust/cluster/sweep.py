"""The cluster stage: for each descriptor, a sweep over preprocessing x algorithm x parameters,
metrics per run and a selected run per descriptor.

Outputs (this stage is the only writer of both)
    ``runs.csv``: one row per run of the single descriptors (see :data:`RUN_COLUMNS`), with the
    reason beside the selected ones and a ``sampling`` column saying every place that sampled;
    ``clusterings/<descriptor>.npz``: the selected run (:class:`~vehiclust.cluster.clustering.Clustering`);
    ``clusterings/<descriptor>.runs.npz``: every run's labels, only with ``keep_run_labels``.

Nothing is quadratic in N on all rows: the quadratic algorithms, UMAP and the silhouette run on
samples (sizes in :class:`ClusterSettings`), and the rows outside a sample are assigned.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from vehiclust.cluster.algorithms import AlgorithmSpec, GridContext, format_params, get_algorithm
from vehiclust.cluster.backends import has_faiss, limited_threads, nearest_centroid, thread_budget
from vehiclust.cluster.metrics import LabelChecks, cluster_geometry, clustering_metrics, silhouettes_on_samples
from vehiclust.cluster.preprocess import Space, has_umap, iter_spaces, valid_rows
from vehiclust.cluster.clustering import Clustering
from vehiclust.cluster.levels import deliver_levels
from vehiclust.cluster.select import select_run
from vehiclust.cluster.settings import ClusterSettings
from vehiclust.errors import VehiclustError
from vehiclust.executor.base import available_cpus, result_settings
from vehiclust.executor.processes import start, worker_pool
from vehiclust.executor.rows import assign_rows, drop_scratch_rows, holds_scratch_rows
from vehiclust.progress import NullReporter, Reporter
from vehiclust.ownership import remove_file
from vehiclust.runfolder import CLUSTERING, COARSE_CLUSTERING, RUN_LABELS, RUNS, RunFolder, fingerprint

SWEEP_VERSION = 7  # part of the stage fingerprint: bump when results change for equal settings
WORKER_SPACE_BYTES = 64 << 20  # a space sent to a worker is pickled once per family: 50k x 64 float32 is 13 MB
ASSIGN_WORDS = {"predict": "the model's predict", "centroid": "nearest centroid", "knn": "10-NN vote"}
# columns every consumer may rely on, in this order; metric and label columns follow. The choice
# across descriptors is not here: best.json (compare stage), shown by vehiclust.compare.best.all_runs
RUN_COLUMNS = list(RUNS.columns)


def cluster_stage_key(run: RunFolder, names: list[str], settings: ClusterSettings) -> str:
    metas = [run.descriptor_meta(n) for n in names]
    backends = {"faiss": has_faiss(), "umap": has_umap(),
                "fast_hdbscan": importlib.util.find_spec("fast_hdbscan") is not None}
    return fingerprint("cluster", SWEEP_VERSION, names,
                       [m.get("fingerprint") or m.get("source_mtime_ns") for m in metas],
                       (run.stage_record("ingest") or {}).get("fingerprint"), result_settings(settings), backends)


def cluster_outputs(run: RunFolder, names: list[str], settings: ClusterSettings) -> list[Path]:
    """The files the cluster stage owns for these descriptors and settings."""
    outputs = [RUNS.path(run)] + [CLUSTERING.path(run, n) for n in names]
    if settings.keep_run_labels:
        outputs += [RUN_LABELS.path(run, n) for n in names]
    return outputs


def cluster(run: RunFolder, names: list[str], settings: ClusterSettings = ClusterSettings(),
            reporter: Reporter | None = None) -> pd.DataFrame:
    """Sweep every descriptor in ``names`` that has enough usable rows (the others are left out,
    with a warning); returns the runs table (also written to runs.csv)."""
    from vehiclust.run_descriptors import MIN_CLUSTER_ROWS, clusterable, usable_rows

    reporter = reporter or NullReporter()
    if not names:
        raise VehiclustError(f"{run.root}: no descriptors to cluster; run `vehiclust describe` first")
    kept = clusterable(run, names)
    left_out = {n: f"only {usable_rows(run, n)} usable rows (fewer than {MIN_CLUSTER_ROWS})"
                for n in names if n not in kept}
    for name, why in left_out.items():
        reporter.message(f"warning: {name}: {why}, left out of the clustering; the other descriptors go on")
    if not kept:
        raise VehiclustError(f"{run.root}: no descriptor has {MIN_CLUSTER_ROWS} usable rows to cluster")
    names = kept
    key = cluster_stage_key(run, names, settings)
    if run.stage_is_current("cluster", key, cluster_outputs(run, names, settings)):
        reporter.message("cluster: up to date")
        return RUNS.load(run)
    started = time.perf_counter()
    labels_table = _label_table(run, settings)
    runs = pd.concat(sweep_descriptors(run, names, settings, reporter, labels_table), ignore_index=True)
    runs = runs[RUN_COLUMNS + [c for c in runs.columns if c not in RUN_COLUMNS]]
    RUNS.save(run, runs)
    run.record_stage("cluster", key, time.perf_counter() - started, descriptors=names, left_out=left_out,
                     runs=len(runs),
                     executor=settings.executor.kind,
                     backends={"kmeans": "faiss" if has_faiss() else "sklearn", "umap": has_umap()})
    return runs


def _label_table(run: RunFolder, settings: ClusterSettings) -> pd.DataFrame | None:
    """The collection's label columns (for checks only), or None when it has none."""
    try:
        table = run.load_collection()
    except FileNotFoundError:
        return None
    wanted = [c for c in (*settings.label_columns, settings.identity_column) if c and c in table.columns]
    return table[wanted] if wanted else None


def sweep_descriptors(run: RunFolder, names: list[str], settings: ClusterSettings, reporter: Reporter,
                      labels_table: pd.DataFrame | None = None) -> list[pd.DataFrame]:
    """The runs of each descriptor of ``names``, in that order; saves each selected clustering.

    A descriptor whose families all run in worker processes (on spaces held in memory, not in
    scratch files) is finished only once the next descriptor's spaces are built: this process
    builds them (UMAP, on one core) while the workers finish its families, instead of the cores
    waiting on each descriptor's slowest family. The runs are the same in either order: every
    family's seeds are its own.
    """
    frames, waiting = [], None
    for name in names:
        sweep = DescriptorSweep.start(run, name, settings, reporter, labels_table)
        if waiting is not None:
            frames.append(waiting.finish())
            waiting = None
        if sweep.can_wait:
            waiting = sweep
        else:
            frames.append(sweep.finish())
    if waiting is not None:
        frames.append(waiting.finish())
    return frames


def sweep_descriptor(run: RunFolder, name: str, settings: ClusterSettings, reporter: Reporter,
                     labels_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """All runs of one descriptor; saves the selected one's clustering."""
    return DescriptorSweep.start(run, name, settings, reporter, labels_table).finish()


@dataclass
class DescriptorSweep:
    """One descriptor's sweep in two steps: :meth:`start` builds its spaces and starts every
    family on them; :meth:`finish` collects the families' runs, selects one and saves it."""

    run: RunFolder
    name: str
    matrix: np.ndarray
    rows: np.ndarray
    settings: ClusterSettings
    reporter: Reporter
    threads: int
    families: list[tuple[Space, Callable[[], list[tuple[dict, np.ndarray]]]]]
    # every family runs in a worker process (none waits for finish to run) and no space is a
    # scratch file: it may be finished after the next descriptor's sweep has started
    can_wait: bool

    @classmethod
    def start(cls, run: RunFolder, name: str, settings: ClusterSettings, reporter: Reporter,
              labels_table: pd.DataFrame | None = None) -> DescriptorSweep:
        matrix = run.load_descriptor(name)
        rows = valid_rows(matrix, run.invalid_rows(name))
        if len(rows) < 3:
            raise VehiclustError(f"{name}: only {len(rows)} usable rows, too few to cluster")
        threads = thread_budget(len(rows))
        checks = LabelChecks(labels_table.iloc[rows].reset_index(drop=True) if labels_table is not None else None,
                             settings.label_columns, settings.identity_column, settings.seed)
        with limited_threads(threads):
            try:
                runner = FamilyRunner(threads, settings, checks)
                families = _start_families(name, matrix, rows, settings, reporter, runner)
            except BaseException:
                drop_scratch_rows()
                raise
        mapped = holds_scratch_rows([a for space, _ in families for a in (space.X, space.input_X)])
        can_wait = runner.all_in_workers and not mapped
        return cls(run, name, matrix, rows, settings, reporter, threads, families, can_wait)

    def finish(self) -> pd.DataFrame:
        with limited_threads(self.threads):
            try:
                return _finish(self)
            finally:
                if not self.can_wait:  # one that can has none, and the next one's may be there
                    drop_scratch_rows()  # its memory-mapped spaces


def _start_families(name: str, matrix: np.ndarray, rows: np.ndarray, settings: ClusterSettings,
                    reporter: Reporter, runner: FamilyRunner) -> list[tuple[Space, Callable]]:
    """(space, the family's runs when asked for) per family: each space's families start once
    it is built."""
    families = []
    with reporter.task(f"Preparing {name} ({len(settings.preprocessing)} preprocessings)",
                       len(settings.preprocessing)) as task:
        for space in iter_spaces(matrix, rows, settings.preprocessing, settings,
                                 lambda text: reporter.message(f"{name}: {text}"), task.advance):
            families += [(space, runner.start(space, get_algorithm(a))) for a in settings.algorithms
                         if _runs_in(get_algorithm(a), space, settings)]
    if not families:
        raise VehiclustError(f"{name}: none of the preprocessings {', '.join(settings.preprocessing)} "
                             f"could run (see the messages above)")
    return families


def _finish(sweep: DescriptorSweep) -> pd.DataFrame:
    run, name, rows, settings = sweep.run, sweep.name, sweep.rows, sweep.settings
    records, labels_of = [], []
    with sweep.reporter.task(f"Clustering {name} ({len(sweep.families)} algorithm x preprocessing families)",
                             len(sweep.families)) as task:
        for space, runs in sweep.families:
            for record, labels in runs():
                records.append({"descriptor": name, **record})
                labels_of.append((space, labels.astype(np.int32)))
            task.advance()
    if not records:
        raise VehiclustError(f"{name}: no run was possible with {len(rows)} rows and these settings")
    frame = pd.DataFrame(records)
    frame["k"] = frame["k"].astype("Int64")
    frame["threads"] = sweep.threads
    runs, coarse = deliver_levels(select_run(frame, settings), labels_of, settings.seed,
                                  promote=not settings.prefer_few_clusters)
    chosen = int(np.flatnonzero(runs["selected"].to_numpy())[0])
    space, labels = labels_of[chosen]
    n_total = sweep.matrix.shape[0]
    save_clustering(run, name, n_total, rows, space, labels, runs.iloc[chosen])
    remove_file(COARSE_CLUSTERING.path(run, name))
    if coarse is not None:  # the delivered run is the finer level of a hierarchy (see vehiclust.cluster.levels)
        space, labels = labels_of[coarse]
        save_clustering(run, name, n_total, rows, space, labels, runs.iloc[coarse], COARSE_CLUSTERING)
    if settings.keep_run_labels:
        save_run_labels(run, name, n_total, rows, runs, [lab for _, lab in labels_of])
    return runs


class FamilyRunner:
    """Runs families (:func:`run_family`): :meth:`start` hands back the call that returns a
    family's runs. Where every fit takes one thread (small N, see ``thread_budget``) the
    families run side by side in worker processes (:mod:`vehiclust.executor.processes`), one
    per core, and start as soon as their space is built, so the linear spaces' families run
    while UMAP builds the next space; otherwise a family runs when its runs are asked for. The
    runs are the same either way: every family's seeds are its own."""

    def __init__(self, threads: int, settings: ClusterSettings, checks: LabelChecks):
        self.settings, self.checks = settings, checks
        self.pool = worker_pool(family_workers(threads, settings))
        self.all_in_workers = self.pool is not None

    def start(self, space: Space, algorithm: AlgorithmSpec) -> Callable[[], list[tuple[dict, np.ndarray]]]:
        sent = space.X.nbytes + (space.input_X.nbytes if space.input_X is not None else 0)
        pool = self.pool if sent <= WORKER_SPACE_BYTES else None  # an unreduced space: copied per family
        self.all_in_workers &= pool is not None
        return start(pool, family_runs, space, algorithm, self.settings, self.checks)


def family_runs(space: Space, algorithm: AlgorithmSpec, settings: ClusterSettings,
                checks: LabelChecks) -> list[tuple[dict, np.ndarray]]:
    return list(run_family(space, algorithm, settings, checks))


def family_workers(threads: int, settings: ClusterSettings) -> int:
    """Worker processes for the families: one per core when each fit runs on one thread and the
    executor is this process, else 1 (no pool). Not fewer on a busy machine, as ``thread_budget``
    does for threads: processes share the cores without spinning, and the load average counts
    this run's own workers."""
    if threads > 1 or settings.executor.kind != "local":
        return 1
    return available_cpus()


def _runs_in(algorithm: AlgorithmSpecSpec, space: Space, settings: ClusterSettings) -> bool:
    if settings.fixed_k is not None and not algorithm.takes_k:
        return False  # density-based algorithms cannot be told k
    return algorithm.max_dims is None or space.X.shape[1] <= algorithm.max_dims


def fit_cap(algorithm: AlgorithmSpecSpec, settings: ClusterSettings) -> int | None:
    cap = {"all": None, "fit": settings.fit_sample, "quadratic": settings.quadratic_sample,
           "umap": settings.umap_sample}[algorithm.fit_rows]
    if algorithm.max_fit_rows is not None:
        cap = min(cap or algorithm.max_fit_rows, algorithm.max_fit_rows)
    return cap


def fit_grid(algorithm: AlgorithmSpec, X: np.ndarray, grid: list[dict], seed: int,
             estimators: list | None = None) -> Iterator[tuple[object, np.ndarray, float]]:
    """(fitted estimator or None, labels, seconds) for each parameter set; ``estimators``: the
    unfitted ones to use (clones with another seed, for the stability refits)."""
    if algorithm.path:
        started = time.perf_counter()
        labels = algorithm.make(grid[0], seed).fit_path(X, [p["k"] for p in grid])
        share = (time.perf_counter() - started) / len(grid)
        for lab in labels:
            yield None, lab, share
        return
    for i, params in enumerate(grid):
        started = time.perf_counter()
        model = (estimators[i] if estimators is not None else algorithm.make(params, seed)).fit(X)
        yield model, np.asarray(model.labels_, dtype=np.int64), time.perf_counter() - started


def run_family(space: Space, algorithm: AlgorithmSpecSpec, settings: ClusterSettings,
               checks: LabelChecks | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """Every parameter set of one algorithm in one space: (runs.csv record, labels of all rows)."""
    seed = settings.seed
    fit_idx = space.sample(fit_cap(algorithm, settings), seed)
    grid = algorithm.grid(GridContext(settings.ks(), len(fit_idx), space.X.shape[1]))
    if not grid:
        return
    X_fit = space.X[fit_idx]
    refits, stability_seconds = stability_refits(space, algorithm, grid, len(fit_idx), settings)
    fits = []
    for model, fit_labels, seconds in fit_grid(algorithm, X_fit, grid, seed):
        started = time.perf_counter()
        labels = (assign(space, algorithm, model, fit_idx, fit_labels) if settings.executor.kind == "local"
                  else assign_rows(space.X, algorithm.assign, model, fit_idx, fit_labels, settings.executor))
        fits.append((model, labels, seconds + time.perf_counter() - started))
    started = time.perf_counter()
    silhouettes = silhouettes_on_samples(space.X, [labels for _, labels, _ in fits], settings.silhouette_sample,
                                         settings.silhouette_repeats, seed, space.silhouettes)
    shared_seconds = (stability_seconds + time.perf_counter() - started) / len(grid)
    for i, (model, labels, seconds) in enumerate(fits):
        started = time.perf_counter()
        record = {
            "preprocessing": space.name,
            "algorithm": algorithm.name,
            "params": format_params(grid[i]),
            "k": grid[i].get("k", np.nan),
            "n_rows": space.n,
            **clustering_metrics(space.X, labels, settings.executor),
            **silhouettes[i],
            **stability(labels, [(sub, lab[i]) for sub, lab in refits]),
            "fit_rows": len(fit_idx),
            "sampled": len(fit_idx) < space.n,
            "assignment": "none" if len(fit_idx) == space.n else ASSIGN_WORDS[algorithm.assign],
            "details": _details(model),
            **{k: v for k, v in space.info.items() if k != "preprocessing"},
            "sampling": sampling_note(space, algorithm, len(fit_idx), settings, refits),
        }
        if checks is not None:
            record.update(checks(labels))
        record["seconds"] = round(seconds + shared_seconds + time.perf_counter() - started, 3)
        yield record, labels


def assign(space: Space, algorithm: AlgorithmSpecSpec, model, fit_idx: np.ndarray, fit_labels: np.ndarray) -> np.ndarray:
    """Labels for every row of the space from labels of the fitted rows."""
    if len(fit_idx) == space.n:
        return fit_labels
    if algorithm.assign == "predict" and model is not None and hasattr(model, "predict"):
        labels = model.predict(space.X)
        labels[fit_idx] = fit_labels
        return labels
    if algorithm.assign == "centroid":
        centers, _, _ = cluster_geometry(space.X[fit_idx], fit_labels)
        labels = nearest_centroid(space.X, centers)[0]
        labels[fit_idx] = fit_labels
        return labels
    return space.assign_knn(fit_idx, fit_labels)


def stability_refits(space: Space, algorithm: AlgorithmSpecSpec, grid: list[dict], fit_rows: int,
                     settings: ClusterSettings) -> tuple[list[tuple[np.ndarray, list[np.ndarray]]], float]:
    """Refits on ``stability_repeats`` resamples with other seeds: [(rows, labels per params)].

    A resample is 80% as many rows as the run was fitted on (at most ``stability_sample``),
    drawn anew from all rows each repeat; the seed changes too, so both the data and the
    initialisation vary. UMAP itself is not refitted: stability is that of the clustering
    given the preprocessing.
    """
    started = time.perf_counter()
    size = min(settings.stability_sample, int(0.8 * fit_rows))
    models = [algorithm.make(params, settings.seed) for params in grid]
    refits = []
    for r in range(settings.stability_repeats):
        sub = space.sample(size, settings.seed + 1000 + r)
        seed = settings.seed + 1 + r
        clones = [algorithm.reseeded(model, seed) for model in models]
        fits = [lab for _, lab, _ in fit_grid(algorithm, space.X[sub], grid, seed, clones)]
        refits.append((sub, fits))
    return refits, time.perf_counter() - started


def stability(labels: np.ndarray, refits: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean (and spread) of the ARI between the run and each refit, on the refit's rows."""
    values = [adjusted_rand_score(labels[sub], lab) for sub, lab in refits]
    return {"stability": float(np.mean(values)) if values else float("nan"),
            "stability_std": float(np.std(values)) if len(values) > 1 else 0.0}


def _details(model) -> str:
    attrs = {"backend_": "backend", "covariance_type_": "covariance", "eps_": "eps", "threshold_": "threshold"}
    parts = []
    for attr, word in attrs.items():
        if model is not None and hasattr(model, attr):
            value = getattr(model, attr)
            parts.append(f"{word}={value:.4g}" if isinstance(value, float) else f"{word}={value}")
    return ", ".join(parts)


def sampling_note(space: Space, algorithm: AlgorithmSpecSpec, fit_rows: int, settings: ClusterSettings,
                  refits: list) -> str:
    """Every place this run sampled, in words ('' when it used all rows everywhere)."""
    n, info, parts = space.n, space.info, []
    if 0 < info.get("preprocess_fit_rows", n) < n:
        parts.append(f"preprocessing fitted on {info['preprocess_fit_rows']:,} of {n:,} rows")
    if info.get("umap_fit_rows", n) < n:
        parts.append(f"UMAP fitted on {info['umap_fit_rows']:,} rows, the others placed by 10-NN interpolation")
    if fit_rows < n:
        parts.append(f"{algorithm.name} fitted on {fit_rows:,} rows, the others by {ASSIGN_WORDS[algorithm.assign]}")
    if settings.silhouette_sample < n:
        parts.append(f"silhouette on {settings.silhouette_repeats} x {settings.silhouette_sample:,} rows")
    if refits:
        parts.append(f"stability from {len(refits)} refits on {len(refits[0][0]):,} rows")
    return "; ".join(parts)


def save_clustering(run: RunFolder, name: str, n_total: int, rows: np.ndarray, space: Space,
                    labels: np.ndarray, record: pd.Series, artifact=CLUSTERING) -> None:
    """Labels renumbered by size (cluster 0 is the largest), -1 for undescribed rows and noise."""
    present, compact = np.unique(labels[labels >= 0], return_inverse=True)
    order = np.argsort(-np.bincount(compact, minlength=len(present)), kind="stable")
    rename = np.empty(len(present), dtype=np.int64)
    rename[order] = np.arange(len(present))
    renamed = np.full(len(labels), -1, dtype=np.int64)
    renamed[labels >= 0] = rename[compact]
    centers, _, distance = cluster_geometry(space.X, renamed)
    full_labels = np.full(n_total, -1, dtype=np.int32)
    full_labels[rows] = renamed
    distance_input = None
    if space.input_X is not None:
        # UMAP pulls far-off rows into the clusters they border, so distances in its space hide
        # outliers; the linear space it started from keeps them (for the outlier stage)
        distance_input = _spread(cluster_geometry(space.input_X, renamed)[2], rows, n_total)
    artifact.save(run, Clustering(
        labels=full_labels, distance=_spread(distance, rows, n_total), centers=centers, embedding_rows=rows,
        preprocessing=str(record["preprocessing"]), algorithm=str(record["algorithm"]),
        params=str(record["params"]), distance_input=distance_input), name)


def save_run_labels(run: RunFolder, name: str, n_total: int, rows: np.ndarray, runs: pd.DataFrame,
                    labels: list[np.ndarray]) -> None:
    """Every run's labels (one row per runs.csv row of this descriptor, -1 outside ``rows``),
    keyed by preprocessing, algorithm and params; for benchmarks (``keep_run_labels``)."""
    full = np.full((len(labels), n_total), -1, dtype=np.int32)
    full[:, rows] = np.stack(labels)
    keys = {c: np.array(runs[c].astype(str).tolist(), dtype=str) for c in ("preprocessing", "algorithm", "params")}
    RUN_LABELS.save(run, {"labels": full, **keys}, name)


def _spread(values: np.ndarray, rows: np.ndarray, n_total: int) -> np.ndarray:
    out = np.full(n_total, np.nan, dtype=np.float32)
    out[rows] = values
    return out
