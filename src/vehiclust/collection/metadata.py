"""Per-image metadata that comes with a collection: VeRi-Wild's vehicle_info.txt and the
assignment's transport_dataset.csv. Both become extra columns of the collection table."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from vehiclust.errors import InputError

# vehicle_info.txt: "id/image;Camera ID;Time;Model;Type;Color", e.g. "00001/000001;30;...".
VEHICLE_INFO_COLUMNS = {
    "camera id": "camera_id",
    "time": "time",
    "model": "model",
    "type": "type",
    "color": "color",
    "colour": "color",
}


def read_vehicle_info(path: Path) -> pd.DataFrame:
    """A frame keyed by ``key`` = "<vehicle_id>/<image stem>" with normalised column names."""
    try:
        frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputError(path, f"cannot read as a ';'-separated vehicle_info file ({exc})") from exc
    if frame.shape[1] < 2:
        raise InputError(path, "expected ';'-separated columns 'id/image;Camera ID;Time;Model;Type;Color'")
    key_column = frame.columns[0]
    renamed = {c: VEHICLE_INFO_COLUMNS.get(c.strip().lower(), c.strip().lower().replace(" ", "_"))
               for c in frame.columns[1:]}
    frame = frame.rename(columns=renamed)
    frame["key"] = frame.pop(key_column).str.strip()
    return frame.drop_duplicates("key")


def veriwild_key(path: str) -> str:
    """"<vehicle_id>/<image stem>" of a VeRi-Wild-style path, the key of vehicle_info.txt."""
    parts = PurePosixPath(path.replace("\\", "/"))
    return f"{parts.parent.name}/{parts.stem}"


def vehicle_id_of(path: str) -> str:
    """The folder that holds the image; in VeRi-Wild layouts it names one physical vehicle."""
    return PurePosixPath(path.replace("\\", "/")).parent.name


def looks_like_veriwild(paths: list[str]) -> bool:
    """Most images sit in a folder whose name is a number: one folder per vehicle id."""
    sample = paths[:: max(1, len(paths) // 200)]
    digit_folders = sum(vehicle_id_of(p).isdigit() for p in sample)
    return bool(sample) and digit_folders >= 0.8 * len(sample)


def read_transport_dataset(path: Path) -> pd.DataFrame:
    """The assignment's per-image table: path, car_id, width, height, brisque."""
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise InputError(path, f"cannot read as CSV ({exc})") from exc
    if "path" not in frame.columns:
        raise InputError(path, f"expected a 'path' column, found {list(frame.columns)}")
    return frame
