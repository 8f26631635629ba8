"""Quality yardsticks of the cluster stage's default sweep and selection rule.

* planted structure: anisotropic Gaussian clusters of unequal sizes (3% to 35% of the rows) in
  64-512 dimensions with known k (the generator of tests/test_cluster.py);
* scikit-learn's digits (1,797 8x8 images, raw 64-d pixels), k not given.

For each: the selected run, its k, its ARI against the truth, and the ARI of plain k-means
with the true k in the l2+pca space as a reference. Run::

    .venv/bin/python benchmarks/cluster_yardsticks.py [--rows 3000] [--seeds 0,1] [--separations 1.5,1.0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_cluster import make_run, planted  # noqa: E402

from vehiclust.cluster import ClusterSettings, cluster  # noqa: E402
from vehiclust.runfolder import CLUSTERING  # noqa: E402

CASES = [(64, 5), (128, 6), (256, 8), (512, 10)]
SEPARATIONS = (1.5, 1.0, 0.7)  # centre distance in cluster radii: clear, touching, overlapping


def evaluate(name: str, X: np.ndarray, y: np.ndarray, settings: ClusterSettings) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), {name: X}, labels={"type": y.astype(str)})
        started = time.perf_counter()
        runs = cluster(run, [name], settings)
        seconds = time.perf_counter() - started
        labels = np.load(CLUSTERING.path(run, name))["labels"]
    chosen = runs[runs["selected"]].iloc[0]
    k_true = len(np.unique(y))
    reference = runs[(runs["algorithm"] == "kmeans") & (runs["preprocessing"] == "l2+pca") & (runs["k"] == k_true)]
    return {"case": name, "true k": k_true, "selected": f"{chosen['algorithm']} on {chosen['preprocessing']}",
            "k": int(chosen["n_clusters"]), "ARI": adjusted_rand_score(y, labels),
            "kmeans l2+pca @true k": float(reference["ari_type"].iloc[0]) if len(reference) else float("nan"),
            "score": float(chosen["score"]), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--separations", default=",".join(map(str, SEPARATIONS)))
    args = parser.parse_args()
    from sklearn.datasets import load_digits

    settings = ClusterSettings()
    results = []
    for separation in (float(s) for s in args.separations.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            for d, k in CASES:
                X, y = planted(args.rows, d, k, seed=100 + seed, separation=separation)
                results.append(evaluate(f"planted d={d} sep={separation} seed={seed}", X, y, settings))
                print(results[-1], flush=True)
    X, y = load_digits(return_X_y=True)
    results.append(evaluate("digits", X.astype(np.float32), y, settings))
    import pandas as pd

    print(pd.DataFrame(results).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
