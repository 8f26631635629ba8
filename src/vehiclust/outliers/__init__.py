"""Stage 4: outlier checks and the per-image verdict.

``outliers(run, names, reporter, settings)`` writes ``outliers.csv``; image quality checks are in
:mod:`vehiclust.quality`, descriptor-space detectors in :mod:`vehiclust.outliers.detectors`.
"""

from vehiclust.outliers.detectors import DETECTORS, DetectorSettings, create_detector
from vehiclust.outliers.verdict import OutlierSettings, add_verdict, compute_scores, outlier_settings, outliers

__all__ = ["DETECTORS", "DetectorSettings", "OutlierSettings", "add_verdict",
           "compute_scores", "create_detector", "outlier_settings", "outliers"]
