"""A case bundle of the real shapes at full scale, for timing a whole `vehiclust run` on descriptors only.

Writes ``OUT/images_paths.csv`` (VeRi-Wild paths, 8 images per vehicle) and ``OUT/descriptors/``
with the four pickles of the case (efficientnet-b7 2560, osnet 512, vdc_color 128, vdc_type 512
columns, float32): 12 planted groups of vehicles in a 48-d latent space (a per-vehicle offset and
per-image noise), mapped to each width by a random ReLU layer, as CNN features are non-negative.
About 5.8 GB at 416,314 rows; written chunk by chunk. Run::

    .venv/bin/python benchmarks/case_bundle.py --out /tmp/case416 [--rows 416314]
    /usr/bin/time -v .venv/bin/vehiclust run /tmp/case416 --out /tmp/case416_run
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

SHAPES = {"efficientnet-b7": 2560, "osnet": 512, "vdc_color": 128, "vdc_type": 512}
GROUPS, PER_VEHICLE, LATENT, CHUNK = 12, 8, 48, 50_000


def write_bundle(out: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vehicle = np.arange(rows) // PER_VEHICLE
    n_vehicles = int(vehicle.max()) + 1
    group = rng.integers(0, GROUPS, n_vehicles)[vehicle]
    centres = rng.normal(size=(GROUPS, LATENT)) * 1.5
    offsets = rng.normal(size=(n_vehicles, LATENT)) * 0.5
    (out / "descriptors").mkdir(parents=True, exist_ok=True)
    paths = [f"veriwild\\1\\{v + 1:05d}\\{i + 1:06d}.jpg" for i, v in enumerate(vehicle)]
    pd.DataFrame({"paths": paths}).to_csv(out / "images_paths.csv", index=False)
    for name, width in SHAPES.items():
        weights = rng.normal(size=(LATENT, width)) / np.sqrt(LATENT)
        matrix = np.empty((rows, width), np.float32)
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            latent = centres[group[start:stop]] + offsets[vehicle[start:stop]] + rng.normal(size=(stop - start, LATENT))
            matrix[start:stop] = np.maximum(latent @ weights, 0)
        with open(out / "descriptors" / f"{name}.pickle", "wb") as fh:
            pickle.dump(matrix, fh, protocol=4)
        print(f"{name}: {rows:,} x {width}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=416_314)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_bundle(args.out, args.rows, args.seed)


if __name__ == "__main__":
    main()
