"""The ingest stage: INPUT -> ``collection.parquet`` (+ imported descriptor matrices).

The collection has one row per image in input order; an unusable file stays as a row with its
``error`` so nothing is ever silently dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vehiclust import ownership
from vehiclust.collection.changes import PROBE_FIELDS, file_stamps, reusable_probes, stat_stamp
from vehiclust.collection.confine import refusal
from vehiclust.collection.descriptor_files import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    DescriptorFile,
    DescriptorLimits,
    check_width,
    descriptor_name,
    load_descriptor_file,
    nonfinite_rows,
)
from vehiclust.collection.imageio import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_PIXELS,
    ZIP_PREFIX,
    ZIP_SEPARATOR,
    ProbeResult,
    probe,
)
from vehiclust.collection.metadata import (
    looks_like_veriwild,
    read_transport_dataset,
    read_vehicle_info,
    vehicle_id_of,
    veriwild_key,
)
from vehiclust.collection.sources import InputSpec, bundle_posix, detect_input
from vehiclust.errors import InputError
from vehiclust.progress import NullReporter, Reporter
from vehiclust.runfolder import (
    INGEST_STAMPS,
    STAGE_RECORD,
    RunFolder,
    copy_matrix,
    fingerprint,
    temporary_path,
    write_matrix,
    write_parquet,
)

FLOAT16_ABOVE_BYTES = 1 << 30  # matrices above 1 GiB at float32 are stored as float16
FLOAT16_MAX = 60000.0
FLOAT16_TINY = float(np.finfo(np.float16).tiny)


@dataclass(frozen=True)
class IngestSettings:
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_invalid_rows: bool = False
    io_threads: int = 8
    trust_pickles: bool = False  # unpickle anything (pickles can run code): only files you trust
    follow_links: bool = False  # read links that lead out of the input folder
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES  # per image file or archive member
    max_descriptor_rows: int = DEFAULT_MAX_ROWS
    max_descriptor_bytes: int = DEFAULT_MAX_BYTES

    @property
    def descriptor_limits(self) -> DescriptorLimits:
        return DescriptorLimits(self.max_descriptor_rows, self.max_descriptor_bytes, self.trust_pickles)


def ingest(
    input_path: Path | str,
    run: RunFolder,
    descriptor_files: list[Path] | None = None,
    settings: IngestSettings = IngestSettings(),
    reporter: Reporter | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Build (or reuse) the collection table of ``input_path`` in ``run``, which becomes a run
    folder marked as vehiclust's (see ownership.py; ``force`` accepts a non-empty folder)."""
    reporter = reporter or NullReporter()
    with ownership.claimed(run.root, input_path, force):
        note = ownership.interrupted_note(run.root)  # None when the pipeline already said it
        if note:
            reporter.message(note)
        return _ingest(input_path, run, descriptor_files, settings, reporter)


def _ingest(input_path: Path | str, run: RunFolder, descriptor_files: list[Path] | None,
            settings: IngestSettings, reporter: Reporter) -> pd.DataFrame:
    spec = detect_input(input_path, descriptor_files, settings.follow_links, settings.max_descriptor_bytes)
    key = ingest_key(input_path, spec, settings)
    if run.stage_is_current("ingest", key, [run.collection_path]):
        reporter.message(f"ingest: up to date ({run.collection_path})")
        return run.load_collection()
    started = time.perf_counter()
    ownership.remove_file(STAGE_RECORD.path(run, stage="ingest"))  # an interrupted re-ingest never looks complete
    skipped = [refusal(path, reason) for path, reason in spec.refused_descriptor_files.items()]
    with contextlib.ExitStack() as spills:
        loaded = _each_or_skip(lambda p: spill(run, load_descriptor_file(p, limits=settings.descriptor_limits), spills),
                               spec.descriptor_files, skipped, spec.has_images)
        _check_unique_names(loaded)
        stamps = file_stamps(spec.locations)
        previous = reusable_probes(run, spec.locations, stamps, probe_key(settings))
        table = build_table(spec, loaded, settings, reporter, previous)

        def import_one(descriptor: DescriptorFile) -> DescriptorFile:
            import_descriptor(run, descriptor, table, settings, reporter)
            return descriptor

        imported = _each_or_skip(import_one, loaded, skipped, spec.has_images)
    _forget_skipped(run, skipped, {d.name for d in imported})
    for warning in filter(None, [*(check_width(d) for d in imported), *spec.warnings, refused_summary(spec),
                                 *(f"descriptor file skipped, its other rows kept: {e}" for e in skipped)]):
        reporter.message(f"[yellow]warning:[/] {warning}")
    write_parquet(run.collection_path, table)
    INGEST_STAMPS.save(run, pd.DataFrame(
        {"location": table["location"], "stamp": stamps or [""] * len(table), "probe_key": probe_key(settings)}))
    run.record_stage(
        "ingest", key, time.perf_counter() - started,
        input=str(Path(input_path).resolve()), kind=spec.kind, rows=len(table),
        has_images=spec.has_images, unreadable=int((table["error"] != "").sum()),
        notes=[n for n in spec.notes if n], descriptors=[d.name for d in imported],
        skipped_descriptor_files=[str(e) for e in skipped],
    )
    return table


