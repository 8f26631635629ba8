"""Time and peak memory of the compare stage (fusion + comparison) at the case's shapes.

Generates the case bundle's four descriptors (efficientnet-b7 2560, osnet 512, vdc_color 128,
vdc_type 512 columns; 416,314 rows by default) as float16 memory-mappable .npy files, with a
collection that has vehicle ids (8 images each), type and colour. Each block sees a different
part of a planted type x colour structure (as the case's models do). Then, each step in a fresh
process so that ``ru_maxrss`` is that step's alone:

1. ``cluster`` on the four descriptors with a small sweep (k-means on l2+pca, k in 6, 12) to
   have a selected clustering per descriptor; not what is measured here (cluster_scale.py
   measures the sweep);
2. ``compare`` with ``--mix all`` and ``--mix type+color``: fusion (weights measured on held-out
   vehicles, streamed into the mixture .npy), the same small sweep of each mixture, consensus,
   common-space metrics, agreement and attribute tables. Peak RSS and seconds are printed,
   with the seconds of the mixture sweeps apart.

Run::

    .venv/bin/python benchmarks/fusion_scale.py                  # 416,314 rows
    .venv/bin/python benchmarks/fusion_scale.py --rows 100000

The limit to stay under is the clustering issue's: 8 GB peak for a whole sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CASE_BLOCKS = {"efficientnet-b7": 2560, "osnet": 512, "vdc_color": 128, "vdc_type": 512}
PER_VEHICLE = 8
LATENT = 32
SWEEP = {"algorithms": ("kmeans",), "preprocessing": ("l2+pca",), "k_values": (6, 12), "k_min": 6, "k_max": 12}


def make_collection(run, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from vehiclust.collection import collection_table

    rng = np.random.default_rng(seed)
    vehicles = rows // PER_VEHICLE + 1
    types, colours = rng.integers(0, 5, vehicles), rng.integers(0, 4, vehicles)
    vehicle = np.repeat(np.arange(vehicles), PER_VEHICLE)[:rows]
    table = collection_table([f"v/{v:06d}/{i:07d}.jpg" for i, v in enumerate(vehicle)],
                             vehicle_id=[f"{v:06d}" for v in vehicle], type=types[vehicle].astype(str),
                             color=colours[vehicle].astype(str))
    table["width"], table["height"] = rng.integers(80, 400, rows), rng.integers(80, 300, rows)
    table.to_parquet(run.collection_path)
    return types[vehicle], colours[vehicle]


def make_block(run, name: str, cols: int, types: np.ndarray, colours: np.ndarray, mix: tuple[float, float],
               seed: int, chunk: int = 32768) -> None:
    """float16, written chunk by chunk; ``mix`` = how strongly the block sees type and colour."""
    from vehiclust.runfolder import atomic_path, write_json

    rng = np.random.default_rng(seed)
    type_centres, colour_centres = rng.normal(size=(5, LATENT)) * 2, rng.normal(size=(4, LATENT)) * 2
    weights = rng.normal(size=(LATENT, cols)).astype(np.float32) / np.sqrt(LATENT)
    path = run.descriptor_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(types), cols))
        for start in range(0, len(types), chunk):
            t, c = types[start:start + chunk], colours[start:start + chunk]
            latent = mix[0] * type_centres[t] + mix[1] * colour_centres[c] + rng.normal(size=(len(t), LATENT))
            out[start:start + len(t)] = np.maximum(latent.astype(np.float32) @ weights, 0)
        out.flush()
        del out
    write_json(run.descriptor_meta_path(name), {"name": name, "kind": "imported", "invalid": {},
                                               "fingerprint": f"{name}-{seed}"})


def child(folder: str, step: str) -> None:
    from vehiclust.cluster import ClusterSettings, cluster
    from vehiclust.compare import CompareSettings, compare
    from vehiclust.runfolder import RunFolder

    run, settings, names = RunFolder(folder), ClusterSettings(**SWEEP), list(CASE_BLOCKS)
    started = time.perf_counter()
    if step == "cluster":
        cluster(run, names, settings)
        out = {}
    else:
        table = compare(run, names, settings, CompareSettings(mixes=("all", "type+color")))
        runs = pd.read_csv(run.path("runs.csv"))
        mix_sweep = float(runs.loc[runs["descriptor"].str.startswith("mix_"), "seconds"].sum())
        out = {"phase_seconds": json.loads(run.path("compare.json").read_text())["seconds"],
               "mixture_sweep_seconds": round(mix_sweep, 1),
               "mixture_preprocess_seconds": runs.loc[runs["descriptor"].str.startswith("mix_")]
               .groupby("descriptor")["preprocess_seconds"].first().round(1).to_dict(),
               "comparison": table[["name", "n_clusters", "common_score", "ari_type+color", "best"]]
               .round(3).to_dict(orient="records"),
               "weights": {n: run.descriptor_meta(n)["weights"] for n in run.descriptor_names() if n.startswith("mix_")}}
    print(json.dumps({"step": step, "seconds": round(time.perf_counter() - started, 1),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), **out}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=416_314)
    parser.add_argument("--folder", help="reuse or keep the run folder here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "STEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from vehiclust.runfolder import RunFolder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        run = RunFolder(folder)
        started = time.perf_counter()
        types, colours = make_collection(run, args.rows, args.seed)
        sees = {"efficientnet-b7": (0.6, 0.6), "osnet": (0.4, 1.0), "vdc_color": (0.1, 1.5), "vdc_type": (1.5, 0.1)}
        for i, (name, cols) in enumerate(CASE_BLOCKS.items()):
            if not run.descriptor_path(name).exists():
                make_block(run, name, cols, types, colours, sees[name], args.seed + i)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} "
              f"(shared: timings are noisy); data generated in {time.perf_counter() - started:.0f}s: "
              f"{args.rows:,} rows, blocks {CASE_BLOCKS}, float16", flush=True)
        for step in ("cluster", "compare"):
            # the cluster step only prepares (it skips itself when the folder already has it);
            # the compare step always runs from scratch, mixtures included
            (folder / "stages" / "compare.json").unlink(missing_ok=True)
            for mixture in folder.glob("descriptors/mix_*"):
                mixture.unlink()
            result = subprocess.run([sys.executable, __file__, "--child", str(folder), step], capture_output=True,
                                    text=True)
            if result.returncode != 0:
                print(result.stderr[-3000:])
                raise SystemExit(result.returncode)
            print(json.dumps(json.loads(result.stdout.strip().splitlines()[-1]), indent=1), flush=True)


if __name__ == "__main__":
    main()
