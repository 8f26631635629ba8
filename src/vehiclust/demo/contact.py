"""Contact sheets: a quick look at a sample of a collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_contact_sheet(images: list[Path], path: Path, n: int = 64, seed: int = 0, cell: int = 160) -> Path:
    """Tile ``n`` images drawn at random (reproducibly, by ``seed``) into one JPEG at ``path``.

    The grid is square (8x8 for 64); each image is scaled to fit a ``cell`` x ``cell`` square,
    centred on a dark grey ground, never enlarged more than twofold.
    """
    images = [Path(p) for p in images]
    path = Path(path)
    if not images:
        raise ValueError("no images to tile")
    rng = np.random.default_rng(seed)
    k = min(n, len(images))
    pick = sorted(rng.choice(len(images), size=k, replace=False).tolist())
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    gap = 4
    sheet = Image.new("RGB", (cols * (cell + gap) + gap, rows * (cell + gap) + gap), (40, 40, 40))
    for t, i in enumerate(pick):
        with Image.open(images[i]) as im:
            im = im.convert("RGB")
            s = min(cell / im.width, cell / im.height, 2.0)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))),
                           Image.LANCZOS if s < 1 else Image.BICUBIC)
        r, c = divmod(t, cols)
        x = gap + c * (cell + gap) + (cell - im.width) // 2
        y = gap + r * (cell + gap) + (cell - im.height) // 2
        sheet.paste(im, (x, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="JPEG", quality=90)
    return path
