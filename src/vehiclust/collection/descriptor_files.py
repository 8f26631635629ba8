"""Descriptor files a user already has: .npy, .npz, .parquet, .csv, .pickle.

Each file holds one N x D matrix, optionally keyed by image path. A key column (``path``,
``paths``, ``image``, ``filename``, ...) is used to match rows to images; without one, rows are
matched by order. Every problem is raised as an InputError naming the file.
"""

from __future__ import annotations

import ast
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vehiclust.errors import InputError

DESCRIPTOR_SUFFIXES = frozenset({".npy", ".npz", ".parquet", ".csv", ".pickle", ".pkl"})
KEY_COLUMNS = ("path", "paths", "image", "image_path", "filename", "file", "id")
# Widths the case bundle documents; a different width is suspicious but not fatal.
CASE_WIDTHS = {"efficientnet_b7": 2560, "osnet": 512, "vdc_color": 128, "vdc_type": 512,
               "mdc_color": 128, "mdc_type": 512}


@dataclass
class DescriptorFile:
    """A matrix read from a user's file, with the image keys when the file carries them."""

    name: str
    source: Path
    matrix: np.ndarray  # N x D, any float dtype; may be a read-only memmap
    keys: list[str] | None = None


def descriptor_name(path: Path) -> str:
    """File stem as a descriptor name: ``efficientnet-b7.pickle`` -> ``efficientnet_b7``."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", path.stem).strip("_").lower() or "descriptor"


def is_descriptor_file(path: Path) -> bool:
    return path.suffix.lower() in DESCRIPTOR_SUFFIXES


def load_descriptor_file(path: Path | str, name: str | None = None) -> DescriptorFile:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "descriptor file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "descriptor file is empty (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            matrix, keys = np.load(path, mmap_mode="r", allow_pickle=False), None
        elif suffix == ".npz":
            matrix, keys = _from_npz(path)
        elif suffix in (".pickle", ".pkl"):
            matrix, keys = _from_object(path, _unpickle(path))
        elif suffix == ".parquet":
            matrix, keys = _from_frame(path, pd.read_parquet(path))
        elif suffix == ".csv":
            matrix, keys = _from_frame(path, pd.read_csv(path))
        else:
            raise InputError(path, f"unsupported descriptor format {suffix!r}")
    except InputError:
        raise
    except Exception as exc:  # any parser failure becomes one line that names the file
        raise InputError(path, f"cannot read as a descriptor file ({type(exc).__name__}: {exc})") from exc
    matrix = validate_matrix(path, matrix)
    return DescriptorFile(name or descriptor_name(path), path, matrix, keys)


def _unpickle(path: Path):
    with open(path, "rb") as fh:
        return pickle.load(fh)  # the case bundle ships pickles; the user vouches for the file


def _from_npz(path: Path):
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if len(names) != 1:
            raise InputError(path, f"expected one array in the .npz, found {len(names)}: {names}")
        return archive[names[0]], None


def _from_object(path: Path, obj):
    if isinstance(obj, pd.DataFrame):
        return _from_frame(path, obj)
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        return np.stack([np.asarray(v, dtype=np.float32).ravel() for v in obj.values()]), keys
    return np.asarray(obj), None


def _key_column(frame: pd.DataFrame) -> str | None:
    lowered = {str(c).lower(): c for c in frame.columns}
    for candidate in KEY_COLUMNS:
        if candidate in lowered and not pd.api.types.is_numeric_dtype(frame[lowered[candidate]]):
            return lowered[candidate]
    return None


def _from_frame(path: Path, frame: pd.DataFrame):
    key = _key_column(frame)
    keys = frame[key].astype(str).tolist() if key is not None else None
    values = frame.drop(columns=[key]) if key is not None else frame
    if values.shape[1] == 1 and not pd.api.types.is_numeric_dtype(values.iloc[:, 0]):
        return _from_list_column(path, values.iloc[:, 0]), keys
    non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric:
        raise InputError(path, f"non-numeric columns {non_numeric[:5]} (expected one key column "
                               f"named one of {list(KEY_COLUMNS)} plus numeric columns)")
    return values.to_numpy(), keys


def _from_list_column(path: Path, column: pd.Series) -> np.ndarray:
    """One column whose cells are vectors: arrays (parquet) or '[0.1, 0.2]' strings (csv)."""
    def parse(cell):
        if isinstance(cell, str):
            cell = ast.literal_eval(cell.strip())
        return np.asarray(cell, dtype=np.float64).ravel()

    rows = [parse(cell) for cell in column]
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InputError(path, f"vectors of different lengths in column {column.name!r}: "
                               f"{sorted(widths)[:5]}")
    return np.stack(rows)


def validate_matrix(path: Path, matrix) -> np.ndarray:
    """A 2-D finite numeric matrix, or an InputError that says what is wrong and where."""
    matrix = np.asarray(matrix) if not isinstance(matrix, np.ndarray) else matrix
    if matrix.dtype == object or not np.issubdtype(matrix.dtype, np.number):
        raise InputError(path, f"expected a numeric matrix, got dtype {matrix.dtype}")
    if matrix.ndim != 2:
        raise InputError(path, f"expected a 2-D matrix (rows x dimensions), got shape {matrix.shape}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(path, f"empty matrix of shape {matrix.shape}")
    return matrix


def nonfinite_rows(matrix: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Indices of rows with NaN or inf, scanned in chunks so a memmap is never loaded whole."""
    if np.issubdtype(matrix.dtype, np.integer):
        return np.empty(0, dtype=np.int64)
    bad = [start + np.flatnonzero(~np.isfinite(matrix[start:start + chunk]).all(axis=1))
           for start in range(0, matrix.shape[0], chunk)]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


def check_width(descriptor: DescriptorFile) -> str | None:
    """A warning when a case-bundle descriptor does not have its documented width."""
    expected = CASE_WIDTHS.get(descriptor.name)
    width = descriptor.matrix.shape[1]
    if expected is not None and width != expected:
        return (f"{descriptor.source}: {descriptor.name} has {width} columns; the case bundle "
                f"documents {expected}")
    return None
