"""Exact and near duplicates.

* **duplicate** (absolute): byte-identical files, by the collection's ``content_hash``. The first
  row of each group is the original (score 0); every later copy scores 1 and names it.
* **near_duplicate** (absolute): the same picture re-encoded, shifted by a pixel or two, or
  resized. Candidates: 64-bit DCT perceptual hashes (from the ``quality`` descriptor) at most
  ``max_distance`` bits apart (default 4), or twice that for images of identical width and
  height. A 64-bit hash alone is too coarse for traffic cameras (the same camera and vehicle
  model give the same coarse layout: on the demo, 2 of 3 pairs within 4 bits were different
  captures), so a candidate is confirmed by a signature that a copy keeps and another capture
  does not: mean luminance, contrast, chroma and log aspect ratio, each within
  ``SIGNATURE_TOLERANCE`` (0.03; 0.01 between images of different sizes, where the only
  candidates are the 4-bit ones). The later row scores
  ``1 - max(d / (4 max_distance), diff / (2 tolerance))`` (0.5 at either limit) and names the
  earlier one.
  Byte-identical pairs are left to ``duplicate``.

Pairs are found without comparing all N^2: split into ``max_distance + 1`` chunks, two hashes
within that distance agree exactly on at least one chunk (pigeonhole), so only rows that share a
chunk value (or a size) are compared. Very large runs of one value (featureless images share
hashes) fall back to exact hash equality.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEAR_MAX_DISTANCE = 4
SIGNATURE_TOLERANCE = 0.03  # brightness, contrast, chroma, log aspect of a copy differ less
RESIZED_TOLERANCE = 0.01  # ... and of a copy of another size (weaker hash evidence): much less
MAX_RUN = 2048  # rows sharing one chunk value that are still compared pairwise

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount64(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _POPCOUNT8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1).astype(np.int64)


def hashes_from_chunks(chunks: np.ndarray) -> np.ndarray:
    """N x 4 array of 16-bit chunks (as stored in the quality matrix) -> N uint64 hashes."""
    c = np.asarray(chunks, dtype=np.float64).round().astype(np.uint64)
    return (c[:, 0] << np.uint64(48)) | (c[:, 1] << np.uint64(32)) | (c[:, 2] << np.uint64(16)) | c[:, 3]


def exact_duplicates(content_hash: pd.Series | np.ndarray, valid: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(score, original row or -1) per row: 1 for every copy after the first of its hash."""
    hashes = pd.Series(np.asarray(content_hash, dtype=object)).fillna("").astype(str)
    ok = (hashes != "").to_numpy().copy()
    if valid is not None:
        ok &= np.asarray(valid, bool)
    original = np.full(len(hashes), -1, dtype=np.int64)
    rows = np.flatnonzero(ok)
    if len(rows):
        first = pd.Series(rows).groupby(hashes.iloc[rows].to_numpy()).transform("min").to_numpy()
        later = first != rows
        original[rows[later]] = first[later]
    return (original >= 0).astype(np.float64), original


def _chunk_bounds(bits: int, pieces: int) -> list[tuple[int, int]]:
    base, extra = divmod(bits, pieces)
    bounds, start = [], 0
    for i in range(pieces):
        width = base + (1 if i < extra else 0)
        bounds.append((start, width))
        start += width
    return bounds


def _pairs_in_runs(keys: np.ndarray, rows: np.ndarray, hashes: np.ndarray, max_distance: int) -> list[np.ndarray]:
    """Pairs of rows sharing a key value (runs of at most MAX_RUN rows) within ``max_distance``
    bits; larger runs contribute only pairs with identical hashes."""
    found = []
    order = np.argsort(keys, kind="stable")
    k, r = keys[order], rows[order]
    if not len(k):
        return found
    run_id = np.concatenate([[0], np.cumsum(k[1:] != k[:-1])])
    run_size = np.bincount(run_id)[run_id]
    small = run_size <= MAX_RUN
    positions = np.flatnonzero(small)
    t = 1
    while len(positions):  # compare each position with the one t places on, while in its run
        positions = positions[positions + t < len(k)]
        positions = positions[run_id[positions + t] == run_id[positions]]
        if not len(positions):
            break
        a, b = r[positions], r[positions + t]
        d = popcount64(hashes[a] ^ hashes[b])
        keep = d <= max_distance
        found.append(np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep], d[keep]], axis=1))
        t += 1
    big = np.flatnonzero(~small)
    if len(big):
        frame = pd.DataFrame({"row": r[big], "hash": hashes[r[big]]})
        first = frame.groupby("hash")["row"].transform("min").to_numpy()
        later = first != frame["row"].to_numpy()
        found.append(np.stack([first[later], frame["row"].to_numpy()[later],
                               np.zeros(int(later.sum()), dtype=np.int64)], axis=1))
    return found


