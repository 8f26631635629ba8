"""Recognise what the user pointed at: an image folder, a case bundle, or descriptor files."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from vehiclust.collection.descriptor_files import is_descriptor_file
from vehiclust.collection.imageio import is_image_name, zip_location
from vehiclust.errors import InputError

PATHS_CSV = "images_paths.csv"
TRANSPORT_CSV = "transport_dataset.csv"
VEHICLE_INFO = "vehicle_info.txt"
IMAGE_DIR_CANDIDATES = ("", "raw_data", "row_data", "images", "data")


@dataclass
class InputSpec:
    """What an INPUT turned out to be and where each part of it lives."""

    kind: str  # "images" | "case_bundle" | "descriptors"
    root: Path
    paths: list[str] = field(default_factory=list)  # user-facing path of each row, input order
    locations: list[str] = field(default_factory=list)  # where to read each image ("" = absent)
    descriptor_files: list[Path] = field(default_factory=list)
    vehicle_info: Path | None = None
    transport_csv: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_images(self) -> bool:
        return any(self.locations)


def detect_input(path: Path | str, extra_descriptor_files: list[Path] | None = None) -> InputSpec:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "input not found")
    extras = [Path(p) for p in (extra_descriptor_files or [])]
    if path.is_file():
        if path.name.lower() == PATHS_CSV:
            return _case_bundle(path.parent, extras)
        if is_descriptor_file(path):
            return InputSpec(kind="descriptors", root=path.parent, descriptor_files=[path, *extras])
        raise InputError(path, "not an image folder, a case bundle or a descriptor file")
    if (path / PATHS_CSV).exists():
        return _case_bundle(path, extras)
    spec = _image_folder(path, extras)
    if spec is not None:
        return spec
    descriptor_files = sorted(p for p in path.iterdir() if p.is_file() and is_descriptor_file(p))
    if descriptor_files or extras:
        return InputSpec(kind="descriptors", root=path, descriptor_files=descriptor_files + extras)
    raise InputError(path, "empty input: no images (.jpg, .png, ...), no images_paths.csv and "
                           "no descriptor files (.npy, .parquet, .csv, .pickle) found")


def _image_folder(root: Path, extras: list[Path]) -> InputSpec | None:
    relpaths = scan_images(root)
    if not relpaths:
        return None
    return InputSpec(
        kind="images",
        root=root,
        paths=relpaths,
        locations=[str((root / p).absolute()) for p in relpaths],
        descriptor_files=extras,
        vehicle_info=find_vehicle_info(root),
    )


def scan_images(root: Path) -> list[str]:
    """Relative POSIX paths of every image-named file below root, sorted, hidden ones skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        found.extend(
            (rel_dir / name).as_posix()
            for name in filenames
            if not name.startswith(".") and is_image_name(name)
        )
    return sorted(found)


def find_vehicle_info(root: Path) -> Path | None:
    for candidate in (root / VEHICLE_INFO, root / "train_test_split" / VEHICLE_INFO,
                      root.parent / VEHICLE_INFO, root.parent / "train_test_split" / VEHICLE_INFO):
        if candidate.is_file():
            return candidate
    return None


# -- the case bundle ------------------------------------------------------------------------

def read_paths_csv(csv_path: Path) -> list[str]:
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputError(csv_path, f"cannot read as CSV ({exc})") from exc
    columns = {c.strip().lower(): c for c in frame.columns}
    column = columns.get("paths") or columns.get("path")
    if column is None:
        raise InputError(csv_path, f"expected a column 'paths' or 'path', found {list(frame.columns)}")
    if frame.empty:
        raise InputError(csv_path, "lists no images")
    return frame[column].str.strip().tolist()


def bundle_posix(path: str) -> str:
    """Case paths are relative Windows paths: ``veriwild\\1\\00001\\000001.jpg``."""
    return PurePosixPath(path.replace("\\", "/").lstrip("./")).as_posix()


def _case_bundle(root: Path, extras: list[Path]) -> InputSpec:
    paths = read_paths_csv(root / PATHS_CSV)
    posix = [bundle_posix(p) for p in paths]
    locations, note = _locate_bundle_images(root, posix)
    descriptor_dir = root / "descriptors"
    descriptor_files = sorted(
        p for p in (descriptor_dir.iterdir() if descriptor_dir.is_dir() else [])
        if p.is_file() and is_descriptor_file(p)
    )
    transport = next((p for p in (root / TRANSPORT_CSV, root / "data" / TRANSPORT_CSV) if p.is_file()), None)
    return InputSpec(
        kind="case_bundle",
        root=root,
        paths=paths,
        locations=locations,
        descriptor_files=descriptor_files + extras,
        vehicle_info=find_vehicle_info(root),
        transport_csv=transport,
        notes=[note],
    )


def _locate_bundle_images(root: Path, posix: list[str]) -> tuple[list[str], str]:
    """Find the images of a bundle: unpacked under one of the usual folders, in a zip, or absent."""
    probe_rows = posix[: min(len(posix), 50)]
    for sub in IMAGE_DIR_CANDIDATES:
        base = root / sub if sub else root
        if any((base / p).exists() for p in probe_rows):
            return [str((base / p).absolute()) for p in posix], f"images unpacked under {base}"
    for archive in _bundle_archives(root):
        mapping = _zip_members(archive, posix)
        if mapping is not None:
            return [zip_location(archive.absolute(), m) if m else "" for m in mapping], \
                f"images read from the archive {archive}"
    return [""] * len(posix), "images are missing: only the descriptors will be used"


def _bundle_archives(root: Path) -> list[Path]:
    return [p for sub in IMAGE_DIR_CANDIDATES for p in sorted((root / sub).glob("*.zip"))
            if p.is_file()]


def _zip_members(archive: Path, posix: list[str]) -> list[str] | None:
    """Member name for each path, allowing the archive to add or drop leading folders."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as exc:
        raise InputError(archive, f"not a valid zip archive ({exc})") from exc
    by_tail = {}
    for name in names:
        parts = name.split("/")
        by_tail.setdefault("/".join(parts[-3:]), name)
    members = [by_tail.get("/".join(p.split("/")[-3:]), "") for p in posix]
    return members if any(members) else None
