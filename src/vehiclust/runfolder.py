"""The run folder: every stage reads the artifacts of earlier stages and writes its own here.

Every file of a run folder is declared once below (``ARTIFACTS``): its path, the one stage that
writes it, what it holds and the columns or keys a reader may rely on, with ``path``, ``exists``,
``load`` and ``save``. No module builds a run-folder path by hand; it names the artifact::

    RUNS.load(run)                       # runs.csv as a DataFrame
    CLUSTERING.path(run, "color_hist")   # clusterings/color_hist.npz
    MAP.load(run, "color_hist", dims=2)  # maps/color_hist_2d.npy

A stage is skipped when its recorded fingerprint equals the one it would run with now and its
outputs exist. Every file is written to a temporary name in the same folder and renamed, so an
interrupted run never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vehiclust import ownership
from vehiclust.errors import VehiclustError

SCHEMA_VERSION = 1
RECORD_FIELDS = ("stage", "fingerprint", "seconds", "finished", "schema")  # written by record_stage

# columns of collection.parquet that the stages read without asking (ingest writes them all)
COLLECTION_COLUMNS = ("path", "location", "content_hash", "error")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # mkstemp creates 0600; artifacts should read like normal files


@contextlib.contextmanager
def temporary_path(beside: Path) -> Iterator[Path]:
    """Yield a new temporary file in ``beside``'s folder (so a rename onto it is atomic), logged
    so that a killed run's leftover can go; removed on exit unless renamed away."""
    beside = Path(beside)
    ownership.check_folder(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = ownership.new_temporary(beside.parent, beside.name)
    os.close(fd)
    tmp_path = Path(tmp)
    ownership.temporary(tmp_path)
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    ownership.before_write(path)  # never replaces a file of the run folder vehiclust did not write
    with temporary_path(path) as tmp_path:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
        ownership.written(path)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def refuse_link(path: Path, remedy: str) -> None:
    """vehiclust writes plain files only: a link in the place of one of them was put there, may
    lead anywhere, and is not read."""
    if os.path.islink(path):
        raise VehiclustError(f"{path}: a link, not the file vehiclust wrote (not read); {remedy}")


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
        return COLLECTION.path(self)

    @property
    def descriptors_dir(self) -> Path:
        return DESCRIPTOR.path(self, "x").parent

    @property
    def stages_dir(self) -> Path:
        return STAGE_RECORD.path(self, stage="x").parent

    @property
    def cache_dir(self) -> Path:
        return CACHE.path(self)

    def path(self, name: str) -> Path:
        """A file of this folder by its relative name; prefer the artifact (``RUNS.path(run)``)."""
        return self.root / name

    def descriptor_path(self, name: str) -> Path:
        return DESCRIPTOR.path(self, name)

    def descriptor_meta_path(self, name: str) -> Path:
        return DESCRIPTOR_META.path(self, name)

    @classmethod
    def open(cls, root: Path | str) -> RunFolder:
        """An existing run folder (one with a collection), else a VehiclustError saying how to start one."""
        run = cls(root)
        if not COLLECTION.exists(run):
            raise VehiclustError(f"{run.root}: not a run folder (no {COLLECTION.pattern}); "
                                 f"start with `vehiclust run INPUT --out {run.root}`")
        return run

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
        refuse_link(path, f"run `vehiclust describe {self.root}` to compute it again")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no descriptor named {name!r} in this run folder")
        return np.load(path, mmap_mode="r")

    def descriptor_meta(self, name: str) -> dict:
        path = self.descriptor_meta_path(name)
        if os.path.islink(path):
            raise self._damaged_meta(name, "a link, not the file vehiclust wrote; not read")
        try:
            meta = read_json(path)
        except ValueError as exc:  # not JSON, or not UTF-8
            raise self._damaged_meta(name, _first_line(exc)) from exc
        if not isinstance(meta, dict):
            raise self._damaged_meta(name, f"a JSON {type(meta).__name__}, not an object")
        return meta

    def _damaged_meta(self, name: str, problem: str) -> VehiclustError:
        return VehiclustError(f"{self.descriptor_meta_path(name)}: not a descriptor's provenance ({problem}); "
                              f"remove it and {self.descriptor_path(name).name} to compute that descriptor again")

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
        refuse_link(self.collection_path, "run `vehiclust ingest` (or `run`) again")
        if not self.collection_path.exists():
            raise FileNotFoundError(
                f"{self.collection_path}: no collection yet; run `vehiclust ingest` or `run` first"
            )
        if not ownership.is_ours(self.collection_path):  # its locations are read: one left in --out leads anywhere
            raise VehiclustError(f"{self.collection_path}: not written by vehiclust; not read. Run `vehiclust run` "
                                 f"with a new --out")
        try:
            table = pd.read_parquet(self.collection_path)
        except (OSError, ValueError, ImportError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise VehiclustError(f"{self.collection_path}: not a readable collection table ({_first_line(exc)}); "
                                 f"run `vehiclust ingest` (or `run`) again") from exc
        missing = [c for c in COLLECTION_COLUMNS if c not in table.columns]
        if missing:
            raise VehiclustError(f"{self.collection_path}: not a collection table vehiclust wrote (no column "
                                 f"{', '.join(missing)}); run `vehiclust ingest` (or `run`) again")
        return table

    # -- stage bookkeeping -------------------------------------------------------------
    def stage_record(self, stage: str) -> dict | None:
        """The stage's record; None when it has none, or one vehiclust did not write (left in
        --out), or one that is damaged: the stage then runs again and writes it anew."""
        path = STAGE_RECORD.path(self, stage=stage)
        if not ownership.is_ours(path):
            return None
        try:
            record = read_json(path)
        except ValueError:  # not JSON, or not UTF-8
            return None
        return record if isinstance(record, dict) else None

    def stage_is_current(self, stage: str, key: str, outputs: list[Path]) -> bool:
        record = self.stage_record(stage)
        return (
            record is not None
            and record.get("fingerprint") == key
            and all(ownership.is_plain_file(p) for p in outputs)  # a link in an output's place: run again
        )

    def record_stage(self, stage: str, key: str, seconds: float, **info: Any) -> None:
        write_json(
            STAGE_RECORD.path(self, stage=stage),
            {
                "stage": stage,
                "fingerprint": key,
                "seconds": round(seconds, 3),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "schema": SCHEMA_VERSION,
                **info,
            },
        )

    def stage_facts(self, stage: str) -> dict:
        """What the stage's last run reported about itself (its record without the bookkeeping)."""
        record = self.stage_record(stage) or {}
        return {k: v for k, v in record.items() if k not in RECORD_FIELDS}

    def stage_timings(self) -> dict[str, float]:
        """Seconds per stage, from the records vehiclust wrote (:meth:`stage_record`: one left in
        ``--out`` or damaged is not read); NaN where a record holds no number."""
        if not self.stages_dir.is_dir():
            return {}
        timings = {}
        for path in sorted(self.stages_dir.glob("*.json")):
            record = self.stage_record(path.stem)
            if record is not None:
                seconds = record.get("seconds")
                timings[path.stem] = float(seconds) if isinstance(seconds, (int, float)) else float("nan")
        return timings


def write_matrix(path: Path, source: np.ndarray, dtype, rows: np.ndarray | None = None,
                 chunk: int = 32768) -> None:
    """Copy ``source[rows]`` into a .npy of ``dtype`` chunk by chunk, atomically.

    The source may be a memmap larger than memory; only one chunk is ever resident.
    """
    with atomic_path(path) as tmp:
        copy_matrix(tmp, source, dtype, rows, chunk)


def copy_matrix(path: Path, source: np.ndarray, dtype, rows: np.ndarray | None = None,
                chunk: int = 32768) -> None:
    """:func:`write_matrix` into ``path`` as it is (a temporary file the caller owns). Written
    with plain writes, not through a memmap, whose written pages would stay in the process's
    memory until the end (2 GB for the case's EfficientNet-B7 matrix at float16)."""
    n = source.shape[0] if rows is None else len(rows)
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n, source.shape[1])}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = source[start:stop] if rows is None else source[rows[start:stop]]
            fh.write(np.ascontiguousarray(block, dtype=dtype).data)


