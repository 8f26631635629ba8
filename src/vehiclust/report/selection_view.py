"""The report's selection section: why this clustering was delivered, what was not eligible,
and any tie.

One context value, ``selection``, for ``_selection.html``; built from best.json and
comparison.csv (the footing columns of :mod:`vehiclust.compare.table`); None when the run has
no current choice or its comparison predates the footing.
"""

from __future__ import annotations

from vehiclust.compare.best import BestChoice
from vehiclust.compare.table import MEASURE
from vehiclust.runfolder import COMPARISON, RunFolder

FOOTING_COLUMNS = ("rank", "name", "kind", "n_clusters", "geometry_common", "reference_common", "excess",
                   "excess_std", "stability", MEASURE, "applies", "eligible_note", "tie", "identity_lift", "best")


def selection_context(run: RunFolder) -> dict | None:
    best = BestChoice.load(run)
    if best is None or not COMPARISON.exists(run):
        return None
    table = COMPARISON.load(run)
    if MEASURE not in table.columns or "rank" not in table.columns:
        return None
    columns = [c for c in FOOTING_COLUMNS if c in table.columns]
    return {
        "best": best.name, "reason": best.reason, "rule": best.rule, "tied": list(best.tie_with),
        "excluded": sorted(best.not_eligible.items()),
        "table_html": table.sort_values("rank")[columns].to_html(index=False, float_format=lambda v: f"{v:.3f}",
                                                               border=0, classes="runs", na_rep=""),
    }
