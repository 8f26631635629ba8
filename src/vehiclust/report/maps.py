"""2D and 3D maps of each descriptor, stored in the run folder for the report and the notebook.

Layout::

    DIR/maps/<descriptor>_2d.npy   N x 2 float32 (NaN for rows without a valid vector)
    DIR/maps/<descriptor>_3d.npy   N x 3 float32
    DIR/maps/<descriptor>.json     method, rows fitted on, seconds, fingerprint

Every method is fitted on a sample of at most ``fit_sample`` rows. PCA transforms the other
rows exactly. UMAP and t-SNE place each other row at the distance-weighted mean position of its
``NEIGHBOURS`` nearest fitted rows (in the PCA space both start from): t-SNE has no transform,
and UMAP's own transform starts from this very placement and then optimises each point, which
measured about 4 minutes per 100k rows on this 2-core machine (one fit on 20k rows: about a
minute), too slow for 400k rows per descriptor and per dimension.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from vehiclust.cluster.backends import UMAP_EXACT_BELOW, limited_threads, umap_neighbour_graph
from vehiclust.cluster.preprocess import KNNPlacement, valid_rows
from vehiclust.errors import VehiclustError
from vehiclust.executor.base import available_cpus
from vehiclust.executor.processes import start, worker_pool
from vehiclust.runfolder import MAP, MAP_META, RunFolder, fingerprint

METHODS = ("umap", "pca", "tsne")
# 4: the 2D and 3D UMAP maps share one neighbour search; 5: an exact one; 6: 200 epochs; 7: on one thread
MAPS_VERSION = 7
CHUNK = 20_000
NEIGHBOURS = 10


@dataclass(frozen=True)
class MapSettings:
    method: str = "umap"
    fit_sample: int = 10_000  # rows the embedding is fitted on; the rest are placed among them
    pca_dims: int = 50  # linear reduction before UMAP / t-SNE (speed; little effect on the map)
    n_neighbors: int = 15
    # umap-learn's own default is 500 epochs up to 10,000 rows, 200 above: measured on the demo's
    # 5,000-row samples, 200 took 0.42x the time with trustworthiness within 0.002 (2D) and equal (3D)
    n_epochs: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise VehiclustError(f"map method must be one of {', '.join(METHODS)}, got {self.method!r}")


def load_map(run: RunFolder, name: str, dims: int = 2) -> np.ndarray:
    return np.load(MAP.require(run, name, dims=dims))


def map_key(run: RunFolder, name: str, settings: MapSettings) -> str:
    meta = run.descriptor_meta(name)
    return fingerprint("maps", MAPS_VERSION, name, meta.get("fingerprint") or meta.get("source_mtime_ns"),
                       (run.stage_record("ingest") or {}).get("fingerprint"), asdict(settings))


def compute_maps(run: RunFolder, names: list[str], settings: MapSettings = MapSettings(),
                 message=lambda text: None) -> dict[str, dict]:
    """2D and 3D maps for every descriptor in ``names``; reuses stored maps whose inputs and
    settings did not change. Returns each map's provenance. The descriptors' maps are computed
    side by side in worker processes, one per core (UMAP's layout runs on one thread)."""
    metas, stale = {}, {}
    for name in names:
        key = map_key(run, name, settings)
        stored = _stored_meta(run, name)
        if stored.get("fingerprint") == key and all(MAP.exists(run, name, dims=d) for d in (2, 3)):
            metas[name] = stored
        else:
            stale[name] = key
    pool = worker_pool(available_cpus() if len(stale) > 1 else 1)
    pending = {}
    for name, key in stale.items():
        message(f"maps: {name} ({settings.method})")
        pending[name] = start(pool, _compute_on_one_thread, run, name, settings, key)
    metas.update({name: result() for name, result in pending.items()})
    return {name: metas[name] for name in names}


def _stored_meta(run: RunFolder, name: str) -> dict:
    """The stored map's provenance; {} when there is none or it is damaged (the map is made again)."""
    if not MAP_META.exists(run, name):
        return {}
    try:
        meta = MAP_META.load(run, name)
    except VehiclustError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _compute_on_one_thread(run: RunFolder, name: str, settings: MapSettings, key: str) -> dict:
    """:func:`_compute_one` on one thread, here or in a worker: UMAP turns the last bits in which
    BLAS results of different thread counts differ into another layout, so a map must not depend
    on whether it was computed alone or beside others."""
    with limited_threads(1):
        return _compute_one(run, name, settings, key)


def _compute_one(run: RunFolder, name: str, settings: MapSettings, key: str) -> dict:
    started = time.perf_counter()
    matrix = run.load_descriptor(name)
    rows = valid_rows(matrix, run.invalid_rows(name))
    rng = np.random.default_rng(settings.seed)
    fit_rows = np.sort(rng.choice(rows, min(settings.fit_sample, len(rows)), replace=False))
    reduced = _reduced(matrix, rows, _linear_reducer(matrix, fit_rows, settings))
    fitted = np.isin(rows, fit_rows)
    neighbours = _neighbours(reduced, fitted) if settings.method != "pca" else None  # shared by 2D and 3D
    graph = sample_graph(reduced[fitted], settings) if settings.method == "umap" else None  # the same
    for dims in (2, 3):
        coords = np.full((matrix.shape[0], dims), np.nan, dtype=np.float32)
        coords[rows] = embed(reduced, fitted, dims, settings, neighbours, graph)
        MAP.save(run, coords, name, dims=dims)
    placement = "PCA transform" if settings.method == "pca" else f"weighted mean of the {NEIGHBOURS} nearest fitted rows"
    meta = {"descriptor": name, "method": settings.method, "n_rows": int(len(rows)), "placement": placement,
            "fit_rows": int(len(fit_rows)), "transformed": bool(len(fit_rows) < len(rows)),
            "seconds": round(time.perf_counter() - started, 2), "fingerprint": key, **asdict(settings)}
    MAP_META.save(run, meta, name)
    return meta


def _linear_reducer(matrix: np.ndarray, fit_rows: np.ndarray, settings: MapSettings):
    """Standardise and PCA-reduce, fitted on the sample, applied chunk by chunk to all rows."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sample = np.asarray(matrix[fit_rows], dtype=np.float32)
    dims = min(settings.pca_dims, sample.shape[1], len(sample))
    return make_pipeline(StandardScaler(), PCA(dims, random_state=settings.seed)).fit(sample)


def _reduced(matrix: np.ndarray, rows: np.ndarray, reducer) -> np.ndarray:
    parts = [reducer.transform(np.asarray(matrix[rows[s:s + CHUNK]], dtype=np.float32))
             for s in range(0, len(rows), CHUNK)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 1), np.float32)


def _neighbours(reduced: np.ndarray, fitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices (into the fitted rows) of each other row's nearest fitted rows."""
    return KNNPlacement(NEIGHBOURS).fit(reduced[fitted]).kneighbors(reduced[~fitted])




def sample_graph(sample: np.ndarray, settings: MapSettings):
    """The fitted rows' exact nearest-neighbour graph, found once for both the 2D and the 3D map
    instead of once per fit (``cluster.backends.umap_neighbour_graph`` says why not
    pynndescent); None where umap computes exact distances itself."""
    if len(sample) < UMAP_EXACT_BELOW:
        return None
    return umap_neighbour_graph(sample, _umap_neighbours(sample, settings))


def _umap_neighbours(sample: np.ndarray, settings: MapSettings) -> int:
    return min(settings.n_neighbors, len(sample) - 1)


def embed(reduced: np.ndarray, fitted: np.ndarray, dims: int, settings: MapSettings,
          neighbours: tuple[np.ndarray, np.ndarray] | None = None, graph=None) -> np.ndarray:
    """Coordinates (len(reduced) x dims): the method fitted on the rows where ``fitted`` is
    true, the other rows placed among them. ``graph``: the fitted rows' :func:`sample_graph`."""
    if settings.method == "pca" or fitted.sum() <= dims + 1:  # PCA, or too few rows to embed
        return _pad(reduced[:, :dims], dims)
    sample = reduced[fitted]
    if settings.method == "umap":
        embedding = _fit_umap(sample, dims, settings, graph).embedding_.astype(np.float32)
    else:
        embedding = _fit_tsne(sample, dims, settings)
    out = np.empty((len(reduced), dims), dtype=np.float32)
    out[fitted] = embedding
    if (~fitted).any():
        neighbours = neighbours if neighbours is not None else _neighbours(reduced, fitted)
        out[~fitted] = KNNPlacement(NEIGHBOURS).fit(sample, embedding).interpolate(*neighbours)
    return out


def _fit_umap(sample: np.ndarray, dims: int, settings: MapSettings, graph=None):
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs/random_state and numba notices, not problems
        return umap.UMAP(n_components=dims, n_neighbors=_umap_neighbours(sample, settings),
                         n_epochs=settings.n_epochs, random_state=settings.seed, low_memory=True,
                         precomputed_knn=graph or (None, None, None)
                         ).fit(sample)


def _fit_tsne(sample: np.ndarray, dims: int, settings: MapSettings) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(sample) - 1) // 3)))
    return TSNE(n_components=dims, perplexity=perplexity, init="pca",
                random_state=settings.seed).fit_transform(sample).astype(np.float32)


def _pad(coords: np.ndarray, dims: int) -> np.ndarray:
    if coords.shape[1] >= dims:
        return coords
    return np.hstack([coords, np.zeros((len(coords), dims - coords.shape[1]), np.float32)])
