"""Write a collection and its run's descriptors as the assignment's case bundle.

The bundle is what users of the original assignment have (see shared case-format): an
``images_paths.csv`` with relative Windows paths ``veriwild\\<part>\\<vehicle id>\\<image>.jpg``,
one pickled 2-D numpy array per descriptor in ``descriptors/``, and the images unpacked under
``raw_data/veriwild/``. Writing the demo this way exercises the case-bundle path on the same
images the demo's image-folder run used.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from vehiclust.runfolder import RunFolder, atomic_path, write_csv

PART = "1"  # VeRi-Wild spreads vehicles over parts 1-10; one part is enough here


def bundle_path(relative: str) -> str:
    parts = PurePosixPath(relative).parts
    return "\\".join(("veriwild", PART, *parts[-2:]))


def write_case_bundle(run: RunFolder, images_root: Path, out: Path, descriptors: list[str],
                      link_images: bool = True) -> Path:
    """``out`` becomes a case bundle of the run's collection (rows in collection order)."""
    out = Path(out)
    table = run.load_collection()
    paths = [bundle_path(p) for p in table["path"]]
    write_csv(out / "images_paths.csv", pd.DataFrame({"paths": paths}))
    for name in descriptors:
        matrix = np.asarray(run.load_descriptor(name), dtype=np.float32)
        with atomic_path(out / "descriptors" / f"{name}.pickle") as tmp, open(tmp, "wb") as fh:
            pickle.dump(matrix, fh, protocol=pickle.HIGHEST_PROTOCOL)
    for relative, posix in zip(table["path"], paths):
        target = out / "raw_data" / Path(*posix.split("\\"))
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = (Path(images_root) / relative).resolve()
        if not (link_images and _hard_linked(source, target)):
            shutil.copy2(source, target)
    return out


def _hard_linked(source: Path, target: Path) -> bool:
    """A hard link, not a symlink: vehiclust refuses links that leave the input, so the
    bundle's images must be files of the bundle."""
    try:
        os.link(source, target)
    except OSError:  # another file system: the caller copies
        return False
    return True
