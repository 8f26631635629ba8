"""Time and peak memory of the default cluster sweep at the case's scale.

Generates descriptors of the case's shapes (416,314 rows; 512 and 2560 columns by default),
stored as float16 .npy files that the stage memory-maps, plus a collection with ``type``,
``color`` and ``vehicle_id`` label columns, then runs ``cluster`` once per descriptor with the
default settings, each in a fresh process so that ``ru_maxrss`` (peak resident memory,
memory-mapped pages of the descriptor included) is that descriptor's alone.

The data: 12 planted groups ("type x colour") of vehicles, 8 images per vehicle, in a 48-d
latent space, mapped to D columns by a random ReLU layer, as CNN features are non-negative.

Run::

    .venv/bin/python benchmarks/cluster_scale.py                 # 416,314 rows, 512 and 2560 cols
    .venv/bin/python benchmarks/cluster_scale.py --rows 100000 --cols 512

Timings on a shared machine are noisy: other processes take CPU time from the sweep.
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

GROUPS = 12
PER_VEHICLE = 8
LATENT = 48


def make_collection(run, rows: int, seed: int) -> np.ndarray:
    """Collection with labels; returns each row's group."""
    from vehiclust.collection import collection_table

    rng = np.random.default_rng(seed)
    vehicles = rows // PER_VEHICLE + 1
    vehicle_group = rng.choice(GROUPS, size=vehicles, p=_group_shares(rng))
    vehicle = np.repeat(np.arange(vehicles), PER_VEHICLE)[:rows]
    group = vehicle_group[vehicle]
    collection_table([f"v/{v:06d}/{i:07d}.jpg" for i, v in enumerate(vehicle)], width=224, height=224,
                     vehicle_id=[f"{v:06d}" for v in vehicle], type=(group // 3).astype(str),
                     color=(group % 3).astype(str)).to_parquet(run.collection_path)
    return group


def _group_shares(rng) -> np.ndarray:
    shares = rng.dirichlet(np.full(GROUPS, 3.0))
    return shares / shares.sum()


def make_descriptor(run, name: str, group: np.ndarray, cols: int, seed: int, chunk: int = 32768) -> None:
    """Float16 matrix written chunk by chunk (never whole in memory)."""
    from vehiclust.runfolder import atomic_path, write_json

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(GROUPS, LATENT)) * 1.6
    vehicle_offsets = rng.normal(size=(len(group) // PER_VEHICLE + 1, LATENT)) * 0.5
    weights = rng.normal(size=(LATENT, cols)).astype(np.float32) / np.sqrt(LATENT)
    path = run.descriptor_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(group), cols))
        for start in range(0, len(group), chunk):
            g = group[start:start + chunk]
            v = np.arange(start, start + len(g)) // PER_VEHICLE
            latent = centres[g] + vehicle_offsets[v] + rng.normal(size=(len(g), LATENT))
            out[start:start + len(g)] = np.maximum(latent.astype(np.float32) @ weights, 0)
        out.flush()
        del out
    write_json(run.descriptor_meta_path(name), {"name": name, "kind": "imported", "invalid": {},
                                               "fingerprint": f"{name}-{seed}"})


def sweep_one(folder: str, name: str) -> None:
    """Child process: the default sweep on one descriptor; prints one JSON line."""
    from vehiclust.cluster import ClusterSettings, cluster
    from vehiclust.runfolder import RunFolder

    started = time.perf_counter()
    runs = cluster(RunFolder(folder), [name], ClusterSettings())
    seconds = time.perf_counter() - started
    chosen = runs[runs["selected"]].iloc[0]
    phases = runs.groupby(["preprocessing", "algorithm"], sort=False)["seconds"].sum().round(1)
    print(json.dumps({
        "descriptor": name, "seconds": round(seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "runs": len(runs), "selected": f"{chosen['algorithm']} on {chosen['preprocessing']} ({chosen['params']})",
        "n_clusters": int(chosen["n_clusters"]), "ari_type": chosen.get("ari_type"),
        "ari_color": chosen.get("ari_color"), "identity_consistency": chosen.get("identity_consistency"),
        "preprocess_seconds": runs.groupby("preprocessing", sort=False)["preprocess_seconds"].first().to_dict(),
        "family_seconds": {f"{a} on {p}": s for (p, a), s in phases.items()},
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=416_314)
    parser.add_argument("--cols", default="512,2560")
    parser.add_argument("--folder", help="reuse or keep the run folder here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sweep_one(*args.child)
        return
    from vehiclust.runfolder import RunFolder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        run = RunFolder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        group = make_collection(run, args.rows, args.seed)
        names = []
        for cols in (int(c) for c in args.cols.split(",")):
            name = f"gen{cols}"
            if not run.descriptor_path(name).exists():
                make_descriptor(run, name, group, cols, args.seed + cols)
            names.append(name)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared: timings are noisy); "
              f"data generated in {time.perf_counter() - started:.0f}s: {args.rows:,} rows, "
              f"columns {args.cols}, float16", flush=True)
        for name in names:
            (folder / "stages" / "cluster.json").unlink(missing_ok=True)
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), name],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:])
                raise SystemExit(out.returncode)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(result, indent=1), flush=True)


if __name__ == "__main__":
    main()
