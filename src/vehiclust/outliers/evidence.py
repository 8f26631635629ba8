"""What the outlier checks read, loaded once per run: the :class:`Evidence`.

Each check's spec names what it needs (``NEEDS`` below); :func:`load_evidence` loads only what the
selected checks need, so a check that declares too little fails its contract test.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from vehiclust.describe.stage import is_current
from vehiclust.errors import VehiclustError
from vehiclust.outliers.detectors import DETECTORS, DetectorSettings, score_descriptor
from vehiclust.progress import NullReporter, Reporter
from vehiclust.quality.duplicates import exact_duplicates
from vehiclust.robust import robust_z
from vehiclust.runfolder import CLUSTERING, RunFolder, load_quality_table

QUALITY_DESCRIPTOR = "quality"
VEHICLE_DESCRIPTOR = "vehicle_type"
NOT_A_VEHICLE = "not_a_vehicle"

NEEDS = {
    "collection": "the collection table, and why rows could not be used (always loaded)",
    "quality": "the quality descriptor's measurements",
    "vehicle_type": "P(not a vehicle) from the vehicle_type descriptor",
    "descriptor": "robust z of every detector in each clustered descriptor's space",
    "clustering": "robust z of the distance to the assigned centre, per descriptor's clustering",
}


@dataclass
class Evidence:
    """Per row of the collection: what the checks score. Fields a run lacks are None."""

    table: pd.DataFrame  # the collection
    error: list[str]  # why the row's file could not be used ('' when fine)
    invalid_vector: np.ndarray  # 1 where an imported descriptor row was NaN/inf
    groups: np.ndarray | None = None  # camera (or --group-by column) per row, None = one group
    quality: pd.DataFrame | None = None  # the quality descriptor, named columns, NaN where invalid
    not_vehicle: np.ndarray | None = None  # P(not a vehicle)
    isolation: dict[str, dict[str, np.ndarray]] | None = None  # descriptor -> detector -> robust z

    @cached_property
    def readable(self) -> np.ndarray:
        return np.array([not e for e in self.error], dtype=bool)

    @cached_property
    def measured(self) -> np.ndarray:
        """Readable rows with every quality measurement finite."""
        if self.quality is None:
            return self.readable
        return self.readable & np.all(np.isfinite(self.quality.to_numpy()), axis=1)

    @cached_property
    def image_table(self) -> pd.DataFrame:
        """width and height from the collection, joined with the quality measurements."""
        data = pd.DataFrame({"width": self.table["width"].to_numpy(), "height": self.table["height"].to_numpy()})
        if self.quality is None:
            return data
        return pd.concat([data, self.quality.drop(columns=[c for c in ("width", "height") if c in self.quality])],
                         axis=1)

    @cached_property
    def exact_copies(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(1 for a later byte copy, the row it copies or -1) per row; None without content hashes."""
        if "content_hash" not in self.table.columns:
            return None
        return exact_duplicates(self.table["content_hash"], self.readable)


