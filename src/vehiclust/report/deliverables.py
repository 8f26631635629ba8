"""``clusters.csv``: the deliverable the assignment asks for, one row per input image in input
order: path, the best clustering, the outlier verdict, then each descriptor's own clustering."""

from __future__ import annotations

import pandas as pd

from vehiclust.compare.best import best_in
from vehiclust.runfolder import CLUSTERING, CLUSTERS, COARSE_CLUSTERING, RunFolder

LEADING = ["path", "cluster", "cluster_coarse", "is_outlier", "outlier_score", "outlier_reasons", "cluster_name"]
CARRIED = ["vehicle_id", "width", "height", "camera_id", "type", "color", "brisque"]


def build_clusters_table(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                         descriptions: pd.DataFrame | None = None, best: str | None = None) -> pd.DataFrame:
    """``runs``: :func:`vehiclust.compare.best.all_runs`' view; ``best``: the clustering in the
    ``cluster`` column (default: the one it marks ``best_overall``)."""
    names = list(dict.fromkeys(runs["descriptor"]))
    frame = pd.DataFrame({"path": table["path"]})
    labels = {name: CLUSTERING.load(run, name).labels for name in names}
    chosen = best or best_in(runs)
    frame["cluster"] = labels[chosen]
    if COARSE_CLUSTERING.exists(run, chosen):  # the broad level it refines (see vehiclust.cluster.levels)
        frame["cluster_coarse"] = COARSE_CLUSTERING.load(run, chosen).labels
    for column in ("is_outlier", "outlier_score", "outlier_reasons"):
        frame[column] = verdicts[column].to_numpy()
    if descriptions is not None:  # the generated short name of each cluster of the best clustering
        names_by_cluster = dict(zip(descriptions["cluster"], descriptions["name"]))
        frame["cluster_name"] = [names_by_cluster.get(int(c), "") for c in frame["cluster"]]
    for name in names:
        frame[f"cluster_{name}"] = labels[name]
    for column in CARRIED:
        if column == "brisque" and "brisque" in verdicts.columns:  # measured wins over imported
            frame[column] = verdicts[column].to_numpy()
        elif column in table.columns:
            frame[column] = table[column].to_numpy()
    return frame


def write_clusters_csv(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                       descriptions: pd.DataFrame | None = None, best: str | None = None) -> pd.DataFrame:
    frame = build_clusters_table(run, table, runs, verdicts, descriptions, best)
    CLUSTERS.save(run, frame)
    return frame
