"""Fusion of descriptor blocks into one matrix, stored as a derived descriptor.

Per block (fitted on a sample, applied chunk by chunk straight from the memmaps):
optional row normalisation (``unit``), centring, PCA when the block is wider than
``block_dims``, then one scale factor so that the block's total variance is 1. A 2560-d block
and a 13-d block then carry the same variance, so neither dominates distances by its width.
Weights scale blocks by sqrt(w): a block's share of the fused variance is w / sum(w).
After concatenation a PCA (fitted on a sample) keeps ``mix_dims`` components.

Memory: one chunk of every block at a time plus the output (N x mix_dims float32); the samples
that fit the PCAs are at most ``FIT_ROWS`` rows.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from vehiclust.cluster.preprocess import PCAReduce, valid_rows
from vehiclust.runfolder import RunFolder, atomic_path, fingerprint

CHUNK = 16384
FIT_ROWS = 50_000
FUSION_VERSION = 1
MAX_KEPT_SCALERS = 32  # fitted block scalers kept per process (each at most 64 x D floats)
_SCALERS: dict[tuple, BlockScaler] = {}


@dataclass
class BlockScaler:
    """One block's normalisation: ``transform(X) = pca((rownorm(X) - mean)) * scale``."""

    norm: str = "variance"
    max_dims: int = 64
    seed: int = 0

    def fit(self, X: np.ndarray) -> BlockScaler:
        X = self._rownorm(np.asarray(X, dtype=np.float32))
        self.mean_ = X.mean(0)
        centred = X - self.mean_
        self.pca_ = None
        if X.shape[1] > self.max_dims:
            self.pca_ = PCAReduce(n_components=self.max_dims, random_state=self.seed).fit(centred)
            centred = self.pca_.transform(centred)
        total = float(centred.var(0).sum())
        self.scale_ = 1.0 / np.sqrt(total) if total > 1e-12 else 1.0
        self.out_dims_ = centred.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        out = self._rownorm(np.asarray(X, dtype=np.float32)) - self.mean_
        if self.pca_ is not None:
            out = self.pca_.transform(out)
        return (out * self.scale_).astype(np.float32)

    def _rownorm(self, X: np.ndarray) -> np.ndarray:
        if self.norm != "unit":
            return X
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def common_valid_rows(run: RunFolder, blocks: tuple[str, ...]) -> np.ndarray:
    """Rows valid in every block (a placeholder row in any block is left out of the mixture)."""
    keep = None
    for name in blocks:
        rows = valid_rows(run.load_descriptor(name), run.invalid_rows(name))
        keep = rows if keep is None else np.intersect1d(keep, rows, assume_unique=True)
    return keep


def fit_blocks(run: RunFolder, blocks: tuple[str, ...], fit_rows: np.ndarray, norm: str, max_dims: int,
               seed: int) -> list[BlockScaler]:
    return [_fitted_scaler(run, name, fit_rows, norm, max_dims, seed) for name in blocks]


def _fitted_scaler(run: RunFolder, name: str, fit_rows: np.ndarray, norm: str, max_dims: int,
                   seed: int) -> BlockScaler:
    """One block's scaler, fitted once per process for the same descriptor file, rows and settings:
    the compare stage fits each block for every mixture it is in and again for the common space,
    on the same sample when the blocks have the same valid rows (the demo's ``all``, its pair and
    the common space: 10 fits, 4 different). The fit is deterministic, so a kept one is the one
    a new fit would give."""
    path = run.descriptor_path(name)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, run.descriptor_meta(name).get("fingerprint"),
           len(fit_rows), hashlib.sha1(np.ascontiguousarray(fit_rows).tobytes()).hexdigest(), norm, max_dims, seed)
    if key not in _SCALERS:
        while len(_SCALERS) >= MAX_KEPT_SCALERS:
            _SCALERS.pop(next(iter(_SCALERS)))
        _SCALERS[key] = BlockScaler(norm, max_dims, seed).fit(run.load_descriptor(name)[fit_rows])
    return _SCALERS[key]


def normalised_blocks(run: RunFolder, blocks: tuple[str, ...], scalers: list[BlockScaler],
                      rows: np.ndarray) -> list[np.ndarray]:
    return [s.transform(run.load_descriptor(n)[rows]) for n, s in zip(blocks, scalers)]


def weighted(parts: list[np.ndarray], weights) -> np.ndarray:
    """Concatenation with each block scaled by sqrt(its share of the weights)."""
    shares = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    return np.hstack([p * np.float32(np.sqrt(w)) for p, w in zip(parts, shares)])


