"""Thumbnails, made once and cached in the run folder (``DIR/thumbs/<row // 1000>/<row>.jpg``),
shared by the report's montages, the map's hover view and the notebook.

``thumbs/manifest.json`` records the collection they were made from; when the collection
changes, the cache is dropped. Rows are named by collection row so the page can compute a
thumbnail's file name from a point's row number without shipping a list of 400k names.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from vehiclust.collection.imageio import UnreadableImage, decode_rgb, read_bytes
from vehiclust.runfolder import THUMBNAILS, RunFolder, atomic_path, fingerprint, read_json, write_json

THUMB_SIDE = 112
QUALITY = 75
THUMBS_DIR = THUMBNAILS.pattern  # relative: the report pages link thumbnails by this path


def thumbnail_relpath(row: int) -> str:
    return f"{THUMBS_DIR}/{row // 1000}/{row}.jpg"


def thumbnail_path(run: RunFolder, row: int) -> Path:
    return run.root / thumbnail_relpath(row)


def collection_key(table: pd.DataFrame) -> str:
    hashes = table["content_hash"] if "content_hash" in table.columns else table["location"]
    rows = pd.util.hash_pandas_object(table["path"].astype(str) + "|" + hashes.astype(str), index=False)
    return fingerprint(THUMB_SIDE, QUALITY, hashlib.sha256(rows.to_numpy().tobytes()).hexdigest())


def ensure_thumbnails(run: RunFolder, table: pd.DataFrame, rows, threads: int = 4) -> np.ndarray:
    """Make the missing thumbnails of ``rows``; returns the rows that have one now (rows without
    an image, or whose image cannot be decoded, get none)."""
    folder = THUMBNAILS.path(run)
    key = collection_key(table)
    manifest = folder / "manifest.json"
    if folder.exists() and (not manifest.exists() or read_json(manifest).get("collection") != key):
        shutil.rmtree(folder)  # made from another collection: row numbers no longer match
    folder.mkdir(parents=True, exist_ok=True)
    write_json(manifest, {"collection": key, "side": THUMB_SIDE})
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    locations = table["location"].to_numpy()
    todo = [r for r in rows.tolist() if locations[r] and not thumbnail_path(run, r).exists()]
    with ThreadPoolExecutor(threads) as pool:  # decoding releases the GIL
        list(pool.map(lambda r: _write_thumbnail(locations[r], thumbnail_path(run, r)), todo))
    return np.array([r for r in rows.tolist() if thumbnail_path(run, r).exists()], dtype=np.int64)


def make_thumbnail(location: str, side: int = THUMB_SIDE) -> Image.Image | None:
    try:
        image = decode_rgb(read_bytes(location), (side * 2, side * 2))
    except (UnreadableImage, OSError):
        return None
    image.thumbnail((side, side))
    return image


def _write_thumbnail(location: str, path: Path) -> None:
    image = make_thumbnail(location)
    if image is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=QUALITY)


def cached_uri(run: RunFolder, row: int, has_image: bool) -> str:
    """The cached thumbnail of ``row`` as a data URI, or a placeholder that says why not."""
    path = thumbnail_path(run, row)
    if path.exists():
        return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    return placeholder_uri("unreadable" if has_image else "no image")


def placeholder_uri(text: str, side: int = THUMB_SIDE) -> str:
    image = Image.new("RGB", (side, side), (220, 220, 220))
    ImageDraw.Draw(image).text((8, side // 2 - 6), text, fill=(90, 90, 90))
    return _encode(image)


def _encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
