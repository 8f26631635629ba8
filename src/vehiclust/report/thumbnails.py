"""Thumbnails, made once and cached in the run folder: the pictures of the report's montages and
galleries (``DIR/thumbs/<row // 1000>/<row>.jpg``), shown by the page and the notebook, and the
map's hover thumbnails, in sheets of tiles (``DIR/thumbs/map/``, see ``tilesheets.py``).

``thumbs/manifest.json`` records the collection they were made from; when the collection
changes, the thumbnails vehiclust wrote are removed (only those: a file of the user's in
``thumbs/`` stays, see ownership.py). Files and sheets are named by collection row, so a reader
finds a row's thumbnail from its row number alone.
"""

from __future__ import annotations

import base64
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from vehiclust import ownership
from vehiclust.collection.imageio import UnreadableImage, decode_rgb, read_bytes
from vehiclust.runfolder import THUMBNAILS, RunFolder, atomic_path, fingerprint, read_json, write_json

THUMB_SIDE = 112
QUALITY = 75
# 2: the image's own aspect ratio, longer side THUMB_SIDE (1 squeezed every image into a square);
# 3: the map's thumbnails in sheets (2 wrote a file per map point)
THUMBS_VERSION = 3
THUMBS_DIR = THUMBNAILS.pattern
SHEETS_FOLDER = "map"  # thumbs/map/<block>.jpg: the map's sheets of tiles (tilesheets.py)


def thumbnail_relpath(row: int) -> str:
    return f"{THUMBS_DIR}/{row // 1000}/{row}.jpg"


def thumbnail_path(run: RunFolder, row: int) -> Path:
    return run.root / thumbnail_relpath(row)


def collection_key(table: pd.DataFrame) -> str:
    hashes = table["content_hash"] if "content_hash" in table.columns else table["location"]
    rows = pd.util.hash_pandas_object(table["path"].astype(str) + "|" + hashes.astype(str), index=False)
    return fingerprint(THUMBS_VERSION, THUMB_SIDE, QUALITY, hashlib.sha256(rows.to_numpy().tobytes()).hexdigest())


def ensure_thumbnails(run: RunFolder, table: pd.DataFrame, rows, threads: int = 4) -> np.ndarray:
    """Make the missing thumbnails of ``rows``; returns the rows that have one now (rows without
    an image, or whose image cannot be decoded, get none)."""
    prepare_cache(run, table)
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    locations, usable = table["location"].to_numpy(), with_readable_image(table)
    todo = [r for r in rows.tolist() if usable[r] and not ownership.is_ours(thumbnail_path(run, r))]
    with ThreadPoolExecutor(threads) as pool:  # decoding releases the GIL
        list(pool.map(lambda r: _write_thumbnail(locations[r], thumbnail_path(run, r)), todo))
    return np.array([r for r in rows.tolist() if ownership.is_ours(thumbnail_path(run, r))], dtype=np.int64)


def with_readable_image(table: pd.DataFrame) -> np.ndarray:
    """Per row: it has an image that ingest could read."""
    usable = table["location"].fillna("").astype(str).to_numpy() != ""
    if "error" in table.columns:
        usable &= (table["error"] == "").to_numpy()
    return usable


def prepare_cache(run: RunFolder, table: pd.DataFrame) -> None:
    """The thumbnail folder, emptied of what vehiclust wrote there for another collection (its
    row numbers moved) or by another version, and marked as made from ``table``."""
    folder = THUMBNAILS.path(run)
    key = collection_key(table)
    manifest = folder / "manifest.json"
    if folder.exists() and (not manifest.exists() or _manifest_key(manifest) != key):
        ownership.remove_owned(folder, _named_like_ours)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(manifest, {"collection": key, "side": THUMB_SIDE})


def _named_like_ours(path: Path) -> bool:
    """thumbs/<row // 1000>/<row>.jpg, a sheet thumbs/map/<block>.jpg or thumbs/manifest.json:
    for a run folder without a manifest of its own (see ownership.remove_owned)."""
    if path.name == "manifest.json" and path.parent.name == THUMBS_DIR:
        return True
    if path.parent.name == SHEETS_FOLDER and path.parent.parent.name == THUMBS_DIR:
        return path.suffix == ".jpg" and path.stem.isdigit()
    row = path.stem
    return (path.suffix == ".jpg" and row.isdigit() and path.parent.name == str(int(row) // 1000)
            and path.parent.parent.name == THUMBS_DIR)


def _manifest_key(path: Path) -> str | None:
    if not ownership.is_plain_file(path):  # a link in its place: the cache is stale, the link not read
        return None
    try:
        return read_json(path).get("collection")
    except (ValueError, OSError, AttributeError):  # a damaged manifest: the cache is stale
        return None


def make_thumbnail(location: str, side: int = THUMB_SIDE) -> Image.Image | None:
    """The image reduced to a longer side of ``side`` pixels, its aspect ratio kept (never
    enlarged); None when it cannot be read."""
    try:
        return decode_rgb(read_bytes(location), None, max_side=side)
    except (UnreadableImage, OSError):
        return None


def _write_thumbnail(location: str, path: Path) -> None:
    image = make_thumbnail(location)
    if image is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=QUALITY)


def cached_uri(run: RunFolder, row: int, has_image: bool) -> str:
    """The cached thumbnail of ``row`` as a data URI, or a placeholder that says why not. Only
    a thumbnail vehiclust wrote is embedded: a file (or a link) left in --out is not."""
    path = thumbnail_path(run, row)
    if ownership.is_ours(path):
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
