"""The run folder: every stage reads the artifacts of earlier stages and writes its own here.

Layout::

    DIR/collection.parquet          one row per image (see vehiclust.collection)
    DIR/descriptors/<name>.npy      N x D float16/float32, memory-mappable
    DIR/descriptors/<name>.json     provenance of that matrix
    DIR/stages/<stage>.json         fingerprint of the inputs + settings a stage last ran with
    DIR/runs.csv, clusters.csv, outliers.csv, report.html

A stage is skipped when its recorded fingerprint equals the one it would run with now and its
outputs exist. Every file is written to a temporary name in the same folder and renamed, so an
interrupted run never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vehiclust import ownership

SCHEMA_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # mkstemp creates 0600; artifacts should read like normal files


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    ownership.before_write(path)  # never replaces a file of the run folder vehiclust did not write
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    ownership.temporary(tmp_path)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
        ownership.written(path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (settings, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class RunFolder:
    """Paths and bookkeeping of one run folder."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------
    @property
    def collection_path(self) -> Path:
        return self.root / "collection.parquet"

    @property
    def descriptors_dir(self) -> Path:
        return self.root / "descriptors"

    @property
    def stages_dir(self) -> Path:
        return self.root / "stages"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def path(self, name: str) -> Path:
        return self.root / name

    def descriptor_path(self, name: str) -> Path:
        return self.descriptors_dir / f"{name}.npy"

    def descriptor_meta_path(self, name: str) -> Path:
        return self.descriptors_dir / f"{name}.json"

    # -- descriptors -------------------------------------------------------------------
    def descriptor_names(self) -> list[str]:
        """Names of complete descriptors (matrix and provenance both present), sorted."""
        if not self.descriptors_dir.is_dir():
            return []
        return sorted(
            p.stem
            for p in self.descriptors_dir.glob("*.npy")
            if ownership.is_ours(p) and ownership.is_ours(self.descriptor_meta_path(p.stem))
        )

    def load_descriptor(self, name: str) -> np.ndarray:
        """The N x D matrix, memory-mapped read-only (never loaded whole)."""
        path = self.descriptor_path(name)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no descriptor named {name!r} in this run folder")
        return np.load(path, mmap_mode="r")

    def descriptor_meta(self, name: str) -> dict:
        return read_json(self.descriptor_meta_path(name))

    def save_descriptor(self, name: str, matrix: np.ndarray, meta: dict) -> None:
        """Matrix first, provenance last: a descriptor counts as present once its JSON exists."""
        self.descriptors_dir.mkdir(parents=True, exist_ok=True)
        write_npy(self.descriptor_path(name), matrix)
        self.save_descriptor_meta(name, meta)

    def save_descriptor_meta(self, name: str, meta: dict) -> None:
        write_json(self.descriptor_meta_path(name), meta)

    def invalid_rows(self, name: str) -> dict[int, str]:
        """Rows whose vector is a placeholder (unreadable image, NaN in the file), with why."""
        return {int(k): v for k, v in self.descriptor_meta(name).get("invalid", {}).items()}

    # -- collection --------------------------------------------------------------------
    def load_collection(self) -> pd.DataFrame:
        if not self.collection_path.exists():
            raise FileNotFoundError(
                f"{self.collection_path}: no collection yet; run `vehiclust ingest` or `run` first"
            )
        return pd.read_parquet(self.collection_path)

    # -- stage bookkeeping -------------------------------------------------------------
    def stage_record(self, stage: str) -> dict | None:
        path = self.stages_dir / f"{stage}.json"
        return read_json(path) if ownership.is_ours(path) else None  # a record left in --out is not ours

    def stage_is_current(self, stage: str, key: str, outputs: list[Path]) -> bool:
        record = self.stage_record(stage)
        return (
            record is not None
            and record.get("fingerprint") == key
            and all(Path(p).exists() for p in outputs)
        )

    def record_stage(self, stage: str, key: str, seconds: float, **info: Any) -> None:
        write_json(
            self.stages_dir / f"{stage}.json",
            {
                "stage": stage,
                "fingerprint": key,
                "seconds": round(seconds, 3),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "schema": SCHEMA_VERSION,
                **info,
            },
        )

    def stage_timings(self) -> dict[str, float]:
        if not self.stages_dir.is_dir():
            return {}
        return {
            p.stem: read_json(p).get("seconds", float("nan"))
            for p in sorted(self.stages_dir.glob("*.json"))
        }


def write_matrix(path: Path, source: np.ndarray, dtype, rows: np.ndarray | None = None,
                 chunk: int = 32768) -> None:
    """Copy ``source[rows]`` into a .npy of ``dtype`` chunk by chunk, atomically.

    The source may be a memmap larger than memory; only one chunk is ever resident.
    """
    n = source.shape[0] if rows is None else len(rows)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, source.shape[1]))
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = source[start:stop] if rows is None else source[rows[start:stop]]
            out[start:stop] = block
        out.flush()
        del out
