"""Per-image quality measurements: one vector of named numbers per image, measured in one go.

Everything is measured on the image at its own resolution (at most ``max_side`` pixels a side,
see :mod:`vehiclust.quality.describer`), because blur, noise and JPEG blocking are properties of
the pixels as stored: resizing to a network's input size hides or invents them.

Columns (:data:`COLUMNS`), all computed on the luminance ``L`` in [0, 1] unless said otherwise:

=================  =========================================================================
brisque            BRISQUE score (lower is better; NaN without the model files)
brightness         mean of L
luma_p01/p50/p99   1st, 50th and 99th percentile of L
dark_fraction      share of pixels with L < 0.1
clipped_fraction   share of pixels with L >= 0.98 (blown out)
contrast           standard deviation of L (RMS contrast)
dynamic_range      99th minus 1st percentile of L
entropy            Shannon entropy of the 256-bin histogram of L, bits (0 - 8)
blur               Crete-Roffet blur effect on a 64-pixel thumbnail, the worse of the two axes
                   (0 sharp - 1 flat)
blur_h, blur_v     the same along rows (horizontal) and along columns (vertical); a large
                   difference between them is motion blur
sharpness          standard deviation of the Laplacian of L divided by that of L
noise              Immerkaer's noise sigma, robust (median) form, on the 0-1 scale
colourfulness      Hasler & Suesstrunk colourfulness on the 0-255 RGB scale
chroma             mean of (max - min) over the RGB channels, 0 - 1
saturation         mean HSV saturation (max - min) / max of the pixels not near black, 0 - 1
blockiness         gradient across 8-pixel JPEG block borders over gradient elsewhere (1 = none)
measured_width     width, height of the image as measured (after the ``max_side`` cap)
measured_height
phash16_0..3       64-bit DCT perceptual hash in four 16-bit chunks (exact in float32)
=================  =========================================================================
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from scipy import fft

from vehiclust.quality import kernels
from vehiclust.quality.brisque import N_FEATURES, BrisqueModel, brisque_features, default_model, to_gray

COLUMNS: tuple[str, ...] = (
    "brisque", "brightness", "luma_p01", "luma_p50", "luma_p99", "dark_fraction", "clipped_fraction",
    "contrast", "dynamic_range", "entropy", "blur", "blur_h", "blur_v", "sharpness", "noise",
    "colourfulness", "chroma", "saturation", "blockiness", "measured_width", "measured_height",
    "phash16_0", "phash16_1", "phash16_2", "phash16_3",
)
INDEX = {name: i for i, name in enumerate(COLUMNS)}
BLUR_SIDE = 64  # blur is judged on a thumbnail of this longer side: relative to the image's size,
BLUR_WINDOW = 7  # and with sensor noise and JPEG blocks averaged away; re-blur window, pixels
HASH_SIDE = 32


def _percentiles(hist: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    return [float(np.searchsorted(cdf, q)) / 255.0 for q in qs]


def blur_effect(gray: np.ndarray, axis: int, window: int = BLUR_WINDOW) -> float:
    """Crete-Roffet blur effect along one axis: the share of the image's own gradient that
    survives a re-blur with a ``window``-pixel box (1 = nothing to lose: the image is blurred)."""
    from scipy.ndimage import uniform_filter1d

    if gray.shape[axis] < 4:
        return float("nan")
    blurred = uniform_filter1d(gray, window, axis=axis)
    sharp_d = np.abs(np.diff(gray, axis=axis))
    blur_d = np.abs(np.diff(blurred, axis=axis))
    total = float(sharp_d.sum())
    if total <= 1e-12:
        return 1.0
    lost = float(np.maximum(sharp_d - blur_d, 0.0).sum())
    return (total - lost) / total


def thumbnail(gray8: np.ndarray, side: int) -> np.ndarray:
    """Area-averaged reduction to a longer side of ``side`` pixels (never enlarged), float 0-1."""
    h, w = gray8.shape
    scale = side / max(h, w)
    if scale < 1.0:
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        gray8 = np.asarray(Image.fromarray(gray8).resize(size, Image.Resampling.BOX))
    return gray8.astype(np.float32) / 255.0


def _median(values: np.ndarray) -> float:
    """The upper median (NaN of nothing), as ``noise_sigma_numpy`` takes it."""
    return float(np.partition(values, values.size // 2)[values.size // 2]) if values.size else float("nan")


def perceptual_hash(gray8: np.ndarray) -> np.ndarray:
    """64-bit DCT hash (as imagehash's phash): 32x32 thumbnail, 8x8 lowest frequencies vs median.

    Returned as four 16-bit integers (float64), robust to re-encoding and shifts of a few pixels.
    """
    thumb = np.asarray(Image.fromarray(gray8).resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX),
                       dtype=np.float64)
    low = fft.dctn(thumb, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).ravel().astype(np.int64)
    chunks = bits.reshape(4, 16) @ (1 << np.arange(15, -1, -1))
    return chunks.astype(np.float64)


def measure(rgb: np.ndarray, with_brisque: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All columns but brisque for one uint8 RGB image, and its 36 BRISQUE features."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    rgb = np.ascontiguousarray(rgb[..., :3])
    out = np.full(len(COLUMNS), np.nan)
    h, w = rgb.shape[:2]
    out[INDEX["measured_width"]], out[INDEX["measured_height"]] = w, h
    gray = to_gray(rgb)  # float32 luminance in [0, 1], the weights BRISQUE uses
    gray8, hist, luma = kernels.luma_statistics(gray)
    luma = dict(zip(kernels.LUMA_STATISTICS, luma))
    hist = hist.astype(np.float64)
    p01, p50, p99 = _percentiles(hist, (0.01, 0.5, 0.99))
    n = max(hist.sum(), 1.0)
    prob = hist[hist > 0] / n
    contrast = float(luma["contrast"])
    out[INDEX["brightness"]] = luma["brightness"]
    out[INDEX["luma_p01"]], out[INDEX["luma_p50"]], out[INDEX["luma_p99"]] = p01, p50, p99
    out[INDEX["dark_fraction"]] = hist[:26].sum() / n
    out[INDEX["clipped_fraction"]] = hist[250:].sum() / n
    out[INDEX["contrast"]] = contrast
    out[INDEX["dynamic_range"]] = p99 - p01
    out[INDEX["entropy"]] = float(-(prob * np.log2(prob)).sum())
    thumb = thumbnail(gray8, BLUR_SIDE)
    out[INDEX["blur_h"]] = blur_effect(thumb, axis=1)
    out[INDEX["blur_v"]] = blur_effect(thumb, axis=0)
    out[INDEX["blur"]] = np.fmax(out[INDEX["blur_h"]], out[INDEX["blur_v"]])  # NaN only if both are
    out[INDEX["sharpness"]] = luma["laplacian_std"] / contrast if min(h, w) >= 3 and contrast > 1e-6 else 0.0
    out[INDEX["noise"]] = _median(kernels.noise_residuals(gray)) / (0.6745 * 6.0)
    step = 2 if min(h, w) >= 64 else 1  # colour statistics need no more than every other pixel
    out[INDEX["colourfulness"]], out[INDEX["chroma"]], out[INDEX["saturation"]] = kernels.colour_statistics(rgb, step)
    blockiness = [luma["blockiness_vertical"], luma["blockiness_horizontal"]]
    out[INDEX["blockiness"]] = np.nan if np.isnan(blockiness).all() else np.nanmean(blockiness)
    out[INDEX["phash16_0"]:INDEX["phash16_3"] + 1] = perceptual_hash(gray8)
    features = brisque_features(gray) if with_brisque else np.full(N_FEATURES, np.nan)
    return out, features


def measure_batch(images, threads: int | None = None, model: BrisqueModel | None = None) -> np.ndarray:
    """N x len(COLUMNS) float32 for a batch (a list of H x W x 3 uint8 arrays, or an N x S x S x 3
    array). Images are measured in a thread pool (numpy and scipy release the GIL)."""
    images = list(images)
    threads = threads or min(4, os.cpu_count() or 1)
    if threads > 1 and len(images) > 1:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(measure, images))
    else:
        results = [measure(im) for im in images]
    matrix = np.array([r[0] for r in results]).reshape(len(images), len(COLUMNS))
    features = np.array([r[1] for r in results]).reshape(len(images), N_FEATURES)
    model = model if model is not None else default_model()
    if model is not None and len(images):
        ok = np.isfinite(features).all(axis=1)
        if ok.any():
            matrix[ok, INDEX["brisque"]] = model.predict(features[ok])
    return matrix.astype(np.float32)


# --- the readable definitions of what kernels.luma_statistics and kernels.colour_statistics
# compute in one pass each (measure calls those; the tests compare them with these) ----------


def noise_sigma_numpy(gray: np.ndarray) -> float:
    """Immerkaer (1996): the mask [1 -2 1]^T[1 -2 1] cancels smooth content; noise gives 6 sigma.

    The median instead of the mean keeps edges and texture (a minority of pixels) out.
    """
    if min(gray.shape) < 3:
        return float("nan")
    d = gray[:, :-2] - 2.0 * gray[:, 1:-1] + gray[:, 2:]
    d = d[:-2] - 2.0 * d[1:-1] + d[2:]
    d = np.abs(d[::2] if d.shape[0] >= 32 else d).ravel()  # every other row is plenty for a median
    return float(np.partition(d, d.size // 2)[d.size // 2]) / (0.6745 * 6.0)


def laplacian_ratio_numpy(gray: np.ndarray, contrast: float) -> float:
    if min(gray.shape) < 3 or contrast <= 1e-6:
        return 0.0
    lap = (gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4.0 * gray[1:-1, 1:-1])
    return float(lap.std()) / contrast


def blockiness_numpy(gray: np.ndarray) -> float:
    ratios = []
    for axis in (0, 1):
        if gray.shape[axis] < 24:
            continue
        d = np.abs(np.diff(gray, axis=axis))
        d = d if axis == 1 else d.T
        border = d[:, 7::8].mean()
        inner = (d.sum() - d[:, 7::8].sum()) / max(d.size - d[:, 7::8].size, 1)
        ratios.append(float(border / inner) if inner > 1e-9 else 1.0)
    return float(np.mean(ratios)) if ratios else float("nan")


def colour_numpy(rgb: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (np.ascontiguousarray(rgb[..., i]) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    colourfulness = np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    top = np.maximum(np.maximum(r, g), b)
    spread = top - np.minimum(np.minimum(r, g), b)
    lit = top >= 20.0  # below ~8% grey, hue and saturation are mostly noise
    saturation = float((spread[lit] / top[lit]).mean()) if lit.any() else 0.0
    return float(colourfulness), float(spread.mean()) / 255.0, saturation
