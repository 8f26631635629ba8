"""Descriptor files a user already has: .npy, .npz, .parquet, .csv, .pickle.

Each file holds one N x D matrix, optionally keyed by image path. A key column (``path``,
``paths``, ``image``, ``filename``, ...) is used to match rows to images; without one, rows are
matched by order. Every problem is raised as an InputError naming the file.

The files come from someone else: pickles are unpickled with an allow-list (numpy arrays and
plain containers of numbers) unless the user trusts them, every file is read within a row and
byte budget checked before the bulk of it is read, and values that float32 cannot hold stop
the import instead of silently becoming inf or 0.
"""

from __future__ import annotations

import ast
import importlib
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vehiclust.errors import InputError

DESCRIPTOR_SUFFIXES = frozenset({".npy", ".npz", ".parquet", ".csv", ".pickle", ".pkl"})
KEY_COLUMNS = ("path", "paths", "image", "image_path", "filename", "file", "id")
# Widths the case bundle documents; a different width is suspicious but not fatal.
DEFAULT_MAX_ROWS = 50_000_000
DEFAULT_MAX_BYTES = 16 << 30  # decoded values; the case's EfficientNet-B7 pickle is 4.3 GB at float32
FLOAT32 = np.finfo(np.float32)
CASE_WIDTHS = {"efficientnet_b7": 2560, "osnet": 512, "vdc_color": 128, "vdc_type": 512,
               "mdc_color": 128, "mdc_type": 512}


@dataclass
class DescriptorFile:
    """A matrix read from a user's file, with the image keys when the file carries them."""

    name: str
    source: Path
    matrix: np.ndarray  # N x D, any float dtype; may be a read-only memmap
    keys: list[str] | None = None
    file_dtype: str | None = None  # the file's own dtype, when ``matrix`` is a converted copy

    @property
    def source_dtype(self) -> str:
        return self.file_dtype or str(self.matrix.dtype)


@dataclass(frozen=True)
class DescriptorLimits:
    """What a descriptor file may cost before it is read, and whether its pickles are trusted."""

    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES
    trust_pickles: bool = False


def descriptor_name(path: Path) -> str:
    """File stem as a descriptor name: ``efficientnet-b7.pickle`` -> ``efficientnet_b7``."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", path.stem).strip("_").lower() or "descriptor"


def is_descriptor_file(path: Path) -> bool:
    return path.suffix.lower() in DESCRIPTOR_SUFFIXES


def load_descriptor_file(path: Path | str, name: str | None = None,
                         limits: DescriptorLimits = DescriptorLimits()) -> DescriptorFile:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "descriptor file not found")
    if not path.is_file():
        raise InputError(path, "not a regular file (a FIFO, device or folder); refused")
    if path.stat().st_size == 0:
        raise InputError(path, "descriptor file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix in (".pickle", ".pkl", ".csv"):  # read whole: the file's size bounds the values
        _check_bytes(path, path.stat().st_size, limits)
    try:
        if suffix == ".npy":
            matrix, keys = np.load(path, mmap_mode="r", allow_pickle=False), None
        elif suffix == ".npz":
            matrix, keys = _from_npz(path, limits)
        elif suffix in (".pickle", ".pkl"):
            matrix, keys = _from_object(path, _unpickle(path, limits.trust_pickles), limits)
        elif suffix == ".parquet":
            matrix, keys = _from_frame(path, _read_parquet(path, limits))
        elif suffix == ".csv":
            matrix, keys = _from_frame(path, _read_csv(path, limits))
        else:
            raise InputError(path, f"unsupported descriptor format {suffix!r}")
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(path, "does not fit in memory; lower --max-descriptor-bytes to stop such "
                               "files early, or convert it to .npy (memory-mapped)") from exc
    except Exception as exc:  # any parser failure becomes one line that names the file
        raise InputError(path, f"cannot read as a descriptor file ({type(exc).__name__}: {exc})") from exc
    matrix = validate_matrix(path, matrix)
    _check_rows(path, matrix.shape[0], limits)
    _check_bytes(path, matrix.size * matrix.dtype.itemsize, limits)
    return DescriptorFile(name or descriptor_name(path), path, matrix, keys)


def _check_rows(path: Path, rows: int, limits: DescriptorLimits) -> None:
    if rows > limits.max_rows:
        raise InputError(path, f"{rows:,} rows exceed the budget of {limits.max_rows:,} rows per "
                               f"descriptor file; raise it with --max-descriptor-rows")


def _check_bytes(path: Path, size: int, limits: DescriptorLimits) -> None:
    if size > limits.max_bytes:
        raise InputError(path, f"{size:,} bytes exceed the budget of {limits.max_bytes:,} bytes per "
                               f"descriptor file; raise it with --max-descriptor-bytes")


def _read_parquet(path: Path, limits: DescriptorLimits) -> pd.DataFrame:
    """Row count and value count come from the footer, so a small file that decodes to millions
    of rows (or of vector elements, in a list column) is refused before any is decoded."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    _check_rows(path, metadata.num_rows, limits)
    values = sum(metadata.row_group(g).column(c).num_values
                 for g in range(metadata.num_row_groups) for c in range(metadata.num_columns))
    _check_bytes(path, values * 8, limits)
    return pd.read_parquet(path)


def _read_csv(path: Path, limits: DescriptorLimits) -> pd.DataFrame:
    frame = pd.read_csv(path, nrows=limits.max_rows + 1)
    _check_rows(path, len(frame), limits)
    return frame


