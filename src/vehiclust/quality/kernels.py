"""Compiled loops for BRISQUE's per-scale statistics (numba, compiled once and cached).

Written by hand because numpy spends BRISQUE's time on temporaries: the 7 x 7 window, the
normalisation and the five moment sums are some 40 passes over the image, each making a new
array. Here the window is two passes (as there: columns, then rows), the normalisation one, and
each moment sum one. The arithmetic is that of ``brisque.mscn`` and ``brisque.aggd_fit`` (the
readable definitions, which the tests compare these loops with): the coefficients are the same
bit for bit, and the neighbour products and the sums are taken in float64 instead of float32.

Compiled code is cached on disk (``NUMBA_CACHE_DIR``, set by ``thirdparty``; see
``jit_cache.compiled``).
"""

from __future__ import annotations

import numpy as np

from vehiclust.jit_cache import compiled

# Per array of coefficients: its size, how many are negative, their sum, the sum of the
# negative ones, the sum of squares and the sum of squares of the negative ones.
MOMENTS = ("count", "negatives", "sum", "negative_sum", "squares", "negative_squares")
# The arrays, in BRISQUE's order: the coefficients, then their products with the right, lower,
# lower-right and lower-left (as upper-right) neighbours.
ARRAYS = ("mscn", "horizontal", "vertical", "main_diagonal", "anti_diagonal")


# fastmath=False is explicit: a function compiled without it inherits its caller's flags, and
# mscn must keep IEEE order (below) even inside mscn_moments
@compiled(fastmath=False)
def mscn(gray: np.ndarray, window: np.ndarray, c: np.float32) -> np.ndarray:
    """MSCN coefficients of a float32 image, the window zero outside it: the operations of
    ``brisque.mscn`` in its order and precision, so that every coefficient is bit for bit the
    same (in a flat region a coefficient is rounding noise, and its sign is counted)."""
    h, w = gray.shape
    r = len(window) // 2
    padded = np.zeros((h + 2 * r, w + 2 * r), np.float32)
    padded[r:h + r, r:w + r] = gray
    squared = padded * padded
    columns = np.empty((2, h, w + 2 * r), np.float32)  # the vertical pass first, as there
    for plane, source in enumerate((padded, squared)):
        for i in range(h):
            row = columns[plane, i]
            for j in range(w + 2 * r):
                row[j] = window[r] * source[i + r, j]
            for k in range(r):
                for j in range(w + 2 * r):
                    row[j] += window[k] * (source[i + k, j] + source[i + 2 * r - k, j])
    out = np.empty((h, w), np.float32)
    mu = np.empty(w, np.float32)
    mean_sq = np.empty(w, np.float32)
    for i in range(h):
        for smoothed, plane in ((mu, 0), (mean_sq, 1)):
            row = columns[plane, i]
            for j in range(w):
                smoothed[j] = window[r] * row[j + r]
            for k in range(r):
                for j in range(w):
                    smoothed[j] += window[k] * (row[j + k] + row[j + 2 * r - k])
        for j in range(w):
            sigma = np.sqrt(np.abs(mean_sq[j] - mu[j] * mu[j]))
            out[i, j] = (gray[i, j] - mu[j]) / (sigma + c)
    return out


@compiled(fastmath={"reassoc", "nsz"})  # the sums may be reordered (SIMD); NaN stays NaN
def _moments(m: np.ndarray, out: np.ndarray, row: int, offsets: tuple) -> None:
    """MOMENTS into ``out[row]``: of m itself for row 0, else of its product with a shifted
    copy, ``m[a0:, b0:] * m[a1:, b1:]`` over the rows and columns both have."""
    a0, b0, a1, b1 = offsets
    h = m.shape[0] - max(a0, a1)
    w = m.shape[1] - max(b0, b1)
    negatives = 0.0
    total = 0.0
    negative_total = 0.0
    squares = 0.0
    negative_squares = 0.0
    for i in range(h):
        first = m[i + a0, b0:b0 + w]
        second = m[i + a1, b1:b1 + w]
        for j in range(w):
            x = np.float64(first[j]) if row == 0 else np.float64(first[j]) * np.float64(second[j])
            neg = min(x, 0.0)
            negatives += 1.0 if x < 0 else 0.0
            total += x
            negative_total += neg
            squares += x * x
            negative_squares += neg * neg
    out[row, 0] = h * w
    out[row, 1] = negatives
    out[row, 2] = total
    out[row, 3] = negative_total
    out[row, 4] = squares
    out[row, 5] = negative_squares


# (a0, b0, a1, b1) of each of ARRAYS after the first (the coefficients themselves):
# m[1:, :-1] * m[:-1, 1:] pairs each pixel's lower neighbour with its right one
_OFFSETS = ((0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 0, 1, 1), (1, 0, 0, 1))


@compiled(fastmath=False)
def mscn_moments(gray: np.ndarray, window: np.ndarray, c: float) -> np.ndarray:
    """len(ARRAYS) x len(MOMENTS) float64: the moments of the MSCN coefficients of ``gray``
    and of their four neighbour products."""
    m = mscn(gray, window, c)
    out = np.zeros((len(ARRAYS), len(MOMENTS)), np.float64)
    for row in range(len(ARRAYS)):
        _moments(m, out, row, _OFFSETS[row])
    return out
