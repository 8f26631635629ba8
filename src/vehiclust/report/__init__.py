"""Stage 5: the deliverables: clusters.csv and report.html."""

from vehiclust.report.stage import report

__all__ = ["report"]