def _numpy_core(module: str):
    """numpy 2 names its internals ``numpy._core``; pickles written by numpy 1 say ``numpy.core``."""
    return importlib.import_module(module.replace("numpy.core", "numpy._core", 1)
                                   if hasattr(np, "_core") else module)


# What a pickled ndarray (any protocol, numpy 1 or 2) and numpy scalars are rebuilt from; none
# of these can call anything else. Plain lists, tuples, dicts and numbers need no global at all.
PICKLE_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class AllowListUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers of numbers; refuses every other global,
    which is how a pickle runs code (the pattern the ``pickle`` docs call restricting globals)."""

    def __init__(self, fh, path: Path):
        super().__init__(fh)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_ALLOWED:
            raise InputError(self.path, f"the pickle refers to {module}.{name}, which is not a numpy "
                                        f"array or a plain list of numbers, so it was not unpickled "
                                        f"(unpickling can run code); if you trust this file, pass "
                                        f"--trust-pickles")
        if module.startswith("numpy.") and module != "numpy":
            return getattr(_numpy_core(module), name)
        return super().find_class(module, name)


def _unpickle(path: Path, trusted: bool = False):
    with open(path, "rb") as fh:
        if trusted:
            return pickle.load(fh)  # the user vouched for the file with --trust-pickles
        return AllowListUnpickler(fh, path).load()


def _from_npz(path: Path, limits: DescriptorLimits):
    with zipfile.ZipFile(path) as archive:  # the member's unpacked size, before unpacking it
        for info in archive.infolist():
            _check_bytes(path, info.file_size, limits)
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if len(names) != 1:
            raise InputError(path, f"expected one array in the .npz, found {len(names)}: {names}")
        return archive[names[0]], None


def _from_object(path: Path, obj, limits: DescriptorLimits = DescriptorLimits()):
    if isinstance(obj, pd.DataFrame):
        return _from_frame(path, obj)
    _check_nested_size(path, obj, limits)
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        return np.stack([np.asarray(v).ravel() for v in obj.values()]), keys
    return np.asarray(obj), None


def _check_nested_size(path: Path, obj, limits: DescriptorLimits) -> None:
    """Rows x width of a list (or dict) of vectors before it becomes an array: a pickle can
    refer to one list a million times in a few bytes each, so its file size bounds nothing."""
    if not isinstance(obj, (list, tuple, dict)) or not obj:
        return
    rows = list(obj.values()) if isinstance(obj, dict) else obj
    first = rows[0]
    width = len(first) if isinstance(first, (list, tuple, np.ndarray)) else 1
    _check_rows(path, len(rows), limits)
    _check_bytes(path, len(rows) * width * 8, limits)


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
        return np.asarray(cell).ravel()

    rows = [parse(cell) for cell in column]
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InputError(path, f"vectors of different lengths in column {column.name!r}: "
                               f"{sorted(widths)[:5]}")
    return np.stack(rows)


def validate_matrix(path: Path, matrix) -> np.ndarray:
    """A 2-D real numeric matrix whose values survive float32 storage, or an InputError that
    says what is wrong and where."""
    matrix = np.asarray(matrix) if not isinstance(matrix, np.ndarray) else matrix
    if np.iscomplexobj(matrix):
        raise InputError(path, f"complex values (dtype {matrix.dtype}); descriptors must be real: "
                               f"store the real and imaginary parts as separate columns, or abs()")
    if matrix.dtype == object or not np.issubdtype(matrix.dtype, np.number):
        raise InputError(path, f"expected a numeric matrix, got dtype {matrix.dtype}")
    if matrix.ndim == 1:
        raise InputError(path, f"a 1-D array of {matrix.shape[0]:,} values; if it holds one value "
                               f"per image, save it with shape ({matrix.shape[0]}, 1)")
    if matrix.ndim != 2:
        raise InputError(path, f"expected a 2-D matrix (rows x dimensions), got shape {matrix.shape}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(path, f"empty matrix of shape {matrix.shape}")
    if np.issubdtype(matrix.dtype, np.floating) and matrix.dtype.itemsize > 4:
        _check_float32_range(path, matrix)
    return matrix


def _check_float32_range(path: Path, matrix: np.ndarray, chunk_bytes: int = 1 << 25) -> None:
    """Values beyond float32 would be stored as inf, and rows whose every value is below its
    smallest normal number as zeros: both would be wrong without a word, so both stop here."""
    chunk = max(1, chunk_bytes // (8 * matrix.shape[1]))  # a memmap is scanned, never loaded whole
    too_big, too_small = [], []
    for start in range(0, matrix.shape[0], chunk):
        block = np.abs(np.asarray(matrix[start:start + chunk], dtype=np.float64))
        finite = np.where(np.isfinite(block), block, 0.0)
        row_max = finite.max(axis=1)
        too_big.extend(start + np.flatnonzero(row_max > FLOAT32.max))
        too_small.extend(start + np.flatnonzero((row_max > 0) & (row_max < FLOAT32.tiny)))
    if too_big:
        raise InputError(path, f"{len(too_big):,} rows hold values beyond float32's range "
                               f"(|x| > {FLOAT32.max:.3g}; first row {too_big[0]}); they would become inf: "
                               f"rescale the file")
    if too_small:
        raise InputError(path, f"{len(too_small):,} rows hold only values below float32's smallest "
                               f"normal number ({FLOAT32.tiny:.3g}; first row {too_small[0]}); they would "
                               f"become zeros: rescale the file (e.g. multiply by 1e30)")


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
