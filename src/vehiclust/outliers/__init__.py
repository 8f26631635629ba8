"""Stage 4: outlier checks and the per-image verdict.

``outliers(run, names, reporter, settings)`` writes ``outliers.csv``. The checks are registered in
:data:`vehiclust.outliers.checks.CHECKS` (image quality ones come from :mod:`vehiclust.quality`),
the descriptor-space detectors in :data:`vehiclust.outliers.detectors.DETECTORS`.
"""

from vehiclust.outliers.checks import CHECKS, Check, CheckResult, CheckSpec
from vehiclust.outliers.detectors import DETECTORS, DetectorSettings, create_detector
from vehiclust.outliers.settings import OutlierSettings, outlier_settings
from vehiclust.outliers.stage import compute_scores, outliers
from vehiclust.outliers.verdict import add_verdict

__all__ = ["CHECKS", "DETECTORS", "Check", "CheckResult", "CheckSpec", "DetectorSettings", "OutlierSettings",
           "add_verdict", "compute_scores", "create_detector", "outlier_settings", "outliers"]
