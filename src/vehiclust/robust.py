"""Robust z-scores, the one definition that the outlier detectors, the distance to the cluster
centre and the relative image quality checks share: (value - median) / (1.4826 MAD)."""

from __future__ import annotations

import numpy as np

# the MAD of a normal distribution times this is its standard deviation; not scipy's
# median_abs_deviation(scale="normal") (1.482602...) so that stored scores keep their digits
MAD_TO_SD = 1.4826
TINY = 1e-12


def centre_and_spread(values: np.ndarray, min_scale: float = 0.0) -> tuple[float, float]:
    """Median and 1.4826 MAD of the finite values; the spread is at least ``min_scale``."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, max(min_scale, TINY)
    centre = float(np.median(finite))
    spread = max(MAD_TO_SD * float(np.median(np.abs(finite - centre))), min_scale)
    if spread <= TINY:  # no floor and over half the values equal: the std still ranks the rest
        spread = float(np.std(finite))
    return centre, max(spread, TINY)


def robust_z(values: np.ndarray, log_scale: bool = False, reference: np.ndarray | None = None,
             min_scale: float = 0.0) -> np.ndarray:
    """Robust z of every value (of its log with ``log_scale``: for positive, right-skewed values),
    with the median and MAD of the ``reference`` rows (default: all)."""
    v = np.asarray(values, dtype=np.float64)
    if log_scale:
        v = np.log(np.maximum(v, TINY))
    centre, spread = centre_and_spread(v if reference is None else v[reference], min_scale)
    return (v - centre) / spread