def candidate_pairs(hashes: np.ndarray, rows: np.ndarray, max_distance: int,
                    size_keys: np.ndarray | None = None, same_size_distance: int | None = None) -> pd.DataFrame:
    """Pairs (earlier row i, later row j, distance d): any two rows within ``max_distance`` bits
    (pigeonhole over ``max_distance + 1`` chunks), and rows of the same ``size_keys`` value (an
    unresized copy keeps its width and height) within ``same_size_distance`` bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for shift, width in _chunk_bounds(64, max_distance + 1):
        key = (hashes[rows] >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        found += _pairs_in_runs(key, rows, hashes, max_distance)
    if size_keys is not None and same_size_distance is not None:
        found += _pairs_in_runs(np.asarray(size_keys)[rows], rows, hashes, same_size_distance)
    found = [f for f in found if len(f)]
    if not found:
        return pd.DataFrame({"i": [], "j": [], "d": []}, dtype=np.int64)
    pairs = pd.DataFrame(np.concatenate(found), columns=["i", "j", "d"]).drop_duplicates()
    return pairs[pairs["i"] != pairs["j"]].reset_index(drop=True)


def near_duplicates(hashes: np.ndarray, valid: np.ndarray | None = None, exact_original: np.ndarray | None = None,
                    max_distance: int = NEAR_MAX_DISTANCE, signature: np.ndarray | None = None,
                    size_keys: np.ndarray | None = None, max_signature_diff: float = SIGNATURE_TOLERANCE,
                    resized_signature_diff: float = RESIZED_TOLERANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, earlier row or -1, hash distance in bits or -1) per row.

    ``signature`` (N x m, e.g. brightness, contrast, chroma, log aspect ratio) confirms a
    candidate: every column within ``max_signature_diff``, or ``resized_signature_diff`` when the
    two differ in size (``size_keys``). Same-size rows are compared up to ``2 * max_distance``
    bits. Score: ``1 - max(d / (4 max_distance), diff / (2 tolerance))``, 0.5 at the limits.
    """
    n = len(hashes)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if exact_original is not None:
        valid = valid & (np.asarray(exact_original) < 0)  # copies are left to 'duplicate'
    score = np.zeros(n)
    original = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        return score, original, distance
    limit = 2 * max_distance
    pairs = candidate_pairs(hashes, rows, max_distance, size_keys, limit)
    if pairs.empty:
        return score, original, distance
    i, j, d = (pairs[c].to_numpy() for c in ("i", "j", "d"))
    pair_score = 1.0 - d / (2.0 * max(limit, 1))
    if signature is not None:
        sig = np.asarray(signature, dtype=np.float64)
        diff = np.nanmax(np.abs(sig[i] - sig[j]), axis=1)
        tolerance = np.full(len(i), max_signature_diff)
        if size_keys is not None:
            keys = np.asarray(size_keys)
            tolerance[keys[i] != keys[j]] = resized_signature_diff
        pair_score = np.minimum(pair_score, 1.0 - np.nan_to_num(diff, nan=np.inf) / (2.0 * tolerance))
    keep = pair_score >= 0.5
    best = pd.DataFrame({"i": i[keep], "j": j[keep], "d": d[keep], "s": pair_score[keep]})
    best = best.sort_values(["j", "s", "i"], ascending=[True, False, True]).drop_duplicates("j")
    rows_j = best["j"].to_numpy()
    score[rows_j] = best["s"].to_numpy()
    original[rows_j] = best["i"].to_numpy()
    distance[rows_j] = best["d"].to_numpy()
    return score, original, distance
