"""Exports of a finished run: the assignment's per-image table, and the images laid out one
folder per cluster or outlier reason (a plan by default; files move only when asked)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from vehiclust.collection.imageio import ZIP_PREFIX, read_bytes
from vehiclust import ownership
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import CLUSTERS, OUTLIERS, TRANSPORT_DATASET, RunFolder, atomic_path, write_csv

TRANSPORT_COLUMNS = ["path", "car_id", "width", "height", "brisque"]


def transport_dataset(run: RunFolder) -> pd.DataFrame:
    """``path, car_id, width, height, brisque`` as the assignment's create_dataset.py wrote it."""
    table = run.load_collection()
    frame = pd.DataFrame({"path": table["path"]})
    frame["car_id"] = table["vehicle_id"] if "vehicle_id" in table.columns else ""
    frame["width"], frame["height"] = table["width"], table["height"]
    verdicts = OUTLIERS.path(run)
    measured = pd.read_csv(verdicts, usecols=lambda c: c == "brisque") if ownership.is_ours(verdicts) else None
    if measured is not None and "brisque" in measured.columns:
        frame["brisque"] = measured["brisque"].to_numpy()
    else:
        frame["brisque"] = table["brisque"] if "brisque" in table.columns else np.nan
    return frame[TRANSPORT_COLUMNS]


def write_transport_dataset(run: RunFolder, path: Path | None = None) -> Path:
    path = Path(path) if path else TRANSPORT_DATASET.path(run)
    write_csv(path, transport_dataset(run))
    return path


def export_plan(run: RunFolder, by: str, to: Path) -> pd.DataFrame:
    """One row per image: where it is and where it would go (``<to>/<group>/<file name>``)."""
    clusters = pd.read_csv(CLUSTERS.require(run), keep_default_na=False)
    table = run.load_collection()
    if by == "cluster":
        groups = clusters["cluster"].map(lambda c: "unassigned" if int(c) < 0 else f"cluster_{int(c):03d}")
    elif by == "reason":
        groups = clusters["outlier_reasons"].map(lambda r: r.split(";")[0] if r else "ok")
    else:
        raise VehiclustError(f"--by expects 'cluster' or 'reason', got {by!r}")
    names = [f"{int(row):07d}_{PurePosixPath(p.replace(chr(92), '/')).name}" for row, p in zip(table["row"], table["path"])]
    return pd.DataFrame({"source": table["location"], "path": table["path"], "group": groups,
                         "target": [str(Path(to) / g / n) for g, n in zip(groups, names)]})


def apply_plan(plan: pd.DataFrame, mode: str) -> int:
    """Copy or link every planned image; returns how many were placed. Existing targets stay."""
    placed = 0
    for source, target in zip(plan["source"], plan["target"]):
        target_path = Path(target)
        if not source or target_path.exists():
            continue
        target_path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "link" and not source.startswith(ZIP_PREFIX):
            os.symlink(Path(source).resolve(), target_path)
        else:
            with atomic_path(target_path) as tmp:
                tmp.write_bytes(read_bytes(source))
        placed += 1
    return placed
