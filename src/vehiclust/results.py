"""Reading a finished run folder back, for notebooks and scripts::

    import vehiclust
    run = vehiclust.load_run("runs/demo")
    run.clusters.head()                 # clusters.csv
    run.map("vehicle_type", dims=2)     # N x 2 coordinates
    run.show_cluster(0)                 # a montage of cluster 0 (matplotlib)

Everything is read from the files the pipeline wrote; nothing is recomputed.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from vehiclust.errors import VehiclustError
from vehiclust.runfolder import (AGREEMENT, ATTRIBUTES, CLUSTERING, CLUSTERS, COMPARISON, DESCRIPTIONS, EVIDENCE, MAP,
                                 OUTLIERS, Artifact, RunFolder)


class RunResults:
    """Read-only view of a run folder's outputs (tables load on first use)."""

    def __init__(self, root: Path | str):
        self.folder = RunFolder(root)
        if not CLUSTERS.exists(self.folder):
            raise VehiclustError(f"{CLUSTERS.path(self.folder)} is missing: not a finished run folder "
                                 f"(run `vehiclust run` or `vehiclust report` first)")

    @property
    def root(self) -> Path:
        return self.folder.root

    def _csv(self, artifact: Artifact) -> pd.DataFrame:
        """Read as every table of a finished run: "" is missing, "NA" is a value."""
        return pd.read_csv(artifact.require(self.folder), keep_default_na=False, na_values=[""])

    @cached_property
    def clusters(self) -> pd.DataFrame:
        return CLUSTERS.load(self.folder)

    @cached_property
    def collection(self) -> pd.DataFrame:
        return self.folder.load_collection()

    @cached_property
    def runs(self) -> pd.DataFrame:
        """runs.csv and the mixtures' runs, ``best_overall`` marking the best clustering (best.json)."""
        from vehiclust.compare.best import all_runs

        return all_runs(self.folder)

    @cached_property
    def outliers(self) -> pd.DataFrame:
        return OUTLIERS.load(self.folder)

    @cached_property
    def descriptions(self) -> pd.DataFrame:
        return self._csv(DESCRIPTIONS)

    @cached_property
    def evidence(self) -> pd.DataFrame:
        return self._csv(EVIDENCE)

    @cached_property
    def comparison(self) -> pd.DataFrame:
        """comparison.csv: every descriptor's, mixture's and the consensus's selected clustering."""
        return self._csv(COMPARISON)

    @cached_property
    def agreement(self) -> pd.DataFrame:
        """agreement.csv, long: one row per pair of clusterings (ARI, AMI, NMI)."""
        return self._csv(AGREEMENT)

    @cached_property
    def attributes(self) -> pd.DataFrame:
        """attributes.csv, long: AMI / NMI of each clustering with each attribute."""
        return self._csv(ATTRIBUTES)

    def agreement_matrix(self, measure: str = "ari") -> pd.DataFrame:
        from vehiclust.compare.agreement import agreement_matrix

        return agreement_matrix(self.agreement, measure)

    def contingency(self, a: str, b: str) -> pd.DataFrame:
        """Where each cluster of clustering ``a`` went in clustering ``b`` (row counts)."""
        from vehiclust.compare.agreement import contingency_of

        return contingency_of(self.folder, a, b)

    @property
    def best_descriptor(self) -> str:
        """The clustering the deliverables show (best.json, see :mod:`vehiclust.compare.best`)."""
        from vehiclust.compare.best import best_name

        return best_name(self.folder)

    @property
    def descriptors(self) -> list[str]:
        return list(dict.fromkeys(self.runs["descriptor"]))

    def labels(self, descriptor: str | None = None) -> np.ndarray:
        """Cluster per row of the selected clustering of ``descriptor`` (default: the best)."""
        return CLUSTERING.load(self.folder, descriptor or self.best_descriptor).labels

    def descriptor(self, name: str) -> np.ndarray:
        return self.folder.load_descriptor(name)

    @property
    def map_descriptor(self) -> str:
        """The space the default map shows: the best clustering's descriptor, or, when the best
        has no space of its own (the consensus), the first descriptor with a map, as in the report."""
        candidates = [self.best_descriptor, *self.descriptors]
        with_map = [name for name in candidates if MAP.exists(self.folder, name, dims=2)]
        if not with_map:
            raise VehiclustError(f"{self.root}/maps holds no map; run `vehiclust report {self.root}`")
        return with_map[0]

    def map(self, descriptor: str | None = None, dims: int = 2) -> np.ndarray:
        from vehiclust.report.maps import load_map

        return load_map(self.folder, descriptor or self.map_descriptor, dims)

    def thumbnail(self, row: int):
        """The cached thumbnail of a collection row as a PIL image: its montage picture, else its
        tile of the map's sheets (None when it has neither)."""
        from PIL import Image

        from vehiclust import ownership
        from vehiclust.report.thumbnails import thumbnail_path
        from vehiclust.report.tilesheets import map_tile

        path = thumbnail_path(self.folder, int(row))
        return Image.open(path) if ownership.is_ours(path) else map_tile(self.folder, int(row))

    def plot_map(self, descriptor: str | None = None, color_by: str = "cluster", max_points: int = 200_000):
        """2D map coloured by ``cluster`` (that descriptor's clustering) or any clusters.csv column."""
        from vehiclust.report.figures import plot_map

        space = descriptor or self.map_descriptor
        clustering = descriptor or self.best_descriptor
        if color_by == "cluster":
            values, colour = self.labels(clustering), f"the clustering of {clustering}"
        else:
            values, colour = self.clusters[color_by].fillna("").to_numpy(), color_by
        return plot_map(self.map(space, 2), values, title=f"map of {space}, coloured by {colour}",
                        max_points=max_points)

    def montage(self, rows, columns: int = 10, title: str = ""):
        """A grid of the cached thumbnails of ``rows`` (matplotlib figure)."""
        from vehiclust.report.figures import plot_montage

        rows = [int(r) for r in rows]
        return plot_montage([self.thumbnail(r) for r in rows], [self.clusters["path"].iat[r] for r in rows],
                            columns, title)

    def show_cluster(self, cluster: int, n: int = 10, seed: int = 0):
        """Typical images of one cluster of the best clustering (closest to its centre first)."""
        data = CLUSTERING.load(self.folder, self.best_descriptor)
        members = np.flatnonzero(data.labels == cluster)
        order = members[np.argsort(np.nan_to_num(data.distance[members], nan=np.inf), kind="stable")]
        name = self.descriptions.set_index("cluster")["name"].get(cluster, "")
        return self.montage(order[:n], title=f"cluster {cluster}: {name}")


def load_run(root: Path | str) -> RunResults:
    """The outputs of a finished run folder (see :class:`RunResults`)."""
    return RunResults(root)
