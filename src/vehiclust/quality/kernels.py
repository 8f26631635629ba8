"""Compiled loops for the quality measurements (numba, compiled once and cached): BRISQUE's
per-scale statistics, and the luminance and colour statistics of ``features.measure``.

Written by hand because numpy spends this time on temporaries: the 7 x 7 window, the
normalisation and the five moment sums are some 40 passes over the image, each making a new
array, and the luminance statistics (exposure, Laplacian, noise residual, JPEG block borders)
another 20. Here BRISQUE's window is two passes (as there: columns, then rows), the
normalisation one, and each moment sum one; the luminance statistics are one pass over the rows
and the colour statistics one over the pixels. The arithmetic is that of ``brisque.mscn``,
``brisque.aggd_fit`` and the ``features`` functions they replace (the readable definitions, which
the tests compare these loops with): the coefficients are the same bit for bit, and the sums are
taken in float64 instead of float32.

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


@compiled(fastmath=False)  # numpy's operations in its order: the half-size scale bit for bit
def half_size(gray: np.ndarray, rows: int, columns: int, outer: float, inner: float) -> np.ndarray:
    """``brisque.half_size_numpy``: output pixel i of an axis is ``outer * (x[2i-1] + x[2i+2])
    + inner * (x[2i] + x[2i+1])``, indices clamped to the image (edge pixels replicated); the
    rows first, then the columns."""
    h, w = gray.shape
    tall = np.empty((rows, w), gray.dtype)
    for i in range(rows):
        a, b = gray[min(max(2 * i - 1, 0), h - 1)], gray[min(2 * i, h - 1)]
        c, d = gray[min(2 * i + 1, h - 1)], gray[min(2 * i + 2, h - 1)]
        for j in range(w):
            tall[i, j] = outer * (a[j] + d[j]) + inner * (b[j] + c[j])
    out = np.empty((rows, columns), gray.dtype)
    for i in range(rows):
        line = tall[i]
        for j in range(columns):
            a, b = line[min(max(2 * j - 1, 0), w - 1)], line[min(2 * j, w - 1)]
            c, d = line[min(2 * j + 1, w - 1)], line[min(2 * j + 2, w - 1)]
            out[i, j] = outer * (a + d) + inner * (b + c)
    return out


# --- luminance and colour statistics of features.measure ---------------------------------------
# what luma_statistics returns, in this order; a blockiness is NaN along an axis too short for it
LUMA_STATISTICS = ("brightness", "contrast", "laplacian_std", "blockiness_vertical", "blockiness_horizontal")
BLOCK = 8  # JPEG's block: its borders sit after every 8th pixel
MIN_BLOCK_SIDE = 24  # an axis needs three blocks for its borders to be told from the rest
NOISE_EVERY_OTHER_ROW = 32  # from this many residual rows on, every other row is plenty for a median


@compiled(fastmath={"reassoc", "nsz"})  # the sums may be reordered (SIMD); NaN stays NaN
def luma_statistics(gray: np.ndarray) -> tuple:
    """From a float32 luminance image in [0, 1], in one pass over its rows: the 8-bit image and
    its 256-bin histogram, and LUMA_STATISTICS (float64)."""
    h, w = gray.shape
    gray8 = np.empty((h, w), np.uint8)
    histogram = np.zeros(256, np.int64)
    shift = np.float64(gray[0, 0]) if h and w else 0.0  # shifted sums keep the variance exact
    total = squares = 0.0
    lap_total = lap_squares = 0.0
    rows_diff = rows_border = columns_diff = columns_border = 0.0
    for i in range(h):
        row = gray[i]
        for j in range(w):
            x = np.float64(row[j]) - shift
            total += x
            squares += x * x
        for j in range(w):
            level = row[j] * np.float32(255.0) + np.float32(0.5)
            level = min(max(level, np.float32(0.0)), np.float32(255.0))
            gray8[i, j] = np.uint8(level)
            histogram[gray8[i, j]] += 1
        for j in range(w - 1):
            columns_diff += abs(row[j + 1] - row[j])
        for j in range(BLOCK - 1, w - 1, BLOCK):
            columns_border += abs(row[j + 1] - row[j])
        if i + 1 < h:
            below = gray[i + 1]
            border_row = i % BLOCK == BLOCK - 1
            for j in range(w):
                d = abs(below[j] - row[j])
                rows_diff += d
                if border_row:
                    rows_border += d
        if 0 < i < h - 1 and w >= 3:
            above, below = gray[i - 1], gray[i + 1]
            for j in range(1, w - 1):
                lap = row[j - 1] + row[j + 1] + above[j] + below[j] - np.float32(4.0) * row[j]
                lap_total += lap
                lap_squares += np.float64(lap) * lap
    n = h * w
    out = np.full(len(LUMA_STATISTICS), np.nan)
    if n:
        mean = total / n
        out[0] = mean + shift
        out[1] = np.sqrt(max(squares / n - mean * mean, 0.0))
    lap_n = max(h - 2, 0) * max(w - 2, 0)
    if lap_n:
        lap_mean = lap_total / lap_n
        out[2] = np.sqrt(max(lap_squares / lap_n - lap_mean * lap_mean, 0.0))
    if h >= MIN_BLOCK_SIDE:
        out[3] = _block_ratio(rows_border, (h - 1) // BLOCK * w, rows_diff, (h - 1) * w)
    if w >= MIN_BLOCK_SIDE:
        out[4] = _block_ratio(columns_border, (w - 1) // BLOCK * h, columns_diff, (w - 1) * h)
    return gray8, histogram, out


@compiled(fastmath={"reassoc", "nsz"})
def _block_ratio(border: float, border_count: int, total: float, count: int) -> float:
    """Mean difference across block borders over the mean difference elsewhere (1 = no blocks)."""
    inner = (total - border) / max(count - border_count, 1)
    return border / border_count / inner if inner > 1e-9 else 1.0


@compiled(fastmath=False)  # the residuals in numpy's order: the median picks one of them
def noise_residuals(gray: np.ndarray) -> np.ndarray:
    """Immerkaer's residuals |[1 -2 1]^T [1 -2 1] * gray| (float32) over the valid pixels,
    every other row from NOISE_EVERY_OTHER_ROW residual rows on; their median is the noise."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return np.empty(0, np.float32)
    step = 2 if h - 2 >= NOISE_EVERY_OTHER_ROW else 1
    rows = (h - 2 + step - 1) // step
    out = np.empty(rows * (w - 2), np.float32)
    across = np.empty((3, w - 2), np.float32)
    for r in range(rows):
        i = r * step
        for k in range(3):
            line = gray[i + k]
            for j in range(w - 2):
                across[k, j] = line[j] - np.float32(2.0) * line[j + 1] + line[j + 2]
        for j in range(w - 2):
            out[r * (w - 2) + j] = abs(across[0, j] - np.float32(2.0) * across[1, j] + across[2, j])
    return out


