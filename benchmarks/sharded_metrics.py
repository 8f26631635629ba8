"""Cost of computing CH and DB from per-cluster sums in blocks (the pass the executor shards)
against the in-memory path it replaced, side by side in one process, on the demo's data.

Builds the demo collection (5,000 images by default), describes its colour histograms, takes
the sweep's ``l2+pca`` space and k-means labellings of it for several k, then times per
labelling: ``in memory`` (``cluster_geometry`` + ``internal_metrics``: the centres and every
row's distance held at once), ``chunked`` (``clustering_metrics`` with the local executor:
sums added block by block) and, with ``--ray``, ``ray`` (the same sums as a sharded map on a
local Ray instance of 2 workers, the rows written once for them to memory-map). ``--tile``
stacks the space that many times (with a little noise) to see the cost at more rows.
``--sweep`` also times the whole cluster stage (k-means and Ward on 1,000-row fit samples, so
every run assigns and measures every row) with the local executor and with Ray.

Run::

    .venv/bin/python benchmarks/sharded_metrics.py
    .venv/bin/python benchmarks/sharded_metrics.py --tile 80 --ray

Timings on a shared machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def demo_run(images: int, work: Path):
    from vehiclust.collection import ingest
    from vehiclust.demo.build import build_demo
    from vehiclust.describe import DescribeSettings, describe
    from vehiclust.runfolder import RunFolder

    run = RunFolder(work / "run")
    ingest(Path(build_demo(work / "demo", images, seed=0).root), run)
    describe(run, ["color_hist"], DescribeSettings(device="cpu"))
    return run


def time_sweeps(run, work: Path) -> None:
    import shutil
    from dataclasses import replace

    from vehiclust.cluster import ClusterSettings, cluster
    from vehiclust.executor import ExecutorSettings
    from vehiclust.runfolder import RunFolder

    settings = ClusterSettings(algorithms=("kmeans", "ward"), preprocessing=("l2+pca",), fit_sample=1000,
                               quadratic_sample=1000, stability_repeats=1)
    seconds = {}
    for kind in ("local", "ray", "ray again"):  # the second ray sweep finds Ray started and its actors kept
        copy = RunFolder(work / f"sweep-{kind.replace(' ', '-')}")
        shutil.copytree(run.root, copy.root)
        started = time.perf_counter()
        runs = cluster(copy, ["color_hist"], replace(settings, executor=ExecutorSettings(kind.split()[0], workers=2,
                                                                                         scratch=str(work))))
        seconds[kind] = time.perf_counter() - started
    print(f"cluster stage, {len(runs)} runs: local {seconds['local']:.1f} s, ray {seconds['ray']:.1f} s "
          f"(Ray's start included), ray again {seconds['ray again']:.1f} s "
          f"(ratio to local {seconds['ray again'] / seconds['local']:.2f})")


def demo_space(run, tile: int) -> np.ndarray:
    from vehiclust.cluster.preprocess import build_spaces, valid_rows
    from vehiclust.cluster.settings import ClusterSettings

    matrix = run.load_descriptor("color_hist")
    X = build_spaces(matrix, valid_rows(matrix, run.invalid_rows("color_hist")), ("l2+pca",), ClusterSettings(),
                     lambda _: None)[0].X
    rng = np.random.default_rng(0)
    return np.concatenate([X + rng.normal(scale=1e-3, size=X.shape).astype(np.float32) for _ in range(tile)])


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    from sklearn.cluster import KMeans

    from vehiclust.cluster.metrics import cluster_geometry, clustering_metrics, internal_metrics
    from vehiclust.executor import ExecutorSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--tile", type=int, default=1)
    parser.add_argument("--ks", type=lambda s: [int(k) for k in s.split(",")], default=[5, 10, 20, 40])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="also time the sharded map on a local Ray instance")
    parser.add_argument("--sweep", action="store_true", help="also time the cluster stage, local and on Ray")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vr-metrics-") as tmp:
        run = demo_run(args.images, Path(tmp))
        X = demo_space(run, args.tile)
        print(f"{X.shape[0]:,} rows x {X.shape[1]} columns (the demo's color_hist, l2+pca, tiled {args.tile}x)")
        on_ray = ExecutorSettings("ray", workers=2, scratch=tmp)
        for k in args.ks:
            labels = KMeans(k, n_init=1, random_state=0).fit(X[::max(1, len(X) // 20000)]).predict(X)
            memory = best_of(args.repeats, lambda: internal_metrics(X, labels, *cluster_geometry(X, labels)))
            chunked = best_of(args.repeats, lambda: clustering_metrics(X, labels))
            line = (f"k={k:3d}: in memory {memory * 1000:8.1f} ms, chunked {chunked * 1000:8.1f} ms "
                    f"(ratio {chunked / memory:.2f})")
            if args.ray:
                clustering_metrics(X, labels, on_ray)  # Ray's start and the rows' file, once per space
                sharded = best_of(args.repeats, lambda: clustering_metrics(X, labels, on_ray))
                line += f", ray 2 workers {sharded * 1000:8.1f} ms (ratio {sharded / memory:.1f})"
            print(line, flush=True)
        if args.sweep:
            time_sweeps(run, Path(tmp))


if __name__ == "__main__":
    main()
