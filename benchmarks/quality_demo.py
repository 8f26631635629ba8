"""Validate the outlier verdict against the demo collection's ground truth.

    python benchmarks/quality_demo.py [--size small|default|N] [--seed 0] [--out DIR]
                                      [--descriptors efficientnet_lite0,color_hist]

Builds (or reuses) the demo, runs ingest -> describe -> quality -> cluster -> outliers in a run
folder, and prints per planted kind the ROC AUC of the score meant to catch it (positives: that
kind; negatives: the clean images), the recall of the default verdict per kind, and precision /
recall over all outliers. The ``quality`` descriptor is computed here at original resolution
with :class:`~vehiclust.quality.describer.QualityDescriber` (what the describe pass does once
``needs_original`` is honoured by ``describe/extract.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

# the score meant to catch each planted kind
RELEVANT = {
    "no_vehicle": ["no_vehicle_score", "isolated_score"],
    "blurry": ["blurry_score"],
    "motion_blur": ["blurry_score", "motion_blur_score"],
    "dark": ["dark_score"],
    "overexposed": ["overexposed_score"],
    "noisy": ["noisy_score"],
    "small": ["small_score"],
    "truncated": ["odd_aspect_score", "isolated_score"],
    "duplicate": ["duplicate_score"],
    "near_duplicate": ["near_duplicate_score"],
}


def compute_quality_descriptor(run, table, threads: int = 2) -> float:
    """The quality descriptor at original resolution; returns images per second."""
    from threadpoolctl import threadpool_limits

    from vehiclust.collection.imageio import UnreadableImage, read_bytes
    from vehiclust.describe.stage import descriptor_key
    from vehiclust.quality.describer import QUALITY_DESCRIPTOR, QualityDescriber
    from vehiclust.quality.features import COLUMNS

    describer = QualityDescriber(threads=threads)
    started = time.perf_counter()

    def load(location):
        try:
            return describer.decode(read_bytes(location))
        except UnreadableImage as exc:
            return str(exc)

    with ThreadPoolExecutor(threads) as pool:
        decoded = list(pool.map(load, table["location"].tolist()))
    invalid = {str(i): d for i, d in enumerate(decoded) if isinstance(d, str)}
    images = [np.zeros((8, 8, 3), np.uint8) if isinstance(d, str) else d for d in decoded]
    with threadpool_limits(1):
        matrix = describer.describe(images)[QUALITY_DESCRIPTOR]
    matrix[[int(i) for i in invalid]] = 0.0
    seconds = time.perf_counter() - started
    run.save_descriptor(QUALITY_DESCRIPTOR, matrix, {
        "name": QUALITY_DESCRIPTOR, "kind": "extracted", "fingerprint": descriptor_key(QUALITY_DESCRIPTOR, table),
        "dtype": "float32", "shape": list(matrix.shape), "invalid": invalid, "columns": list(COLUMNS),
        "seconds": round(seconds, 2), **describer.provenance()})
    return len(table) / seconds


def evaluate(verdicts: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    merged = verdicts.merge(truth[["path", "is_outlier", "outlier_kind"]], on="path", suffixes=("", "_truth"))
    clean = ~merged["is_outlier_truth"]
    rows = []
    for kind, columns in RELEVANT.items():
        positive = merged["outlier_kind"] == kind
        if not positive.any():
            continue
        row = {"kind": kind, "n": int(positive.sum()),
               "recall": float(merged.loc[positive, "is_outlier"].mean())}
        aucs = {}
        for column in columns:
            if column in merged:
                x = pd.to_numeric(merged[column], errors="coerce").fillna(0).to_numpy()
                y = np.r_[np.ones(positive.sum()), np.zeros(clean.sum())]
                aucs[column] = roc_auc_score(y, np.r_[x[positive], x[clean]])
        if aucs:
            best = max(aucs, key=aucs.get)
            row.update(score=best, auc=aucs[best])
        reasons = merged.loc[positive, "outlier_reasons"].str.split(";").explode()
        row["top_reasons"] = ", ".join(f"{r}:{c}" for r, c in reasons[reasons != ""].value_counts().head(3).items())
        rows.append(row)
    predicted = merged["is_outlier"].astype(bool)
    actual = merged["is_outlier_truth"].astype(bool)
    tp = int((predicted & actual).sum())
    overall = {"flagged": int(predicted.sum()), "outliers": int(actual.sum()),
               "precision": tp / max(int(predicted.sum()), 1), "recall": tp / max(int(actual.sum()), 1),
               "false_positive_reasons": merged.loc[predicted & ~actual, "outlier_reasons"].str.split(";")
               .explode().value_counts().head(6).to_dict()}
    return pd.DataFrame(rows), overall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/vehiclust-quality-demo")
    parser.add_argument("--descriptors", default="efficientnet_lite0,color_hist")
    parser.add_argument("--cluster", action="store_true",
                        help="run the cluster stage first (adds the centroid-distance detector)")
    args = parser.parse_args(argv)

    from vehiclust.collection import ingest
    from vehiclust.demo import build_demo, load_ground_truth
    from vehiclust.describe import describe
    from vehiclust.outliers import outliers
    from vehiclust.runfolder import RunFolder

    out = Path(args.out)
    size = int(args.size) if args.size.isdigit() else args.size
    t0 = time.perf_counter()
    demo = build_demo(out / f"demo-{args.size}-{args.seed}", size=size, seed=args.seed)
    run = RunFolder(out / f"run-{args.size}-{args.seed}")
    ingest(demo.root, run)
    table = run.load_collection()
    names = [n for n in args.descriptors.split(",") if n]
    from vehiclust.describe import available

    extra = ["vehicle_type"] if "vehicle_type" in available() and "efficientnet_lite0" in names else []
    describe(run, names + extra)  # efficientnet_lite0's pass also gives vehicle_type (not_a_vehicle)
    print(f"demo + ingest + describe: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    rate = compute_quality_descriptor(run, table)
    print(f"quality descriptor (decode + measure, original resolution): {rate:.0f} images/s")
    if args.cluster:
        from vehiclust.cluster import ClusterSettings, cluster

        cluster(run, names, ClusterSettings(k_min=2, k_max=12))
    t1 = time.perf_counter()
    verdicts = outliers(run, names)
    print(f"outliers stage: {time.perf_counter() - t1:.1f}s")
    truth = load_ground_truth(demo.out_dir if hasattr(demo, "out_dir") else demo.root.parent)
    per_kind, overall = evaluate(verdicts, truth)
    pd.set_option("display.width", 200)
    print(per_kind.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in overall.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
