"""The data behind the report's interactive map, packed small enough for 400k points.

Plotly (inlined, so the page works offline) draws the points with WebGL (``scattergl``; 3D
with ``scatter3d`` on a sample). The page receives, base64-encoded:
- per descriptor: 2D coordinates quantised to uint16 (65,536 steps per axis, finer than any
  screen) for every displayed row, and 3D coordinates for a sample of them;
- per colouring (cluster of each descriptor, outlier reason, metadata, predicted type and
  colour): one small integer code per displayed row and the list of category names;
- each row's cell in its sheet of hover thumbnails, plus one (0: none); the hover view shows
  that cell of ``thumbs/map/<row // 256>.jpg`` from the folder beside the page when the pointer
  rests on a point (lazy: one request per sheet, see tilesheets.py).
Paths ride along only up to ``PATHS_MAX`` rows; above that the hover names the row number,
which is the row of clusters.csv.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vehiclust.report.tilesheets import CELL, SHEET_COLUMNS, SHEET_ROWS

MAX_POINTS_2D = 500_000
MAX_POINTS_3D = 50_000
MAX_CATEGORIES = 24  # more distinct values than this: the rarest are pooled as "other"
PATHS_MAX = 60_000


@dataclass(frozen=True)
class MapViewSettings:
    max_points_2d: int = MAX_POINTS_2D
    max_points_3d: int = MAX_POINTS_3D
    seed: int = 0


# Inside <script>, the HTML parser ends the element at "</script" and, after "<!--<script",
# at nothing short of a second "</script>": no "<" may reach it at all. "\u003c" is the same
# string to JSON.parse. U+2028/2029 end a line in older JavaScript.
SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(obj) -> str:
    """JSON that can sit inside a <script> element whatever strings it carries."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.translate(str.maketrans(SCRIPT_ESCAPES))


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def _b64_unless_identity(index: np.ndarray, n: int) -> str | None:
    """None stands for 0, 1, ..., n-1 (every point, in order): 1.7 MB less per view at 416k rows."""
    if len(index) == n and np.array_equal(index, np.arange(n)):
        return None
    return b64(index.astype(np.uint32))


def quantise(coords: np.ndarray) -> tuple[np.ndarray, list[float], list[float]]:
    """uint16 codes and the (low, high) per axis to undo them in the page."""
    low, high = np.nanmin(coords, axis=0), np.nanmax(coords, axis=0)
    span = np.where(high > low, high - low, 1.0)
    codes = np.round((coords - low) / span * 65535)
    return np.nan_to_num(codes).astype(np.uint16), low.tolist(), high.tolist()


def encode_categories(values: pd.Series) -> dict:
    """Integer codes (uint8 or uint16) and names; '' shows as 'none', rare values as 'other'."""
    values = values.fillna("").astype(str).replace("", "none")
    counts = values.value_counts()
    keep = list(counts.index[:MAX_CATEGORIES])
    if len(counts) > MAX_CATEGORIES:
        values = values.where(values.isin(keep), "other")
        keep.append("other")
    keep = sorted(keep, key=_natural)
    codes = pd.Categorical(values, categories=keep).codes
    dtype = np.uint8 if len(keep) < 256 else np.uint16
    return {"names": keep, "codes": b64(codes.astype(dtype)), "dtype": np.dtype(dtype).name}


def _natural(value: str):
    """Cluster numbers in numeric order, then words."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def display_rows(valid: np.ndarray, limit: int, seed: int) -> np.ndarray:
    rows = np.flatnonzero(valid)
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


def map_payload(maps: dict[str, dict[int, np.ndarray]], colourings: dict[str, pd.Series],
                tiles: np.ndarray, paths: pd.Series, best: str,
                settings: MapViewSettings = MapViewSettings()) -> dict:
    """Everything the page's map script reads. ``maps[descriptor][dims]`` are N x dims arrays;
    ``colourings`` are per-row Series over the whole collection; ``tiles`` is each row's cell
    in its sheet of hover thumbnails (-1: none)."""
    views, shown = {}, None
    for name, by_dims in maps.items():
        coords2 = by_dims[2]
        valid = np.isfinite(coords2).all(1)
        rows = display_rows(valid, settings.max_points_2d, settings.seed)
        shown = rows if shown is None else np.union1d(shown, rows)
        views[name] = {"rows": rows}
    shown = shown if shown is not None else np.zeros(0, np.int64)
    out_views = {}
    for name, view in views.items():
        index = np.searchsorted(shown, view["rows"]).astype(np.uint32)  # shown is sorted
        codes2, low2, high2 = quantise(maps[name][2][view["rows"]])
        rows3 = view["rows"][display_rows(np.ones(len(view["rows"]), bool), settings.max_points_3d, settings.seed)]
        codes3, low3, high3 = quantise(maps[name][3][rows3])
        index3 = np.searchsorted(shown, rows3).astype(np.uint32)
        out_views[name] = {"n": int(len(index)), "index": _b64_unless_identity(index, len(shown)), "xy": b64(codes2),
                           "low": low2, "high": high2, "n3": int(len(index3)),
                           "index3": _b64_unless_identity(index3, len(shown)), "xyz": b64(codes3),
                           "low3": low3, "high3": high3}
    return {
        "best": best,
        "n": int(len(shown)),
        "rows": _b64_unless_identity(shown.astype(np.uint32), len(shown)),
        "tile": b64((tiles[shown] + 1).astype(np.uint16)),
        "sheet": {"rows": SHEET_ROWS, "columns": SHEET_COLUMNS, "cell": CELL},
        "paths": paths.iloc[shown].astype(str).tolist() if len(shown) <= PATHS_MAX else None,
        "views": out_views,
        "colourings": {label: encode_categories(series.iloc[shown].reset_index(drop=True))
                       for label, series in colourings.items()},
    }
