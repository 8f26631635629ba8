"""What tells that an input file changed since the last ingest, so that only its row is read
again: size and modification time of a file, size and CRC of an archive member."""

from __future__ import annotations

import os
import zipfile
from dataclasses import fields

import numpy as np
import pandas as pd

from vehiclust.collection.imageio import ZIP_PREFIX, ZIP_SEPARATOR, ProbeResult
from vehiclust import ownership
from vehiclust.runfolder import INGEST_STAMPS, RunFolder

PROBE_FIELDS = [f.name for f in fields(ProbeResult)]


def stat_stamp(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def file_stamps(locations: list[str]) -> list[str]:
    """Per location, what says its content did not change: size and modification time of a
    file, size and CRC of an archive member (its content hash, read from the central directory)."""
    members: dict[str, dict[str, str]] = {}
    stamps = []
    for location in locations:
        if not location:
            stamps.append("")
        elif location.startswith(ZIP_PREFIX):
            archive, member = location[len(ZIP_PREFIX):].split(ZIP_SEPARATOR, 1)
            if archive not in members:
                members[archive] = _member_stamps(archive)
            stamps.append(members[archive].get(member, "missing"))
        else:
            stamps.append(stat_stamp(location))
    return stamps


def _member_stamps(archive: str) -> dict[str, str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            return {info.filename: f"{info.file_size}:{info.CRC:08x}" for info in zf.infolist()}
    except (OSError, zipfile.BadZipFile):
        return {}  # reading its members reports why


def reusable_probes(run: RunFolder, locations: list[str], stamps: list[str], key: str) -> pd.DataFrame:
    """The previous collection's header facts for the files that did not change since (same
    location, same stamp, same limits): a changed image re-reads its row, no other row."""
    path = INGEST_STAMPS.path(run)
    empty = pd.DataFrame(columns=["index", *PROBE_FIELDS])
    if not ownership.is_ours(path) or not ownership.is_ours(run.collection_path):
        return empty  # (a link in the place of either: not read)
    try:
        before = pd.read_parquet(path)
        collection = pd.read_parquet(run.collection_path, columns=["location", *PROBE_FIELDS])
    except Exception:  # noqa: BLE001 (a damaged cache only costs the re-read)
        return empty
    if len(before) != len(collection) or not (before["location"] == collection["location"]).all():
        return empty
    before = pd.concat([before[before["probe_key"] == key][["location", "stamp"]], collection[PROBE_FIELDS]],
                       axis=1, join="inner")
    before = before[~before["stamp"].isin(["", "missing"])].drop_duplicates(["location", "stamp"])
    now = pd.DataFrame({"index": np.arange(len(locations)), "location": locations, "stamp": stamps})
    return now.merge(before, on=["location", "stamp"])[["index", *PROBE_FIELDS]]
