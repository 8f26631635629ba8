"""The cluster stage: for each descriptor, k-means over a range of k, metrics, selection.

Outputs: ``runs.csv`` (one row per run, with why the selected ones won) and
``clusterings/<descriptor>.npz`` (labels of the selected run, -1 for rows that could not be
described, plus each row's distance to its centroid for the outlier stage).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score

from vehiclust.cluster.metrics import internal_metrics
from vehiclust.cluster.preprocess import Preprocessing, transform
from vehiclust.cluster.select import select_overall, select_run
from vehiclust.errors import VehiclustError
from vehiclust.progress import NullReporter, Reporter
from vehiclust.runfolder import RunFolder, atomic_path, fingerprint, write_csv

MINIBATCH_ABOVE = 100_000  # rows; full-batch Lloyd is exact but slow past this


@dataclass(frozen=True)
class ClusterSettings:
    k_min: int = 2
    k_max: int = 15
    seed: int = 0
    silhouette_sample: int = 5000
    stability_sample: int = 20000
    preprocessing: Preprocessing = field(default_factory=Preprocessing)


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


def cluster_stage_key(run: RunFolder, names: list[str], settings: ClusterSettings) -> str:
    metas = [run.descriptor_meta(n) for n in names]
    return fingerprint("cluster", names, [m.get("fingerprint") or m.get("source_mtime_ns") for m in metas],
                       asdict(settings))


def cluster(run: RunFolder, names: list[str], settings: ClusterSettings = ClusterSettings(),
            reporter: Reporter | None = None) -> pd.DataFrame:
    """Sweep every descriptor in ``names``; returns the runs table (also written to runs.csv)."""
    reporter = reporter or NullReporter()
    if not names:
        raise VehiclustError(f"{run.root}: no descriptors to cluster; run `vehiclust describe` first")
    key = cluster_stage_key(run, names, settings)
    outputs = [run.path("runs.csv")] + [clustering_path(run, n) for n in names]
    if run.stage_is_current("cluster", key, outputs):
        reporter.message("cluster: up to date")
        return pd.read_csv(run.path("runs.csv"))
    started = time.perf_counter()
    frames = [sweep_descriptor(run, name, settings, reporter) for name in names]
    runs = pd.concat(frames, ignore_index=True)
    runs = select_overall(runs)
    write_csv(run.path("runs.csv"), runs)
    run.record_stage("cluster", key, time.perf_counter() - started, descriptors=names)
    return runs


def clustering_path(run: RunFolder, name: str):
    return run.root / "clusterings" / f"{name}.npz"


def sweep_descriptor(run: RunFolder, name: str, settings: ClusterSettings, reporter: Reporter) -> pd.DataFrame:
    matrix = run.load_descriptor(name)
    invalid = run.invalid_rows(name)
    rows = np.setdiff1d(np.arange(matrix.shape[0]), np.fromiter(invalid, dtype=np.int64))
    if len(rows) < settings.k_min + 1:
        raise VehiclustError(f"{name}: only {len(rows)} usable rows, too few to cluster")
    X, prep_record = transform(matrix, rows, settings.preprocessing)
    ks = [k for k in range(settings.k_min, settings.k_max + 1) if k < len(rows)]
    records, fits = [], {}
    with reporter.task(f"Clustering {name} (k-means, k={ks[0]}..{ks[-1]})", len(ks)) as task:
        for k in ks:
            t0 = time.perf_counter()
            model = _kmeans(k, len(X), settings.seed).fit(X)
            labels = model.labels_
            record = {
                "descriptor": name, **prep_record, "algorithm": _algorithm_name(len(X)),
                "params": f"k={k}", "n_clusters": int(len(np.unique(labels))), "n_rows": int(len(X)),
                **internal_metrics(X, labels, settings.silhouette_sample, seed=settings.seed),
                "stability": stability(X, labels, k, settings),
            }
            record["seconds"] = round(time.perf_counter() - t0, 3)
            records.append(record)
            fits[k] = model
            task.advance()
    runs = select_run(pd.DataFrame(records))
    best_k = int(runs.loc[runs["selected"], "params"].iloc[0].split("=")[1])
    _save_selected(run, name, matrix.shape[0], rows, X, fits[best_k])
    return runs


def _kmeans(k: int, n: int, seed: int):
    if n > MINIBATCH_ABOVE:
        return MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=3)
    return KMeans(n_clusters=k, random_state=seed, n_init=3)


def _algorithm_name(n: int) -> str:
    return "minibatch_kmeans" if n > MINIBATCH_ABOVE else "kmeans"


def stability(X: np.ndarray, labels: np.ndarray, k: int, settings: ClusterSettings) -> float:
    """ARI between the run and a refit on a random half with another seed, on the shared rows.

    A k that only splits noise moves between refits; a real structure stays put.
    """
    rng = np.random.default_rng(settings.seed + 1)
    size = min(len(X), settings.stability_sample)
    half = rng.choice(len(X), size=max(size // 2, k + 1), replace=False)
    refit = _kmeans(k, len(half), settings.seed + 1).fit(X[half])
    probe = rng.choice(len(X), size=size, replace=False)
    return float(adjusted_rand_score(labels[probe], refit.predict(X[probe])))


def _save_selected(run: RunFolder, name: str, n_total: int, rows: np.ndarray, X: np.ndarray, model) -> None:
    """Labels renumbered by size (cluster 0 is the largest), -1 for undescribed rows."""
    raw = model.labels_
    order = np.argsort(-np.bincount(raw, minlength=model.n_clusters), kind="stable")
    rename = np.empty_like(order)
    rename[order] = np.arange(len(order))
    labels = np.full(n_total, -1, dtype=np.int32)
    labels[rows] = rename[raw]
    distance = np.full(n_total, np.nan, dtype=np.float32)
    distance[rows] = np.linalg.norm(X - model.cluster_centers_[raw], axis=1)
    path = clustering_path(run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, labels=labels, distance=distance, embedding_rows=rows,
                     centers=model.cluster_centers_[order].astype(np.float32))
