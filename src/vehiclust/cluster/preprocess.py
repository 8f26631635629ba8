"""Descriptor matrix -> the space clustering runs in.

Fitted on a sample, applied to every row chunk by chunk, so a 416k x 2560 float16 memmap is
never converted whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA


@dataclass(frozen=True)
class Preprocessing:
    l2: bool = True  # CNN features live on directions: cosine geometry
    pca_components: int | None = 50
    fit_sample: int = 20000
    seed: int = 0


def _normalise(block: np.ndarray, l2: bool) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32)
    if l2:
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block = block / np.maximum(norms, 1e-12)
    return block


def transform(matrix: np.ndarray, rows: np.ndarray, prep: Preprocessing, chunk: int = 65536) -> tuple[np.ndarray, dict]:
    """The preprocessed rows ``rows`` of ``matrix`` (float32) and a record of what was done."""
    rng = np.random.default_rng(prep.seed)
    fit_rows = np.sort(rng.choice(rows, size=min(prep.fit_sample, len(rows)), replace=False))
    sample = _normalise(matrix[fit_rows], prep.l2)
    n_components = min(prep.pca_components or 0, sample.shape[1], max(len(fit_rows) - 1, 1))
    pca = PCA(n_components=n_components, random_state=prep.seed).fit(sample) if n_components and \
        n_components < sample.shape[1] else None
    out_width = pca.n_components_ if pca is not None else sample.shape[1]
    out = np.empty((len(rows), out_width), dtype=np.float32)
    for start in range(0, len(rows), chunk):
        block = _normalise(matrix[rows[start:start + chunk]], prep.l2)
        out[start:start + chunk] = pca.transform(block) if pca is not None else block
    record = {
        "preprocessing": "+".join((["l2"] if prep.l2 else []) + ([f"pca{out_width}"] if pca else []))
        or "none",
        "fit_rows": int(len(fit_rows)),
        "explained_variance": float(pca.explained_variance_ratio_.sum()) if pca is not None else 1.0,
    }
    return out, record
