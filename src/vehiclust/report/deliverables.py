"""``clusters.csv``: the deliverable the assignment asks for, one row per input image in input
order: path, the best clustering, the outlier verdict, then each descriptor's own clustering."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vehiclust.cluster.sweep import clustering_path
from vehiclust.runfolder import RunFolder, write_csv

LEADING = ["path", "cluster", "is_outlier", "outlier_score", "outlier_reasons", "cluster_name"]
CARRIED = ["vehicle_id", "width", "height", "camera_id", "type", "color", "brisque"]


def best_descriptor(runs: pd.DataFrame) -> str:
    return str(runs.loc[runs["best_overall"], "descriptor"].iloc[0])


def build_clusters_table(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame,
                         verdicts: pd.DataFrame, descriptions: pd.DataFrame | None = None) -> pd.DataFrame:
    names = list(dict.fromkeys(runs["descriptor"]))
    frame = pd.DataFrame({"path": table["path"]})
    labels = {name: np.load(clustering_path(run, name))["labels"] for name in names}
    frame["cluster"] = labels[best_descriptor(runs)]
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


def write_clusters_csv(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame,
                       verdicts: pd.DataFrame, descriptions: pd.DataFrame | None = None) -> pd.DataFrame:
    frame = build_clusters_table(run, table, runs, verdicts, descriptions)
    write_csv(run.path("clusters.csv"), frame)
    return frame
