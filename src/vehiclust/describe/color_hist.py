"""A weight-free baseline descriptor: the colour histogram of the whole crop."""

from __future__ import annotations

import numpy as np

from vehiclust.describe.registry import DESCRIPTORS

COLOR_BINS = (8, 4, 4)  # hue x saturation x value
N_BINS = int(np.prod(COLOR_BINS))


@DESCRIPTORS.add("color_hist", summary="HSV colour histogram of the crop (128-d)", width=N_BINS,
                 default=True, tags=("classical", "colour"))
class ColorHistogramDescriber:
    """Hue x saturation x value histogram of the whole crop, square-rooted (Hellinger geometry).

    A weight-free baseline that separates colour and lighting; it sees the background too.
    """

    input_size = 224
    outputs = {"color_hist": N_BINS}

    def __init__(self, threads: int | None = None):
        del threads  # numpy work; nothing to tune

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        small = images[:, ::4, ::4].astype(np.float32) / 255.0  # 56 x 56 is plenty for a histogram
        hue, sat, val = _rgb_to_hsv(small)
        bins = [np.minimum((c * n).astype(np.int64), n - 1) for c, n in zip((hue, sat, val), COLOR_BINS)]
        index = (bins[0] * COLOR_BINS[1] + bins[1]) * COLOR_BINS[2] + bins[2]
        flat = index.reshape(len(images), -1) + (np.arange(len(images)) * N_BINS)[:, None]
        counts = np.bincount(flat.ravel(), minlength=N_BINS * len(images)).reshape(len(images), N_BINS)
        return {"color_hist": np.sqrt(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)}

    def provenance(self) -> dict:
        return {"model": "hsv histogram", "bins": list(COLOR_BINS), "input_size": self.input_size}


def _rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised RGB -> HSV, each channel in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(axis=-1)
    minc = rgb.min(axis=-1)
    delta = maxc - minc
    safe = np.where(delta == 0, 1.0, delta)
    hue = np.where(maxc == r, (g - b) / safe, np.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    sat = np.where(maxc == 0, 0.0, delta / np.where(maxc == 0, 1.0, maxc))
    return hue, sat, maxc