def block_rows(run: RunFolder, blocks: tuple[str, ...], scalers: list[BlockScaler], rows: np.ndarray,
               weights: np.ndarray) -> np.ndarray:
    """The weighted, normalised concatenation of ``rows`` (few enough to hold in memory)."""
    return weighted(normalised_blocks(run, blocks, scalers, rows), weights)


def sample_rows(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(rows) <= size:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def fuse(run: RunFolder, blocks: tuple[str, ...], weights: np.ndarray, rows: np.ndarray, norm: str = "variance",
         block_dims: int = 64, mix_dims: int = 64, seed: int = 0, scalers: list[BlockScaler] | None = None,
         out: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The fused matrix of ``rows`` (written into ``out`` when given, e.g. a memmap) and its
    provenance: blocks, weights, normalisation, dimensions, variance kept."""
    started = time.perf_counter()
    fit = sample_rows(rows, FIT_ROWS, seed)
    scalers = scalers or fit_blocks(run, blocks, fit, norm, block_dims, seed)
    concat_dims = sum(s.out_dims_ for s in scalers)
    reducer = None
    if concat_dims > mix_dims:
        reducer = PCAReduce(n_components=mix_dims, random_state=seed).fit(block_rows(run, blocks, scalers, fit, weights))
    width = reducer.components_.shape[0] if reducer is not None else concat_dims
    if out is None:
        out = np.empty((len(rows), width), dtype=np.float32)
    for start in range(0, len(rows), CHUNK):
        block = block_rows(run, blocks, scalers, rows[start:start + CHUNK], weights)
        out[start:start + len(block)] = reducer.transform(block) if reducer is not None else block
    shares = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    info = {
        "blocks": list(blocks),
        "weights": [round(float(w), 4) for w in shares],
        "block_norm": norm,
        "block_dims": {n: int(s.out_dims_) for n, s in zip(blocks, scalers)},
        "concatenated_dims": int(concat_dims),
        "dims": int(width),
        "variance_kept_after_concatenation": reducer.explained_variance_ratio_ if reducer is not None else 1.0,
        "fit_rows": int(len(fit)),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return out, info


def mixture_key(run: RunFolder, blocks: tuple[str, ...], weights, norm: str, block_dims: int, mix_dims: int,
                seed: int, tuning=None) -> str:
    """Fingerprint of a stored mixture: its blocks' own fingerprints, the fusion settings, and
    how weights were measured (criterion, held-out share) when the user gave none."""
    metas = [run.descriptor_meta(n) for n in blocks]
    return fingerprint("mixture", FUSION_VERSION, list(blocks), None if weights is None else list(weights), norm,
                       block_dims, mix_dims, seed, tuning,
                       [m.get("fingerprint") or m.get("source_mtime_ns") for m in metas])


def store_mixture(run: RunFolder, name: str, blocks: tuple[str, ...], weights: np.ndarray, key: str,
                  norm: str, block_dims: int, mix_dims: int, seed: int, tuning: dict | None,
                  scalers: list[BlockScaler] | None = None) -> dict:
    """Fuse every valid row into ``descriptors/<name>.npy`` (streamed into a memmap); rows
    invalid in any block are zero placeholders listed as ``invalid``, as for extracted ones."""
    n_total = run.load_descriptor(blocks[0]).shape[0]
    rows = common_valid_rows(run, blocks)
    scalers = scalers or fit_blocks(run, blocks, sample_rows(rows, FIT_ROWS, seed), norm, block_dims, seed)
    width = min(sum(s.out_dims_ for s in scalers), mix_dims)
    path = run.descriptor_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_total, width))  # zeros
        _, info = fuse(run, blocks, weights, rows, norm, block_dims, mix_dims, seed, scalers, _RowView(out, rows))
        out.flush()
        del out
    invalid = np.setdiff1d(np.arange(n_total), rows)
    meta = {"name": name, "kind": "mixture", "fingerprint": key, "dtype": "float32", "shape": [n_total, width],
            "summary": f"mixture of {' + '.join(blocks)} (weights {', '.join(f'{w:.2f}' for w in info['weights'])})",
            "invalid": {str(int(r)): "invalid in a block of the mixture" for r in invalid},
            "tuning": tuning or {"how": "weights given by the user"}, **info}
    run.save_descriptor_meta(name, meta)
    return meta


class _RowView:
    """``out[a:b] = block`` writes to ``target[rows[a:b]]``: fuse() fills a memmap in place."""

    def __init__(self, target: np.ndarray, rows: np.ndarray):
        self.target, self.rows = target, rows

    def __setitem__(self, index: slice, value: np.ndarray) -> None:
        self.target[self.rows[index]] = value
