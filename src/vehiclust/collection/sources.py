"""Recognise what the user pointed at: an image folder, a case bundle, or descriptor files."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from vehiclust.collection.confine import Confinement, input_root
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
    refused: dict[int, str] = field(default_factory=dict)  # row -> why it is never read
    refused_descriptor_files: dict[Path, str] = field(default_factory=dict)  # file -> why it is never read
    warnings: list[str] = field(default_factory=list)  # printed by ingest, one line each

    @property
    def has_images(self) -> bool:
        return any(self.locations)


def detect_input(path: Path | str, extra_descriptor_files: list[Path] | None = None,
                 follow_links: bool = False, max_table_bytes: int | None = None) -> InputSpec:
    """What ``path`` is. Files the input names are checked against its root (see confine.py),
    its CSV and text tables against ``max_table_bytes``; ``extra_descriptor_files`` are the
    user's own choice and are read as given."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "input not found")
    extras = [Path(p) for p in (extra_descriptor_files or [])]
    if path.is_file():
        if path.name.lower() == PATHS_CSV:
            return _case_bundle(Confinement(path.parent, follow_links, max_table_bytes), extras)
        if is_descriptor_file(path):
            return InputSpec(kind="descriptors", root=path.parent, descriptor_files=[path, *extras])
        raise InputError(path, "not an image folder, a case bundle or a descriptor file")
    root = input_root(path)
    confine = Confinement(root, follow_links, max_table_bytes)
    if (root / PATHS_CSV).exists():
        return _case_bundle(confine, extras)
    spec = _image_folder(confine, extras)
    if spec is not None:
        return spec
    descriptor_files, refused = confined_descriptor_files(root, confine)
    if descriptor_files or refused or extras:
        return InputSpec(kind="descriptors", root=root, descriptor_files=descriptor_files + extras,
                         refused_descriptor_files=refused)
    raise InputError(path, "empty input: no images (.jpg, .png, ...), no images_paths.csv and "
                           "no descriptor files (.npy, .parquet, .csv, .pickle) found")


def confined_descriptor_files(folder: Path, confine: Confinement) -> tuple[list[Path], dict[Path, str]]:
    """The descriptor files in ``folder`` that may be read, sorted, and those refused with why:
    one refused file is skipped like an unreadable one, it does not stop the others."""
    found = sorted(p for p in (folder.iterdir() if folder.is_dir() else [])
                   if is_descriptor_file(p) and not p.is_dir())
    refused = {p: reason for p in found if (reason := confine.problem(p))}
    return [p for p in found if p not in refused], refused


def _image_folder(confine: Confinement, extras: list[Path]) -> InputSpec | None:
    root = Path(confine.root)
    relpaths, unusual, not_read = scan_images(root, confine.follow_links)
    if not relpaths:
        return None
    locations = [os.path.join(root, p) for p in relpaths]
    # a regular file listed below the resolved root, through no link, is inside by construction
    refused = {i: reason for i, rel in enumerate(relpaths)
               if rel in unusual and (reason := confine.problem(locations[i]))}
    return InputSpec(
        kind="images",
        root=root,
        paths=relpaths,
        locations=["" if i in refused else loc for i, loc in enumerate(locations)],
        descriptor_files=extras,
        vehicle_info=find_vehicle_info(root, confine),
        refused=refused,
        warnings=[f"{root}: {len(folders)} {why}: {', '.join(folders[:5])}"
                  for why, folders in not_read.items() if folders],
    )


LINKED_FOLDERS = "linked folders not read (pass --follow-links to read them)"
UNREADABLE_FOLDERS = "folders that cannot be listed (no permission?)"


def scan_images(root: Path, follow_links: bool = False) -> tuple[list[str], set[str], dict[str, list[str]]]:
    """Relative POSIX paths of every image-named entry below root, sorted, hidden ones
    skipped; which of them are not plain files (links, FIFOs, devices: each becomes a row, with
    its reason when it is refused); and the folders that were not read, by why.

    Written with os.scandir rather than os.walk, which passes over linked and unlistable folders
    without a word and, when told to follow links, loops forever on a link to a parent.
    """
    found, unusual, seen = [], set(), set()
    not_read: dict[str, list[str]] = {LINKED_FOLDERS: [], UNREADABLE_FOLDERS: []}
    stack = [""]  # folders relative to root, "" or ending with "/"
    while stack:
        rel_dir = stack.pop()
        try:
            info = os.stat(os.path.join(root, rel_dir))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(os.path.join(root, rel_dir)))
        except OSError:
            not_read[UNREADABLE_FOLDERS].append(rel_dir.rstrip("/") or ".")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = rel_dir + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel + "/")
            elif entry.is_symlink() and entry.is_dir():
                if follow_links:
                    stack.append(rel + "/")
                else:
                    not_read[LINKED_FOLDERS].append(rel)
            elif is_image_name(entry.name):
                found.append(rel)
                if not entry.is_file(follow_symlinks=False):
                    unusual.add(rel)
    return sorted(found), unusual, {why: sorted(folders) for why, folders in not_read.items()}


def find_vehicle_info(root: Path, confine: Confinement) -> Path | None:
    """Inside the input only: a file beside it belongs to someone else."""
    for candidate in (root / VEHICLE_INFO, root / "train_test_split" / VEHICLE_INFO):
        if candidate.is_file():
            return confine.require_table(candidate)
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


def _case_bundle(confine: Confinement, extras: list[Path]) -> InputSpec:
    root = Path(confine.root)
    paths = read_paths_csv(confine.require_table(root / PATHS_CSV))
    posix = [bundle_posix(p) for p in paths]
    locations, note = _locate_bundle_images(root, posix, confine)
    refused = {i: reason for i, loc in enumerate(locations)
               if loc and not loc.startswith("zip:") and (reason := confine.problem(loc))}
    descriptor_files, refused_descriptors = confined_descriptor_files(root / "descriptors", confine)
    transport = next((confine.require_table(p) for p in (root / TRANSPORT_CSV, root / "data" / TRANSPORT_CSV)
                      if p.is_file()), None)
    return InputSpec(
        kind="case_bundle",
        root=root,
        paths=paths,
        locations=["" if i in refused else loc for i, loc in enumerate(locations)],
        descriptor_files=descriptor_files + extras,
        vehicle_info=find_vehicle_info(root, confine),
        transport_csv=transport,
        notes=[note],
        refused=refused,
        refused_descriptor_files=refused_descriptors,
    )


def _locate_bundle_images(root: Path, posix: list[str], confine: Confinement) -> tuple[list[str], str]:
    """Find the images of a bundle: unpacked under one of the usual folders, in a zip, or absent."""
    probe_rows = posix[: min(len(posix), 50)]
    for sub in IMAGE_DIR_CANDIDATES:
        base = root / sub if sub else root
        if any((base / p).exists() for p in probe_rows):
            return [os.path.normpath(base / p) for p in posix], f"images unpacked under {base}"
    for archive in _bundle_archives(root):
        mapping = _zip_members(confine.require(archive), posix)
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
