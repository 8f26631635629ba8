"""Exports of a finished run: the assignment's per-image table, and the images laid out one
folder per cluster or outlier reason (a plan by default; files move only when asked)."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from vehiclust.collection.imageio import ZIP_PREFIX, UnreadableImage, read_bytes
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
    """One row per image: where it is and where it would go (``<to>/<group>/<file name>``).
    Group and file names are made from the run folder's tables, so they are reduced to safe
    characters: a name from a hostile ``clusters.csv`` or collection never leaves ``to``."""
    path = CLUSTERS.require(run)
    if not ownership.is_ours(path):
        raise VehiclustError(f"{path}: not written by vehiclust; run `vehiclust run` (or `compare`) again")
    clusters = pd.read_csv(path, keep_default_na=False, dtype=str)
    table = run.load_collection()
    if len(clusters) != len(table):
        raise VehiclustError(f"{path}: {len(clusters):,} rows for {len(table):,} images; run `vehiclust run` again")
    if by == "cluster":
        number = pd.to_numeric(clusters["cluster"], errors="coerce")
        groups = number.map(lambda c: f"cluster_{int(c):03d}" if np.isfinite(c) and c >= 0 else "unassigned")
    elif by == "reason":
        groups = clusters["outlier_reasons"].map(lambda r: safe_name(r.split(";")[0]) if r else "ok")
    else:
        raise VehiclustError(f"--by expects 'cluster' or 'reason', got {by!r}")
    names = [f"{int(row):07d}_{safe_name(PurePosixPath(p.replace(chr(92), '/')).name)}"
             for row, p in zip(table["row"], table["path"])]
    return pd.DataFrame({"source": table["location"], "path": table["path"], "group": groups.to_numpy(),
                         "target": [str(Path(to) / g / n) for g, n in zip(groups, names)]})


def safe_name(text: str) -> str:
    """A file or folder name of letters, digits, ``_``, ``-`` and ``.`` that is not ``.`` or ``..``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip(".") or "_"
    return name[:120]


def apply_plan(plan: pd.DataFrame, mode: str, to: Path, warn=lambda text: None) -> int:
    """Copy or link every planned image into ``to``; returns how many were placed. Existing
    targets stay; an image that cannot be read is skipped with a warning (the rest go on)."""
    placed, root = 0, Path(to).resolve()
    for source, target in zip(plan["source"], plan["target"]):
        target_path = Path(target)
        if not source or os.path.lexists(target_path):
            continue
        try:
            target_path.parent.mkdir(parents=True, exist_ok=True)
            if root not in target_path.parent.resolve().parents and target_path.parent.resolve() != root:
                warn(f"{target_path}: its folder leads out of {to}; skipped")
                continue
            if mode == "link" and not source.startswith(ZIP_PREFIX):
                os.symlink(Path(source).resolve(), target_path)
            else:
                data = read_bytes(source)
                with atomic_path(target_path) as tmp:
                    tmp.write_bytes(data)
        except (OSError, ValueError, UnreadableImage) as exc:
            warn(f"{source}: not exported ({exc}); the other images go on")
            continue
        placed += 1
    return placed
