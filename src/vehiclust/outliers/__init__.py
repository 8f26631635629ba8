"""Stage 4: outlier checks and the per-image verdict."""

from vehiclust.outliers.verdict import outliers

__all__ = ["outliers"]
