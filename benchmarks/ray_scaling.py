"""The same extraction with the local executor and with Ray at 1 and 2 workers on this machine.

Builds N demo images once, then describes them into a fresh run folder per configuration, each
configuration in its own Python process (clean peak memory): ``local`` (the in-process
pipelined loop), ``ray`` with 1 actor and with 2 actors on a local Ray instance that starts and
stops with the run. Printed per configuration: images/s over the describe call (Ray's start
included) and over the shards alone (first shard submitted to last stored), the median seconds
of work per shard, the overhead per shard (round trip seen by the driver minus the worker's own
seconds), and the peak resident memory of the driver and of each worker process.

Run::

    .venv/bin/python benchmarks/ray_scaling.py                         # 512 images, efficientnet_lite0
    .venv/bin/python benchmarks/ray_scaling.py --images 2000 --descriptors color_hist

On a shared machine the timings are noisy; on two cores, 2 Ray workers each get one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {"local": ("local", None), "ray-1": ("ray", 1), "ray-2": ("ray", 2)}


def one(images: Path, out: Path, kind: str, workers: int | None, descriptors: list[str], chunk_rows: int) -> dict:
    from vehiclust.collection import ingest
    from vehiclust.describe import DescribeSettings, describe
    from vehiclust.executor import ExecutorSettings
    from vehiclust.executor.base import peak_rss_mb
    from vehiclust.runfolder import RunFolder

    run = RunFolder(out)
    ingest(images, run)
    n = len(run.load_collection())
    # one model thread per worker: two Ray workers on two cores must not each take both
    settings = DescribeSettings(chunk_rows=chunk_rows, device="cpu", model_threads=1 if kind == "ray" else None,
                                executor=ExecutorSettings(kind, workers=workers))
    started, started_wall = time.perf_counter(), time.time()
    describe(run, descriptors, settings)
    seconds = time.perf_counter() - started
    meta = run.descriptor_meta(descriptors[0])
    return {"config": kind if workers is None else f"{kind}-{workers}", "images": n, "seconds": seconds,
            "shard_seconds": [s[2] for s in meta["shard_seconds"]], "stored_at": [s[3] for s in meta["shard_seconds"]],
            "workers": meta["workers"], "chunk_rows": chunk_rows,
            "driver_peak_rss_mb": peak_rss_mb(), "overhead": meta.get("shard_overhead_seconds") or 0.0,
            # the fixed cost (Ray's start, the model loads) plus one shard's work
            "first_stored_after": meta["first_stored_at"] - started_wall}


def run_config(name: str, images: Path, work: Path, args) -> dict:
    kind, workers = CONFIGS[name]
    command = [sys.executable, __file__, "--one", kind, "--workers", str(workers or 0), "--images-dir", str(images),
               "--out", str(work / f"run-{name}"), "--descriptors", ",".join(args.descriptors),
               "--chunk-rows", str(args.chunk_rows)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(result: dict) -> str:
    shards = result["shard_seconds"]
    work = statistics.median(shards)
    workers = result["workers"]
    rss = ", ".join(f"{w['peak_rss_mb']:.0f}" for w in workers)
    # steady state: the rows stored after the first shard, over the time from the first store to the last
    span = max(result["stored_at"]) - min(result["stored_at"])
    steady = (len(shards) - 1) * result["chunk_rows"] / span if span > 0 else float("nan")
    fixed = result["first_stored_after"] - work  # from the call to the first stored shard, less its work
    return (f"{result['config']:>6}: {result['images'] / result['seconds']:7.1f} images/s end to end, "
            f"{steady:7.1f} in steady state, fixed cost {fixed:.1f} s "
            f"({result['seconds']:.1f} s, {len(shards)} shards), median {work:.3f} s per shard, "
            f"overhead per shard {result['overhead']:.3f} s; peak RSS driver "
            f"{result['driver_peak_rss_mb']:.0f} MB, workers [{rss}] MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--descriptors", type=lambda s: s.split(","), default=["efficientnet_lite0"])
    parser.add_argument("--chunk-rows", type=int, default=64)
    parser.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--images-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.images_dir, args.out, args.one, args.workers or None, args.descriptors,
                             args.chunk_rows)))
        return
    from vehiclust.demo.build import build_demo

    with tempfile.TemporaryDirectory(prefix="vr-bench-") as tmp:
        os.environ["RAY_TMPDIR"] = tmp  # Ray's session files go with the benchmark's folder
        images = Path(build_demo(Path(tmp) / "demo", args.images, seed=0).root)
        print(f"{args.images} demo images, {', '.join(args.descriptors)}, {args.chunk_rows} rows per shard, "
              f"{os.cpu_count()} cores")
        for name in args.configs:
            print(report(run_config(name, images, Path(tmp), args)), flush=True)


if __name__ == "__main__":
    main()