def spill(run: RunFolder, descriptor: DescriptorFile, spills: contextlib.ExitStack) -> DescriptorFile:
    """A matrix held in memory (unpickled, parsed from a table) moved to a temporary memory-
    mapped file in its storage dtype, removed when ``spills`` closes: the table is built from
    every file's rows first, and the case's four pickles hold 6.2 GB at float32 together."""
    if isinstance(descriptor.matrix, np.memmap):
        return descriptor
    final = run.descriptor_path(descriptor.name)
    ownership.before_write(final)
    path = spills.enter_context(temporary_path(final))
    copy_matrix(path, descriptor.matrix, storage_dtype(descriptor.matrix))
    return dataclasses.replace(descriptor, matrix=np.load(path, mmap_mode="r"),
                               file_dtype=descriptor.source_dtype)


def _forget_skipped(run: RunFolder, skipped: list[InputError], kept: set[str]) -> None:
    """A skipped file's matrix from an earlier ingest must not be clustered as if it were current."""
    for name in {descriptor_name(Path(e.path)) for e in skipped} - kept:
        ownership.remove_file(run.descriptor_path(name))
        ownership.remove_file(run.descriptor_meta_path(name))


def _each_or_skip(step, items: list, skipped: list[InputError], has_images: bool) -> list:
    """``step`` of every item; an item whose file is bad is left out and its error kept in
    ``skipped`` (one bad descriptor file never stops the others, nor the images). With no images
    and no descriptor left there is nothing to ingest: the first error is raised, a file skipped
    before this step included."""
    done = []
    for item in items:
        try:
            done.append(step(item))
        except InputError as error:
            skipped.append(error)
    if skipped and not done and not has_images:
        raise skipped[0]
    return done


def ingest_key(input_path: Path | str, spec: InputSpec, settings: IngestSettings) -> str:
    return fingerprint("ingest", str(Path(input_path).resolve()), input_signature(spec), asdict(settings))


def input_signature(spec: InputSpec) -> str:
    """Changes whenever a file the collection is built from changes: size and modification
    time of every file (a bundle's images included; a link's target, so replacing what it
    points to counts) and of each archive that holds images."""
    files = [*spec.descriptor_files, *(p for p in (spec.vehicle_info, spec.transport_csv) if p)]
    if spec.kind == "case_bundle":
        files.append(spec.root / "images_paths.csv")
    archives = sorted({loc.split(ZIP_SEPARATOR, 1)[0][len(ZIP_PREFIX):]
                       for loc in spec.locations if loc.startswith(ZIP_PREFIX)})
    digest = hashlib.sha256()
    for path in [*map(str, files), *archives]:
        digest.update(f"{path}|{stat_stamp(path)}\n".encode())
    for location in spec.locations:
        if location and not location.startswith(ZIP_PREFIX):
            digest.update(f"{location}|{stat_stamp(location)}\n".encode())
    digest.update("\n".join(spec.paths).encode())
    digest.update(repr(sorted(spec.refused.items())).encode())
    digest.update(repr(sorted(spec.refused_descriptor_files.items())).encode())
    return digest.hexdigest()[:16]


def probe_key(settings: IngestSettings) -> str:
    return fingerprint("probe", settings.max_pixels, settings.max_image_bytes)


def refused_summary(spec: InputSpec) -> str:
    """One line for the files that were listed but never read; each is a row with its reason."""
    if not spec.refused:
        return ""
    reasons = pd.Series([r.split(":", 1)[0] for r in spec.refused.values()]).value_counts()
    counts = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
    first = min(spec.refused)
    return (f"{len(spec.refused)} files refused and kept as rows with their reason ({counts}), "
            f"e.g. {spec.paths[first]}: {spec.refused[first]}")