# -- the artifacts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    """One file (or folder) of a run folder: where it lies, the one stage that writes it, what it
    holds, and the columns (tables) or keys (``.npz``) every reader may rely on.

    ``pattern`` is relative to the run folder; ``{name}`` stands for a descriptor or clustering
    name, other fields (``{dims}``, ``{stage}``, ...) are given as keywords. The format follows
    the suffix: .csv, .parquet, .json, .npy (loaded memory-mapped), .npz, text otherwise, unless
    ``codec`` names the class (``"module:Class"``) whose ``load(path)`` reads the file and whose
    instances ``save(path)`` (imported when used: the class imports this module).
    """

    pattern: str
    writer: str
    holds: str
    columns: tuple[str, ...] = ()
    read_options: dict = field(default_factory=dict, hash=False, compare=False)
    codec: str = ""

    def path(self, run: RunFolder, name: str | None = None, **fields: Any) -> Path:
        """The file of this artifact; a name or field that would lead out of its folder (read
        from a table in the run folder, say) is refused."""
        for value in (name, *fields.values()):
            text = str(value)
            if "/" in text or "\\" in text or text in (".", "..") or "\0" in text:
                raise VehiclustError(f"{text!r}: not a name vehiclust gives its files (from {run.root}); "
                                     f"not read or written")
        return run.root / self.pattern.format(name=name, **fields)

    def exists(self, run: RunFolder, name: str | None = None, **fields: Any) -> bool:
        return self.path(run, name, **fields).exists()

    def require(self, run: RunFolder, name: str | None = None, **fields: Any) -> Path:
        """The path, or a VehiclustError saying which stage writes the missing file."""
        path = self.path(run, name, **fields)
        refuse_link(path, f"run `vehiclust {self.writer} {run.root}` to write it again")
        if not path.exists():
            raise VehiclustError(f"{path} is missing; run `vehiclust {self.writer} {run.root}` first")
        return path

    def load(self, run: RunFolder, name: str | None = None, **fields: Any) -> Any:
        path = self.require(run, name, **fields)
        try:
            value = self._codec().load(path) if self.codec else \
                _READERS.get(path.suffix, _read_text)(path, **self.read_options)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated or foreign: say which
            raise VehiclustError(f"{path}: unreadable ({type(exc).__name__}: {exc}); re-run "
                                 f"`vehiclust {self.writer} {run.root}`") from exc
        self._check(path, value)
        return value

    def save(self, run: RunFolder, value: Any, name: str | None = None, **fields: Any) -> Path:
        path = self.path(run, name, **fields)
        self._check(path, value)
        if self.codec:
            path.parent.mkdir(parents=True, exist_ok=True)
            value.save(path)
        else:
            _WRITERS[path.suffix](path, value)
        return path

    def _codec(self) -> type:
        module, _, name = self.codec.partition(":")
        return getattr(importlib.import_module(module), name)

    def _check(self, path: Path, value: Any) -> None:
        if isinstance(value, pd.DataFrame):
            present = value.columns
        elif is_dataclass(value):
            present = [f.name for f in fields(value) if getattr(value, f.name) is not None]
        else:
            present = getattr(value, "keys", lambda: ())()
        missing = [c for c in self.columns if c not in present]
        if missing:
            raise VehiclustError(f"{path}: lacks {', '.join(missing)}; re-run `vehiclust {self.writer}`")


def _read_csv(path: Path, **options: Any) -> pd.DataFrame:
    return pd.read_csv(path, **options)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


_READERS = {".csv": _read_csv, ".parquet": lambda p: pd.read_parquet(p), ".json": read_json,
            ".npy": lambda p: np.load(p, mmap_mode="r"), ".npz": _read_npz, ".ipynb": read_json}  # else text
_WRITERS = {".csv": write_csv, ".parquet": write_parquet, ".json": write_json, ".npy": write_npy,
            ".npz": _write_npz, ".html": write_text}

_TEXT = {"keep_default_na": False, "na_values": [""]}  # "" is missing; "NA", "None" are values
# -- ingest
COLLECTION = Artifact("collection.parquet", "ingest", "one row per image: row, path, location, size, "
                      "content hash, error, and the input's metadata", ("row", "path", "location", "error"))
INGEST_STAMPS = Artifact("cache/ingest_stamps.parquet", "ingest", "what each probed file looked like (size and "
                         "mtime, archive members: size and CRC), so a re-ingest re-reads only changed files",
                         ("location", "stamp", "probe_key"))
# -- describe (ingest for the descriptors the input brought)
DESCRIPTOR = Artifact("descriptors/{name}.npy", "describe", "N x D matrix, float16/float32, memory-mappable")
DESCRIPTOR_META = Artifact("descriptors/{name}.json", "describe", "provenance of that matrix: kind, "
                           "fingerprint, shape, invalid rows with why, column names", ("name", "kind"))
DESCRIPTOR_PARTS = Artifact("descriptors/.parts/{name}-{key}", "describe",
                            "folder of finished chunks of an interrupted extraction (gone once assembled)")
# -- cluster
_RUN_COLUMNS = ("descriptor", "preprocessing", "algorithm", "params", "k", "n_clusters", "n_rows",
                "calinski_harabasz", "davies_bouldin", "silhouette", "silhouette_std", "stability",
                "stability_std", "min_cluster_share", "max_cluster_share", "size_balance", "noise_share",
                "score", "selected", "reason", "note", "seconds")  # in this order (cluster.sweep.RUN_COLUMNS)
RUNS = Artifact("runs.csv", "cluster", "one row per run of the single descriptors' sweep; the selected "
                "one per descriptor says why (all runs with the mixtures and best_overall: "
                "compare.best.all_runs)", _RUN_COLUMNS, _TEXT)
CLUSTERING = Artifact("clusterings/{name}.npz", "cluster", "the selected run of one descriptor, mixture or "
                      "the consensus (compare writes those two): a vehiclust.cluster.clustering.Clustering",
                      ("labels", "distance"), codec="vehiclust.cluster.clustering:Clustering")
COARSE_CLUSTERING = Artifact("clusterings/{name}.coarse.npz", "cluster", "the coarse level of one descriptor's "
                             "delivered run, when that run is the finer level of a hierarchy "
                             "(vehiclust.cluster.levels): a Clustering",
                           ("labels", "distance"), codec="vehiclust.cluster.clustering:Clustering")
RUN_LABELS = Artifact("clusterings/{name}.runs.npz", "cluster", "every run's labels of one descriptor or "
                      "mixture (one row per its runs.csv / mixture_runs.csv row, -1 outside the rows "
                      "clustered), keyed by preprocessing, algorithm and params; written only with "
                      "ClusterSettings.keep_run_labels (for benchmarks)",
                      ("labels", "preprocessing", "algorithm", "params"))
# -- compare
COMPARISON = Artifact("comparison.csv", "compare", "one row per selected clustering: the common score, "
                      "the label checks, and (once the best rule ran) best and rank", ("name",))
AGREEMENT = Artifact("agreement.csv", "compare", "one row per pair of clusterings: ARI, AMI, NMI")
ATTRIBUTES = Artifact("attributes.csv", "compare", "AMI / NMI of each clustering with each attribute")
COMPARE_INFO = Artifact("compare.json", "compare", "the common space, the best rule, the sentences, the "
                        "tuning of the mixture weights")
MIXTURE_RUNS = Artifact("mixture_runs.csv", "compare", "the mixtures' runs and the consensus row, in "
                        "runs.csv's columns", _RUN_COLUMNS, _TEXT)
BEST = Artifact("best.json", "compare", "the clustering the deliverables show: its name, the rule "
                "and why", ("name",))
# -- outliers
OUTLIERS = Artifact("outliers.csv", "outliers", "one row per image: each check's score and flag, the "
                    "verdict and its reasons", ("is_outlier", "outlier_reasons"),
                    {"keep_default_na": False})
# -- report
CLUSTERS = Artifact("clusters.csv", "report", "the deliverable: one row per image, the best clustering "
                    "with its cluster names, every clustering, the outlier verdict",
                    ("path", "cluster", "is_outlier"),
                    {**_TEXT, "dtype": {"vehicle_id": str, "camera_id": str}})
DESCRIPTIONS = Artifact("cluster_descriptions.csv", "report", "one row per cluster: name and sentence",
                        read_options=_TEXT)
EVIDENCE = Artifact("cluster_evidence.csv", "report", "the attribute shares behind each description",
                    read_options=_TEXT)
MAP = Artifact("maps/{name}_{dims}d.npy", "report", "N x dims map coordinates of a descriptor (NaN invalid)")
MAP_META = Artifact("maps/{name}.json", "report", "provenance of that descriptor's maps (fingerprint, method, rows)")
MAP_FIGURE = Artifact("maps/{name}_2d.png", "report", "quick look: the 2D map coloured by its clustering")
THUMBNAILS = Artifact("thumbs", "report", "folder of cached thumbnails the report pages show")
REPORT_HTML = Artifact("report.html", "report", "the report to read in a browser")
REPORT_NOTEBOOK = Artifact("report.ipynb", "report", "the executed notebook")
# -- every stage
STAGE_RECORD = Artifact("stages/{stage}.json", "each stage", "the key (fingerprint) and seconds of the "
                        "stage's last run, with the facts it reported", ("stage", "fingerprint"))
CACHE = Artifact("cache", "any stage", "folder of recomputable caches")
RUN_MANIFEST = Artifact(f"{ownership.STATE_DIR}/{ownership.MANIFEST}", "every stage (ownership.py)",
                        "the log of every file vehiclust wrote here: only those are replaced or removed")
RUN_LOCK = Artifact(f"{ownership.STATE_DIR}/{ownership.LOCK}", "every stage (ownership.py)",
                    "flock held while a run writes; names the holder (pid, start, command)")
# -- commands outside the pipeline
EXTERNAL_CLUSTER_SCORES = Artifact("external_scores_clusters.csv", "demo", "ARI / NMI against the demo's truth")
EXTERNAL_OUTLIER_SCORES = Artifact("external_scores_outliers.csv", "demo", "outlier verdicts against the "
                                   "planted outliers")
CONTACT_SHEET = Artifact("demo_contact_sheet.jpg", "demo", "64 images of the demo collection")
TRANSPORT_DATASET = Artifact("transport_dataset.csv", "export", "the assignment's transport_dataset.csv")
EXPORT_PLAN = Artifact("export_plan_{by}.csv", "export", "where each image goes (a dry run unless applied)")

ARTIFACTS: dict[str, Artifact] = {name: value for name, value in globals().items() if isinstance(value, Artifact)}


def load_quality_table(run: RunFolder, n_rows: int | None = None) -> pd.DataFrame | None:
    """The quality descriptor as a table with named columns (invalid rows NaN); None when the run
    has none or when it does not fit (another row count, columns that do not match its width)."""
    from vehiclust.quality.describer import QUALITY_DESCRIPTOR, quality_columns  # registers it

    if QUALITY_DESCRIPTOR not in run.descriptor_names():
        return None
    columns = quality_columns(run.descriptor_meta(QUALITY_DESCRIPTOR))
    matrix = np.asarray(run.load_descriptor(QUALITY_DESCRIPTOR), dtype=np.float64)
    if (n_rows is not None and matrix.shape[0] != n_rows) or len(columns) != matrix.shape[1]:
        return None
    frame = pd.DataFrame(matrix, columns=columns)
    frame.iloc[list(run.invalid_rows(QUALITY_DESCRIPTOR))] = np.nan
    return frame


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
