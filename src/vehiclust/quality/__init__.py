"""Image quality: per-image measurements (BRISQUE and classical ones), the ``quality`` describer
that computes them in the describe pass, the checks that turn them into scores and thresholds,
and exact / near duplicate detection.

Public API::

    from vehiclust.quality import measure_batch, COLUMNS          # measurements of decoded images
    from vehiclust.quality import brisque_score, BrisqueModel     # BRISQUE alone
    from vehiclust.quality import QUALITY_CHECKS, create_checks, score_checks, thresholds_table
    from vehiclust.quality import exact_duplicates, near_duplicates
    import vehiclust.quality.describer                            # registers the 'quality' descriptor
"""

from vehiclust.quality.brisque import BrisqueModel, brisque_features, brisque_score, default_model
from vehiclust.quality.checks import (DEFAULT_CHECKS, QUALITY_CHECKS, CheckContext, QualityCheck, create_check,
                                      create_checks, score_checks, thresholds_table)
from vehiclust.quality.duplicates import exact_duplicates, hashes_from_chunks, near_duplicates
from vehiclust.quality.features import COLUMNS, measure, measure_batch

__all__ = ["COLUMNS", "DEFAULT_CHECKS", "QUALITY_CHECKS", "BrisqueModel", "CheckContext", "QualityCheck",
           "brisque_features", "brisque_score", "create_check", "create_checks", "default_model",
           "exact_duplicates", "hashes_from_chunks", "measure", "measure_batch", "near_duplicates",
           "score_checks", "thresholds_table"]
