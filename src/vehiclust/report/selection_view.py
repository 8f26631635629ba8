"""The report's selection section: why this clustering was delivered, what was not eligible,
any tie, and the delivered clustering's finer level with how it nests in the coarse one.

One context value, ``selection``, for ``_selection.html``; built from best.json and
comparison.csv (the footing columns of :mod:`vehiclust.compare.table`); None when the run has
no current choice or its comparison predates the footing.
"""

from __future__ import annotations

import pandas as pd

from vehiclust.compare.best import BestChoice, read_runs
from vehiclust.compare.table import MEASURE
from vehiclust.runfolder import CLUSTERING, COARSE_CLUSTERING, COMPARISON, MIXTURE_RUNS, RunFolder

FOOTING_COLUMNS = ("rank", "name", "kind", "n_clusters", "excess_of", "excess_space", "excess_k", "geometry",
                   "reference", "excess", "excess_std", "stability", MEASURE, "agreement", "agreement_std",
                   "applies", "eligible_note", "tie", "identity_lift", "best")


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
        "levels": levels_view(run, best.name),
        "sweep_ties": sweep_ties(run),
    }


def sweep_ties(run: RunFolder) -> list[tuple[str, str]]:
    """(descriptor, the run its selected run tied with) for each tie inside a sweep."""
    runs = read_runs(run)
    if "tie_with" not in runs.columns:
        return []
    tied = runs[runs["selected"].astype(bool) & (runs["tie_with"].astype(object).fillna("").astype(str) != "")]
    return list(zip(tied["descriptor"].astype(str), tied["tie_with"].astype(str)))


def levels_view(run: RunFolder, name: str) -> dict | None:
    """The delivered (fine) level, the coarse level it refines, and how the fine clusters nest."""
    if not COARSE_CLUSTERING.exists(run, name):
        return None
    coarse, fine = COARSE_CLUSTERING.load(run, name).labels, CLUSTERING.load(run, name).labels
    runs = pd.concat([read_runs(run)] + ([read_runs(run, MIXTURE_RUNS)] if MIXTURE_RUNS.exists(run) else []))
    level = runs[(runs["descriptor"] == name) & (runs.get("level", pd.Series("", index=runs.index)) == "fine")]
    keep = (coarse >= 0) & (fine >= 0)
    nesting = pd.crosstab(pd.Series(fine[keep], name="cluster"), pd.Series(coarse[keep], name="cluster_coarse"))
    return {"coarse_k": int(len(set(coarse[coarse >= 0]))), "fine_k": int(len(set(fine[fine >= 0]))),
            "reason": str(level["reason"].iloc[0]) if len(level) else "",
            "nesting_html": nesting.to_html(border=0, classes="runs")}