def build_table(spec: InputSpec, loaded: list[DescriptorFile], settings: IngestSettings,
                reporter: Reporter, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """``previous``: header facts still valid for some rows (``index`` + the probe fields)."""
    paths = spec.paths or _paths_from_descriptors(loaded)
    locations = spec.locations or [""] * len(paths)
    table = collection_table(paths, locations, _probe_frame(locations, settings, reporter, previous))
    if not spec.has_images:
        table["error"] = ""  # no images is a valid input, not an error per row
    for row, reason in spec.refused.items():  # never read, and never to be read later
        table.loc[row, "error"] = reason
    if spec.kind in ("images", "case_bundle") and looks_like_veriwild(paths):
        table["vehicle_id"] = [vehicle_id_of(p) for p in paths]
    if spec.vehicle_info is not None:
        table = _join_vehicle_info(table, spec.vehicle_info)
    if spec.transport_csv is not None:
        table = _join_transport(table, spec.transport_csv)
    return table


def collection_table(paths: list[str], locations: list[str] | None = None, probes: pd.DataFrame | None = None,
                     **metadata) -> pd.DataFrame:
    """The table ingest writes: ``row, path, location``, the header facts of each file (``probes``;
    by default none read: zero sizes, no hash, no error) and any metadata columns."""
    n = len(paths)
    if probes is None:
        probes = pd.DataFrame([asdict(ProbeResult())] * n, columns=PROBE_FIELDS)
    table = pd.DataFrame({"row": np.arange(n, dtype=np.int64), "path": list(paths),
                          "location": list(locations) if locations is not None else [""] * n})
    table = pd.concat([table, probes.reset_index(drop=True)], axis=1)
    for column, values in metadata.items():
        table[column] = values
    return table


def _paths_from_descriptors(loaded: list[DescriptorFile]) -> list[str]:
    keyed = next((d for d in loaded if d.keys is not None), None)
    if keyed is not None:
        return list(keyed.keys)
    rows = loaded[0].matrix.shape[0]
    return [f"row_{i:07d}" for i in range(rows)]


def _probe_frame(locations: list[str], settings: IngestSettings, reporter: Reporter,
                 previous: pd.DataFrame | None) -> pd.DataFrame:
    """One row of header facts per location: reused where still valid, read otherwise."""
    previous = previous if previous is not None and len(previous) else None
    if previous is None:
        return pd.DataFrame([asdict(p) for p in _probe_all(locations, settings, reporter)], columns=PROBE_FIELDS)
    known = set(previous["index"].tolist())
    todo = [i for i in range(len(locations)) if i not in known]
    fresh = pd.DataFrame([asdict(p) for p in _probe_all([locations[i] for i in todo], settings, reporter, whole=False)],
                         columns=PROBE_FIELDS).assign(index=todo)
    frame = pd.concat([previous, fresh], ignore_index=True).sort_values("index")
    frame = frame.drop(columns="index").reset_index(drop=True)
    for column in ("width", "height", "file_size"):
        frame[column] = frame[column].astype(np.int64)
    return frame


def _probe_all(locations: list[str], settings: IngestSettings, reporter: Reporter,
               whole: bool = True) -> list[ProbeResult]:
    if whole and not any(locations):  # no images at all: a valid input, no error per row
        return [ProbeResult() for _ in locations]

    def one(location: str) -> ProbeResult:
        if not location:
            return ProbeResult(error="image missing")
        return probe(location, settings.max_pixels, settings.max_image_bytes)

    results = []
    with reporter.task("Reading image headers", len(locations)) as task, \
            ThreadPoolExecutor(settings.io_threads) as pool:
        for result in pool.map(one, locations, chunksize=64):
            results.append(result)
            task.advance()
    return results


def _join_vehicle_info(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    info = read_vehicle_info(path)
    keys = table["path"].map(veriwild_key)
    joined = pd.DataFrame({"key": keys}).merge(info, on="key", how="left").drop(columns="key")
    clashing = [c for c in joined.columns if c in table.columns]
    joined = joined.rename(columns={c: f"info_{c}" for c in clashing})
    return pd.concat([table, joined.set_index(table.index).fillna("")], axis=1)


def _join_transport(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    transport = read_transport_dataset(path)
    transport["__key"] = transport["path"].astype(str).map(bundle_posix)
    extra = transport.drop(columns=["path"]).drop_duplicates("__key").set_index("__key")
    keys = table["path"].map(bundle_posix)
    for column in extra.columns:
        values = keys.map(extra[column])
        if column in ("width", "height"):
            # image headers win; the transport table fills in when images are absent
            table[column] = np.where(table[column] > 0, table[column], values.fillna(0)).astype(int)
        else:
            table[column] = values.to_numpy()
    return table


# -- descriptors a user brought ----------------------------------------------------------

def _check_unique_names(loaded: list[DescriptorFile]) -> None:
    seen: dict[str, Path] = {}
    for descriptor in loaded:
        if descriptor.name in seen:
            raise InputError(descriptor.source, f"descriptor name {descriptor.name!r} is also used "
                                                f"by {seen[descriptor.name]}; rename one file")
        seen[descriptor.name] = descriptor.source


def match_rows(descriptor: DescriptorFile, table: pd.DataFrame) -> np.ndarray | None:
    """For each collection row, the matrix row that describes it (None = same order)."""
    n_rows, n_vectors = len(table), descriptor.matrix.shape[0]
    if descriptor.keys is None:
        if n_vectors != n_rows:
            raise InputError(descriptor.source, f"has {n_vectors:,} rows but the collection has "
                                                f"{n_rows:,} images; rows are matched by order, so "
                                                f"the counts must agree (or add a 'path' column)")
        return None
    positions = _positions_by_path(descriptor.keys, table["path"].tolist(), descriptor.source)
    missing = np.flatnonzero(positions < 0)
    if len(missing):
        examples = ", ".join(table["path"].iloc[missing[:3]])
        raise InputError(descriptor.source, f"no vector for {len(missing):,} of {n_rows:,} images "
                                            f"(e.g. {examples})")
    return positions.astype(np.int64)


def _positions_by_path(keys: list[str], paths: list[str], source: Path | None = None) -> np.ndarray:
    """Index of the key naming each path; a key may carry more leading folders (absolute paths).
    Two keys naming the same image stop the import: which vector is meant is unknowable."""
    split_keys = [bundle_posix(k).split("/") for k in keys]
    split_paths = [bundle_posix(p).split("/") for p in paths]
    by_depth: dict[int, dict[str, int]] = {}
    clashes: dict[str, tuple[int, int]] = {}
    for depth in {len(p) for p in split_paths}:
        index = by_depth[depth] = {}
        for i, k in enumerate(split_keys):
            tail = "/".join(k[-depth:])
            if tail in index:
                clashes.setdefault(tail, (index[tail], i))
            index[tail] = i
    positions = np.array([by_depth[len(p)].get("/".join(p), -1) for p in split_paths], dtype=np.int64)
    used = [t for t in ("/".join(p) for p in split_paths) if t in clashes]
    if used:
        first, second = clashes[used[0]]
        raise InputError(source or "descriptor file",
                         f"{len(set(used)):,} images have more than one vector, e.g. {used[0]!r} "
                         f"on rows {first} and {second}; keep one row per image")
    return positions


def import_descriptor(run: RunFolder, descriptor: DescriptorFile, table: pd.DataFrame,
                      settings: IngestSettings, reporter: Reporter) -> None:
    rows = match_rows(descriptor, table)
    matrix = descriptor.matrix
    bad = nonfinite_rows(matrix)
    if rows is not None:  # the collection's rows whose vector is bad (matrix[rows] would be a copy)
        bad = np.flatnonzero(np.isin(rows, bad))
    if len(bad) and not settings.allow_invalid_rows:
        first = ", ".join(str(i) for i in bad[:5])
        raise InputError(descriptor.source, f"{len(bad):,} rows contain NaN or inf (first rows: "
                                            f"{first}); fix the file, or pass --allow-invalid-rows "
                                            f"to keep them as outliers")
    dtype = storage_dtype(matrix)
    with reporter.task(f"Importing {descriptor.name}", 1) as task:
        write_matrix(run.descriptor_path(descriptor.name), matrix, dtype, rows)
        if len(bad):
            stored = np.load(run.descriptor_path(descriptor.name), mmap_mode="r+")
            stored[bad] = 0  # placeholder rows stay finite; they are flagged, never clustered
            stored.flush()
            del stored
        task.advance()
    stat = descriptor.source.stat()
    run.save_descriptor_meta(descriptor.name, {
        "name": descriptor.name,
        "kind": "imported",
        "source": str(descriptor.source.resolve()),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_dtype": descriptor.source_dtype,
        "dtype": np.dtype(dtype).name,
        "shape": [len(table), int(matrix.shape[1])],
        "matched_by": "order" if rows is None else "path",
        "invalid": {str(int(i)): "NaN or inf in the descriptor file" for i in bad},
    })


def storage_dtype(matrix: np.ndarray, chunk: int = 32768) -> type:
    """float16 for big matrices whose values fit it (none too large, and rows not so small that
    float16 would round them to zero), float32 otherwise. Every row is scanned, chunk by chunk: a
    single row beyond float16's range would otherwise be stored as inf."""
    if matrix.shape[0] * matrix.shape[1] * 4 <= FLOAT16_ABOVE_BYTES:
        return np.float32
    if matrix.dtype == np.float16:  # a spilled matrix, or a float16 file
        return np.float16
    largest, smallest_row = 0.0, np.inf
    for start in range(0, matrix.shape[0], chunk):
        block = np.abs(np.asarray(matrix[start:start + chunk], dtype=np.float32))
        row_max = np.where(np.isfinite(block), block, 0).max(axis=1)
        largest = max(largest, float(row_max.max()))
        smallest_row = min(smallest_row, float(np.min(row_max[row_max > 0], initial=np.inf)))
    fits = largest < FLOAT16_MAX and smallest_row > 1024 * FLOAT16_TINY
    return np.float16 if fits else np.float32
