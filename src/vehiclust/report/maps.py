"""2D and 3D maps of each descriptor, stored in the run folder for the report and the notebook.

Layout::

    DIR/maps/<descriptor>_2d.npy   N x 2 float32 (NaN for rows without a valid vector)
    DIR/maps/<descriptor>_3d.npy   N x 3 float32
    DIR/maps/<descriptor>.json     method, rows fitted on, seconds, fingerprint

UMAP (the default) and PCA are fitted on a sample of at most ``fit_sample`` rows and every
other row is transformed. t-SNE has no transform: on large collections it embeds the sample
and places the other rows at the mean position of their nearest sampled neighbours.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from vehiclust.cluster.backends import knn_search
from vehiclust.cluster.preprocess import valid_rows
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import RunFolder, fingerprint, read_json, write_json, write_npy

METHODS = ("umap", "pca", "tsne")
MAPS_VERSION = 1
CHUNK = 20_000


@dataclass(frozen=True)
class MapSettings:
    method: str = "umap"
    fit_sample: int = 20_000  # rows the embedding is fitted on; the rest are transformed
    pca_dims: int = 50  # linear reduction before UMAP / t-SNE (speed; little effect on the map)
    n_neighbors: int = 15
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise VehiclustError(f"map method must be one of {', '.join(METHODS)}, got {self.method!r}")


def map_path(run: RunFolder, name: str, dims: int):
    return run.root / "maps" / f"{name}_{dims}d.npy"


def map_meta_path(run: RunFolder, name: str):
    return run.root / "maps" / f"{name}.json"


def load_map(run: RunFolder, name: str, dims: int = 2) -> np.ndarray:
    path = map_path(run, name, dims)
    if not path.exists():
        raise VehiclustError(f"{path} is missing; run `vehiclust report {run.root}` to compute the maps")
    return np.load(path)


def map_key(run: RunFolder, name: str, settings: MapSettings) -> str:
    meta = run.descriptor_meta(name)
    return fingerprint("maps", MAPS_VERSION, name, meta.get("fingerprint") or meta.get("source_mtime_ns"),
                       (run.stage_record("ingest") or {}).get("fingerprint"), asdict(settings))


def compute_maps(run: RunFolder, names: list[str], settings: MapSettings = MapSettings(),
                 message=lambda text: None) -> dict[str, dict]:
    """2D and 3D maps for every descriptor in ``names``; reuses stored maps whose inputs and
    settings did not change. Returns each map's provenance."""
    metas = {}
    for name in names:
        key = map_key(run, name, settings)
        meta_path = map_meta_path(run, name)
        if meta_path.exists() and read_json(meta_path).get("fingerprint") == key and all(
                map_path(run, name, d).exists() for d in (2, 3)):
            metas[name] = read_json(meta_path)
            continue
        message(f"maps: {name} ({settings.method})")
        metas[name] = _compute_one(run, name, settings, key)
    return metas


def _compute_one(run: RunFolder, name: str, settings: MapSettings, key: str) -> dict:
    started = time.perf_counter()
    matrix = run.load_descriptor(name)
    rows = valid_rows(matrix, run.invalid_rows(name))
    rng = np.random.default_rng(settings.seed)
    fit_rows = np.sort(rng.choice(rows, min(settings.fit_sample, len(rows)), replace=False))
    reducer = _linear_reducer(matrix, fit_rows, settings)
    for dims in (2, 3):
        coords = np.full((matrix.shape[0], dims), np.nan, dtype=np.float32)
        coords[rows] = embed(matrix, rows, fit_rows, reducer, dims, settings)
        write_npy(map_path(run, name, dims), coords)
    meta = {"descriptor": name, "method": settings.method, "n_rows": int(len(rows)),
            "fit_rows": int(len(fit_rows)), "transformed": bool(len(fit_rows) < len(rows)),
            "seconds": round(time.perf_counter() - started, 2), "fingerprint": key, **asdict(settings)}
    write_json(map_meta_path(run, name), meta)
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


def embed(matrix: np.ndarray, rows: np.ndarray, fit_rows: np.ndarray, reducer, dims: int,
          settings: MapSettings) -> np.ndarray:
    """Coordinates (len(rows) x dims) of ``matrix[rows]``, the model fitted on ``fit_rows``."""
    sample = _reduced(matrix, fit_rows, reducer)
    if settings.method == "pca":
        return _pad(_reduced(matrix, rows, reducer)[:, :dims], dims)
    if len(fit_rows) <= dims + 1:  # too few rows to embed: fall back to the PCA axes
        return _pad(_reduced(matrix, rows, reducer)[:, :dims], dims)
    if settings.method == "umap":
        model = _fit_umap(sample, dims, settings)
        fitted = dict(zip(fit_rows.tolist(), model.embedding_))
        return _transform_rest(matrix, rows, fit_rows, reducer, fitted, model.transform)
    embedding = _fit_tsne(sample, dims, settings)
    fitted = dict(zip(fit_rows.tolist(), embedding))
    return _transform_rest(matrix, rows, fit_rows, reducer, fitted,
                           lambda X: _place_by_neighbours(sample, embedding, X))


def _transform_rest(matrix, rows, fit_rows, reducer, fitted: dict, transform) -> np.ndarray:
    dims = len(next(iter(fitted.values())))
    out = np.empty((len(rows), dims), dtype=np.float32)
    in_sample = np.isin(rows, fit_rows)
    out[in_sample] = np.array([fitted[r] for r in rows[in_sample].tolist()], dtype=np.float32)
    rest = rows[~in_sample]
    if len(rest):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[~in_sample] = np.concatenate([transform(_reduced(matrix, rest[s:s + CHUNK], reducer))
                                              for s in range(0, len(rest), CHUNK)])
    return out


def _fit_umap(sample: np.ndarray, dims: int, settings: MapSettings):
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs/random_state and numba notices, not problems
        return umap.UMAP(n_components=dims, n_neighbors=min(settings.n_neighbors, len(sample) - 1),
                         random_state=settings.seed, low_memory=True).fit(sample)


def _fit_tsne(sample: np.ndarray, dims: int, settings: MapSettings) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(sample) - 1) // 3)))
    return TSNE(n_components=dims, perplexity=perplexity, init="pca",
                random_state=settings.seed).fit_transform(sample).astype(np.float32)


def _place_by_neighbours(sample: np.ndarray, embedding: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    _, index = knn_search(sample.astype(np.float32), queries.astype(np.float32), min(k, len(sample)))
    return embedding[index].mean(axis=1)


def _pad(coords: np.ndarray, dims: int) -> np.ndarray:
    if coords.shape[1] >= dims:
        return coords
    return np.hstack([coords, np.zeros((len(coords), dims - coords.shape[1]), np.float32)])
