"""UMAP's neighbour graph in the sweep: pynndescent (umap-learn's default, compiled by numba in
every process) against the exact graph of ``cluster.backends.umap_neighbour_graph``.

Each variant sweeps one descriptor of a run folder in a fresh process (numba's compilation is a
per-process cost, which is the point), alternating ABAB; prints each sweep's seconds, the
preprocessing's (UMAP's) share, the selected run and its label checks (runs.csv's ARI/NMI
against the collection's label columns: checks, never votes).

    python benchmarks/umap_neighbours.py RUN_FOLDER DESCRIPTOR [--rounds 2]

The run folder is copied first (the sweep writes its clustering)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
from vehiclust.thirdparty import configure_process
configure_process()
from vehiclust.cluster import backends, preprocess, sweep
from vehiclust.cluster.settings import ClusterSettings
from vehiclust.progress import NullReporter
from vehiclust.runfolder import RunFolder
if sys.argv[3] == "pynndescent":
    preprocess.umap_neighbour_graph = lambda X, k: (None, None, None)
started = time.perf_counter()
run, settings = RunFolder(sys.argv[1]), ClusterSettings()
runs = sweep.sweep_descriptor(run, sys.argv[2], settings, NullReporter(), sweep._label_table(run, settings))
chosen = runs[runs["selected"]].iloc[0]
print(json.dumps({"seconds": time.perf_counter() - started,
                  "preprocess_seconds": float(runs.groupby("preprocessing")["preprocess_seconds"].first().sum()),
                  "selected": f"{chosen['algorithm']} {chosen['preprocessing']} {chosen['params']}",
                  "checks": {c: round(float(chosen[c]), 3) for c in runs.columns if c[:4] in ("nmi_", "ari_")}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("descriptor")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vehiclust-umapbench-") as tmp:
        results: dict[str, list[dict]] = {"pynndescent": [], "exact": []}
        for round_ in range(args.rounds):
            for variant in ("pynndescent", "exact") if round_ % 2 == 0 else ("exact", "pynndescent"):
                copy = Path(tmp) / f"{variant}{round_}"
                shutil.copytree(args.run_folder, copy, ignore=shutil.ignore_patterns("report*", "thumbnails", "maps"))
                out = subprocess.run([sys.executable, "-c", CHILD, str(copy), args.descriptor, variant],
                                     check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                results[variant].append(result)
                print(f"round {round_} {variant:12s} sweep {result['seconds']:6.1f} s, preprocessing (incl. UMAP) "
                      f"{result['preprocess_seconds']:6.1f} s, selected {result['selected']} {result['checks']}", flush=True)
                shutil.rmtree(copy)
        for variant, rows in results.items():
            print(f"{variant:12s} median sweep {sorted(r['seconds'] for r in rows)[len(rows) // 2]:.1f} s")
        ratio = [e["seconds"] / p["seconds"] for e, p in zip(results["exact"], results["pynndescent"])]
        print("exact / pynndescent per round:", ", ".join(f"{r:.2f}" for r in ratio))


if __name__ == "__main__":
    main()
