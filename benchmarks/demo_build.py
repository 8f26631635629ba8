"""Time the demo collection build: `python benchmarks/demo_build.py [--sizes small,default] [--out DIR]`.

Builds into a fresh temporary folder (so nothing is skipped), after making sure the source
photographs are cached (their first download is not timed), and prints wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from vehiclust.demo import build_demo
from vehiclust.demo.sources import load_sources


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="small,default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the builds here (default: a temp dir)")
    args = ap.parse_args()

    t = time.perf_counter()
    src = load_sources()
    print(f"sources: {src.kind} {src.counts()} (ready in {time.perf_counter() - t:.1f} s)")
    base = args.out or Path(tempfile.mkdtemp(prefix="vehiclust-demo-bench-"))
    try:
        for size in args.sizes.split(","):
            size_arg: int | str = int(size) if size.isdigit() else size
            out = base / f"demo-{size}"
            shutil.rmtree(out, ignore_errors=True)
            c0, t0 = _cpu(), time.perf_counter()
            coll = build_demo(out, size_arg, seed=args.seed)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            print(f"{size:>8}: {coll.n_images} images, {coll.n_vehicles} vehicles, {coll.n_cameras} cameras, "
                  f"{coll.n_outliers} outliers: {wall:.1f} s wall, {cpu:.1f} s CPU "
                  f"({1000 * wall / coll.n_images:.1f} ms/image wall, {os.cpu_count()} CPUs)")
    finally:
        if args.out is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
