"""The map's hover thumbnails, packed as sheets of tiles: ``DIR/thumbs/map/<row // 256>.jpg``.

A map shows up to ``max_thumbnails`` points; one file per point made the report's thumbnails
cost more in file-system calls (a temporary file, a manifest line and a rename each) than in
image work, and left 100,000 files to copy with the page. A sheet holds the tiles of the map
points among ``SHEET_ROWS`` consecutive collection rows, in row order, ``SHEET_COLUMNS`` to a
line, each tile centred in a cell of ``CELL`` pixels on the page's grey. The page shows one
tile by the sheet's background position; the sheet's own index (which rows, in which cells)
rides in the JPEG's comment, so the pixels and the index are replaced together by one rename
and can never disagree.

The page and the map thumbnails of the notebook (``RunResults.thumbnail``) read the sheets; the
montages' and galleries' pictures stay single files (``thumbnails.py``): they are few, and the
notebook reads them while the sheets are being made.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vehiclust import ownership
from vehiclust.report.thumbnails import (QUALITY, SHEETS_FOLDER, THUMB_SIDE, THUMBS_DIR, make_thumbnail, prepare_cache,
                                         with_readable_image)
from vehiclust.runfolder import RunFolder, atomic_path

SHEETS_DIR = f"{THUMBS_DIR}/{SHEETS_FOLDER}"
# 256 rows of 112-px tiles, 16 to a line: a full sheet is 1792 x 1792 px (13 MB decoded, a few
# hundredths of a second), light enough for a browser that loads one per block of points hovered
SHEET_ROWS = 256
SHEET_COLUMNS = 16
CELL = THUMB_SIDE
BACKGROUND = (238, 238, 238)  # #eee, the page's background of a thumbnail


@dataclass(frozen=True)
class SheetIndex:
    """What one sheet holds: ``rows[i]`` is in cell ``i``. A wanted row whose image could not
    be read is not among them, so its sheet is made again at the next report (as a single
    thumbnail file was tried again): a read that failed for a moment heals."""

    rows: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]  # each tile's width and height

    def cell_box(self, slot: int) -> tuple[int, int, int, int]:
        """The tile's box (left, top, right, bottom) in the sheet."""
        width, height = self.sizes[slot]
        left = (slot % SHEET_COLUMNS) * CELL + (CELL - width) // 2
        top = (slot // SHEET_COLUMNS) * CELL + (CELL - height) // 2
        return left, top, left + width, top + height

    def comment(self) -> bytes:
        return json.dumps({"rows": self.rows, "sizes": self.sizes}, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, comment: bytes) -> SheetIndex:
        data = json.loads(comment)
        rows, sizes = data["rows"], data["sizes"]
        if len(rows) != len(sizes) or len(rows) > SHEET_ROWS:
            raise ValueError("rows and sizes disagree")
        return cls(tuple(int(r) for r in rows), tuple((int(w), int(h)) for w, h in sizes))


def sheet_relpath(block: int) -> str:
    return f"{SHEETS_DIR}/{block}.jpg"


def sheet_path(run: RunFolder, block: int) -> Path:
    return run.root / sheet_relpath(block)


def read_index(path: Path) -> SheetIndex | None:
    """The index of a sheet vehiclust wrote; None for anything else (missing, a link, a file
    of the user's, damaged): such a sheet is made again, and a file of the user's stays."""
    with _open_sheet(path) as opened:
        return opened[1] if opened else None


@contextlib.contextmanager
def _open_sheet(path: Path) -> Iterator[tuple[Image.Image, SheetIndex] | None]:
    """The sheet's image (not decoded yet) and its index, from one open of the file: a sheet
    renamed into place meanwhile cannot pair its pixels with another sheet's index."""
    if not ownership.is_ours(path):
        yield None
        return
    try:
        image = Image.open(path)
    except (OSError, Image.DecompressionBombError):
        yield None
        return
    with image:
        try:
            index = SheetIndex.parse(image.info["comment"])
        except (KeyError, ValueError, TypeError):
            index = None
        yield (image, index) if index is not None else None


def ensure_map_tiles(run: RunFolder, table: pd.DataFrame, rows, threads: int = 4) -> np.ndarray:
    """Make the sheets of ``rows`` that are missing or hold other rows; returns, per row of the
    table, its cell in its sheet (``row // SHEET_ROWS``), or -1 where it has no tile."""
    prepare_cache(run, table)
    locations = table["location"].to_numpy()
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    rows = rows[with_readable_image(table)[rows]]
    blocks = np.unique(rows // SHEET_ROWS)
    bounds = np.searchsorted(rows, np.append(blocks, blocks[-1:] + 1) * SHEET_ROWS)
    wanted = {int(b): tuple(rows[start:stop].tolist()) for b, start, stop in zip(blocks, bounds[:-1], bounds[1:])}
    _remove_unwanted_sheets(run, set(wanted))
    indexes = {b: read_index(sheet_path(run, b)) for b in wanted}
    stale = [b for b in wanted if indexes[b] is None or indexes[b].rows != wanted[b]]
    if stale:
        sheet_path(run, stale[0]).parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(threads) as pool:  # decoding and encoding release the GIL
            made = pool.map(lambda b: _make_sheet(sheet_path(run, b), [locations[r] for r in wanted[b]], wanted[b]),
                            stale)
            indexes.update(zip(stale, made))
    slots = np.full(len(table), -1, dtype=np.int32)
    for index in indexes.values():
        slots[list(index.rows)] = np.arange(len(index.rows), dtype=np.int32)
    return slots


def _make_sheet(path: Path, locations: list[str], rows: tuple[int, ...]) -> SheetIndex:
    tiles = [make_thumbnail(location) for location in locations]
    kept = [(row, tile) for row, tile in zip(rows, tiles) if tile is not None]
    index = SheetIndex(tuple(row for row, _ in kept), tuple(tile.size for _, tile in kept))
    lines = max(1, -(-len(kept) // SHEET_COLUMNS))
    sheet = Image.new("RGB", (SHEET_COLUMNS * CELL, lines * CELL), BACKGROUND)
    for slot, (_, tile) in enumerate(kept):
        sheet.paste(tile, index.cell_box(slot)[:2])
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="JPEG", quality=QUALITY, comment=index.comment())
    return index


def _remove_unwanted_sheets(run: RunFolder, blocks: set[int]) -> None:
    """Sheets of blocks without a wanted row now (fewer thumbnails, another sample): the folder
    holds the current map's sheets only."""
    folder = run.root / SHEETS_DIR
    if folder.is_dir() and not folder.is_symlink():
        for path in folder.glob("*.jpg"):
            if path.stem.isdigit() and int(path.stem) not in blocks:
                ownership.remove_file(path)


def map_tile(run: RunFolder, row: int) -> Image.Image | None:
    """The hover thumbnail of ``row`` cut from its sheet (None when it has none)."""
    with _open_sheet(sheet_path(run, row // SHEET_ROWS)) as opened:
        if opened is None or row not in opened[1].rows:
            return None
        sheet, index = opened
        try:
            return sheet.crop(index.cell_box(index.rows.index(row)))
        except (OSError, Image.DecompressionBombError):  # a damaged sheet: no tile
            return None