def load_evidence(run: RunFolder, table: pd.DataFrame, names: list[str], needs: set[str],
                  group_by: str | None = "auto", detectors: DetectorSettings = DetectorSettings(),
                  use_cluster_distance: bool = True, reporter: Reporter | None = None) -> Evidence:
    """The evidence the checks with these ``needs`` read, for the clustered descriptors ``names``."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise VehiclustError(f"unknown check needs {sorted(unknown)}; known: {', '.join(NEEDS)}")
    quality_current = is_current(run, QUALITY_DESCRIPTOR, table=table)
    error, invalid_vector = _unusable_rows(run, table, names, quality_current)
    evidence = Evidence(table, error, invalid_vector, _groups(table, group_by))
    if "quality" in needs and quality_current:
        evidence.quality = load_quality_table(run, len(table))
    if "vehicle_type" in needs:
        evidence.not_vehicle = load_not_a_vehicle(run, table)
    use_detectors, use_centroid = "descriptor" in needs, "clustering" in needs and use_cluster_distance
    if use_detectors or use_centroid:
        evidence.isolation = isolation_z(run, names, evidence.readable, detectors if use_detectors else None,
                                         use_centroid, reporter or NullReporter())
    return evidence


def _unusable_rows(run: RunFolder, table: pd.DataFrame, names: list[str], quality_current: bool
                   ) -> tuple[list[str], np.ndarray]:
    """Per row the reason its file could not be used, and 1 where an imported vector was invalid."""
    decode_errors: dict[int, str] = {}
    invalid_vector = np.zeros(len(table))
    for name in names:
        imported = run.descriptor_meta(name).get("kind") == "imported"
        for row, reason in run.invalid_rows(name).items():
            if imported:
                invalid_vector[row] = 1.0
            else:
                decode_errors.setdefault(row, reason)
    if quality_current:
        for row, reason in run.invalid_rows(QUALITY_DESCRIPTOR).items():
            decode_errors.setdefault(row, reason)
    error = table["error"].fillna("").astype(str).tolist()
    for row, reason in decode_errors.items():
        if not error[row]:
            error[row] = reason
    return error, invalid_vector


def load_not_a_vehicle(run: RunFolder, table: pd.DataFrame) -> np.ndarray | None:
    """P(not a vehicle) per row from the vehicle_type descriptor, when it has that column."""
    if not is_current(run, VEHICLE_DESCRIPTOR, table=table):
        return None
    meta = run.descriptor_meta(VEHICLE_DESCRIPTOR)
    columns = meta.get("columns") or meta.get("classes") or meta.get("labels") or []
    if NOT_A_VEHICLE not in columns:
        return None
    matrix = run.load_descriptor(VEHICLE_DESCRIPTOR)
    values = np.asarray(matrix[:, list(columns).index(NOT_A_VEHICLE)], dtype=np.float64)
    values[list(run.invalid_rows(VEHICLE_DESCRIPTOR))] = 0.0
    return np.nan_to_num(values)


def _groups(table: pd.DataFrame, group_by: str | None) -> np.ndarray | None:
    if group_by == "auto":
        group_by = "camera_id" if "camera_id" in table.columns else None
    if group_by is None:
        return None
    if group_by not in table.columns:
        raise VehiclustError(f"group_by: the collection has no column {group_by!r}")
    return table[group_by].astype(str).to_numpy()


def isolation_z(run: RunFolder, names: list[str], readable: np.ndarray, detectors: DetectorSettings | None,
                use_cluster_distance: bool, reporter: Reporter) -> dict[str, dict[str, np.ndarray]]:
    """Per clustered descriptor (except quality), the robust z of every detector (``detectors``
    None: none) and of the distance to the assigned centre ("centroid"), 0 on unusable rows."""

    spaces = [nm for nm in names if nm != QUALITY_DESCRIPTOR]
    found: dict[str, dict[str, np.ndarray]] = {}
    if not spaces:
        return found
    with reporter.task("Outlier detectors", len(spaces)) as task:
        for name in spaces:
            usable = readable.copy()
            usable[np.fromiter(run.invalid_rows(name), dtype=np.int64)] = False
            zs = detector_z(run.load_descriptor(name), usable, detectors) if detectors else {}
            if use_cluster_distance and CLUSTERING.exists(run, name):
                labels, distance = _centre_distances(run, name, len(readable))
                zs["centroid"] = np.where(usable, cluster_distance_z(labels, distance), 0.0)
            if zs:
                found[name] = zs
            task.advance()
    return found


def _centre_distances(run: RunFolder, name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, distance to the own centre) of a descriptor's clustering, checked against the collection."""
    selected = CLUSTERING.load(run, name)  # an unreadable file or one without distances: one line naming it
    distance = selected.distance if selected.distance_input is None else selected.distance_input
    if len(selected.labels) != rows or len(distance) != rows:
        raise VehiclustError(f"{CLUSTERING.path(run, name)}: {len(selected.labels):,} rows, the collection has "
                             f"{rows:,}; rerun `vehiclust cluster`")
    return selected.labels, distance


def detector_z(matrix: np.ndarray, usable: np.ndarray, settings: DetectorSettings) -> dict[str, np.ndarray]:
    """Robust z of every detector's raw score on the usable rows (0 elsewhere); none when too few."""
    rows = np.flatnonzero(usable)
    if len(rows) <= max(settings.k + 1, 10) or not settings.detectors:
        return {}
    zs = {}
    if settings.executor.kind == "local":
        scores = score_descriptor(matrix, rows, settings)
    else:
        from vehiclust.executor.rows import score_stored_rows

        scores = score_stored_rows(matrix, rows, settings)
    for name, values in scores.items():
        z = np.zeros(len(usable))
        z[rows] = robust_z(values, DETECTORS.get(name).log_scale)
        zs[name] = z
    return zs


def cluster_distance_z(labels: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Robust z of the log distance to the own centre within each cluster (0 for unclustered rows)."""
    z = np.zeros(len(labels))
    for cluster_id in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == cluster_id)
        z[members] = robust_z(distance[members], log_scale=True)
    return np.nan_to_num(z)