LIT = 20.0  # below ~8% grey, hue and saturation are mostly noise


@compiled(fastmath={"reassoc", "nsz"})
def colour_statistics(rgb: np.ndarray, step: int) -> tuple:
    """Hasler & Suesstrunk colourfulness (0-255 scale), mean chroma (0-1) and the mean HSV
    saturation of the lit pixels (0 when none is) of a uint8 RGB image, on every ``step``-th
    pixel of every ``step``-th row. The sums of integers (and halves) are exact in float64."""
    rg_total = rg_squares = yb_total = yb_squares = spread_total = saturation_total = 0.0
    n = lit = 0
    for i in range(0, rgb.shape[0], step):
        for j in range(0, rgb.shape[1], step):
            r, g, b = np.float64(rgb[i, j, 0]), np.float64(rgb[i, j, 1]), np.float64(rgb[i, j, 2])
            rg = r - g
            yb = 0.5 * (r + g) - b
            rg_total += rg
            rg_squares += rg * rg
            yb_total += yb
            yb_squares += yb * yb
            top = max(r, g, b)
            spread = top - min(r, g, b)
            spread_total += spread
            n += 1
            if top >= LIT:
                saturation_total += spread / top
                lit += 1
    if n == 0:
        return np.nan, np.nan, 0.0
    rg_mean, yb_mean = rg_total / n, yb_total / n
    variance = max(rg_squares / n - rg_mean * rg_mean, 0.0) + max(yb_squares / n - yb_mean * yb_mean, 0.0)
    colourfulness = np.sqrt(variance) + 0.3 * np.sqrt(rg_mean * rg_mean + yb_mean * yb_mean)
    return colourfulness, spread_total / n / 255.0, saturation_total / lit if lit else 0.0
