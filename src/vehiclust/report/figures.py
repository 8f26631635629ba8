"""Static matplotlib figures shared by the report stage and the notebook."""

from __future__ import annotations

import numpy as np


MONTAGE_GAP = 4  # pixels between the tiles of a montage


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    import sys

    return "ipykernel" in sys.modules


def plot_map(coords: np.ndarray, categories, title: str = "", max_points: int = 200_000, seed: int = 0,
             ax=None):
    """Scatter of a 2D map coloured by ``categories`` (cluster labels or any per-row values);
    at most ``max_points`` random points are drawn. Returns the figure."""
    plt = _pyplot()
    categories = np.asarray(categories).astype(str)
    shown = np.flatnonzero(np.isfinite(coords).all(1))
    if len(shown) > max_points:
        shown = np.random.default_rng(seed).choice(shown, max_points, replace=False)
    if ax is None:
        figure, ax = plt.subplots(figsize=(7, 6))
    else:
        figure = ax.figure
    values, counts = np.unique(categories[shown], return_counts=True)
    size = max(0.5, min(8.0, 4000 / max(len(shown), 1)))
    for value in values[np.argsort(-counts)][:20]:
        points = shown[categories[shown] == value]
        ax.scatter(coords[points, 0], coords[points, 1], s=size, label=value, alpha=0.7, linewidths=0)
    ax.set_title(title, fontsize=10, parse_math=False)  # input strings: a '$' is a '$', not TeX
    ax.set_xticks([]), ax.set_yticks([])
    legend = ax.legend(markerscale=max(1.0, 6 / size), fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5),
                       frameon=False)
    for text in legend.get_texts():
        text.set_parse_math(False)
    figure.tight_layout()
    return figure


def save_figure(figure, path) -> None:
    from vehiclust.runfolder import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    _pyplot().close(figure)


def plot_montage(images: list, captions: list[str], columns: int = 10, title: str = "", tile: int = 112):
    """A grid of PIL images (None shows as an empty grey tile), each fitted into a ``tile``-pixel
    square. The tiles are pasted into one picture drawn by one ``imshow``: a subplot per image
    cost three times as much to lay out and draw (0.48 against 0.16 s per ten-image montage)."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    step = tile + MONTAGE_GAP
    canvas = np.full((rows * step, columns * step, 3), 255, np.uint8)
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        pixels = _tile_pixels(image, tile)
        height, width = pixels.shape[:2]
        top, left = row * step + (tile - height) // 2, column * step + (tile - width) // 2
        canvas[top:top + height, left:left + width] = pixels
    figure, ax = plt.subplots(figsize=(1.3 * columns, 1.45 * rows + 0.3))
    ax.imshow(canvas)
    ax.axis("off")
    for i, caption in enumerate(captions[:len(images)]):
        row, column = divmod(i, columns)
        ax.text(column * step + tile / 2, row * step - 2, str(caption)[-18:], fontsize=6, ha="center",
                va="bottom", parse_math=False)
    if title:
        figure.suptitle(title, fontsize=10, parse_math=False)
    figure.tight_layout()
    return figure


def _tile_pixels(image, tile: int) -> np.ndarray:
    """RGB pixels of ``image`` shrunk to fit a ``tile`` square; a grey tile for None."""
    if image is None:
        return np.full((tile, tile, 3), 220, np.uint8)
    image = image.convert("RGB")
    if max(image.size) > tile:
        image = image.copy()
        image.thumbnail((tile, tile))
    return np.asarray(image)
