"""What numba's compile cache saves: the first UMAP fit and the first HDBSCAN of a process,
timed in fresh processes against an empty user cache (compiles, fills it) and again (reads it).

Run: ``.venv/bin/python benchmarks/jit_cache.py [--rows 2000]``; ``--no-cache`` times a process
that does not call ``cache_compiled_code`` (how runs were before it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import sys, time, warnings
warnings.simplefilter("ignore")
if sys.argv[1] == "cache":
    from vehiclust.thirdparty import configure_process
    configure_process()
import numpy as np
from sklearn.datasets import make_blobs
from vehiclust.cluster.algorithms import HDBSCANClusterer
from vehiclust.cluster.preprocess import UMAPEmbed
X = make_blobs(int(sys.argv[2]), 32, centers=8, random_state=0)[0].astype(np.float32)
started = time.perf_counter()
Y = UMAPEmbed().fit(X).embedding_
umap_s = time.perf_counter() - started
started = time.perf_counter()
HDBSCANClusterer(min_cluster_size=20).fit(Y)
print(f"first UMAP fit {umap_s:6.1f} s, first HDBSCAN {time.perf_counter() - started:6.1f} s")
"""


def child(mode: str, rows: int, cache: str) -> str:
    env = {**os.environ, "VEHICLUST_CACHE": cache, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NUMBA_CACHE_DIR", None)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(rows)], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    return f"{out}  (process {time.perf_counter() - started:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as cache:
        print("without the cache:          ", child("plain", args.rows, cache))
        print("with it, empty (compiles):  ", child("cache", args.rows, cache))
        print("with it, filled (reads):    ", child("cache", args.rows, cache))


if __name__ == "__main__":
    main()
