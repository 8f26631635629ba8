"""Is the int8 EfficientNet-Lite0 (``describe.int8``) as good as fp32 and faster? Side by side on
every image of a run folder (the demo's, by default):

* network time of both graphs on the same decoded batches, interleaved (the machine's load
  changes under the measurement), and their ratio;
* feature cosine, vehicle-type argmax and top ImageNet class agreement;
* clustering agreement: both feature matrices go into one case bundle (``images_paths.csv`` and
  two pickles) that ``vehiclust run`` clusters with its defaults; the ARI between the two
  delivered clusterings is the issue's criterion (>= 0.95), and the type/colour ARI of each
  checks that int8 clusters the collection as well.

Run: ``.venv/bin/python benchmarks/int8_backbone.py [--run runs/demo] [--work /tmp/int8-bench]``

Measured 2026-12-02 on the shared 2-core AMD EPYC machine, the 5,000-image default demo
(``make run``'s run folder), calibration as in ``describe.int8``, beside the test suite:
network time fp32 68.8 s, int8 48.4 s (ratio 1.42; 1.38-1.41 in three runs of a scratch
copy); feature cosine minimum 0.890, 1st percentile 0.955, median 0.988; same vehicle-type
argmax 0.905, same top ImageNet class 0.820; ``vehiclust run`` delivered ward k=13 from fp32
and k=14 from int8 (scores 0.781 and 0.777), ARI 0.955 between them (type ARI 0.571 and
0.570). A copy calibrated on demo images instead chose k=13 for both, ARI 0.991. The first try of this file (dynamic quantisation, every layer)
was slower (5-6 against 11-17 images/s) and not close (cosine 0.70 minimum), which is why the
convolutions at the largest maps stay in float32 now.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from vehiclust.collection.imageio import decode_rgb, read_bytes
from vehiclust.describe.describers import default_model_cache
from vehiclust.describe.int8 import cached_int8_model, feature_cosine
from vehiclust.describe.onnx_backend import OnnxImageModel, cached_onnx_model
from vehiclust.describe.vehicle_type import type_probabilities

NAME = "efficientnet_lite0"
SIZE = 224
BATCH = 64


def both_graphs(locations: list[str], threads: int):
    fp32_path = cached_onnx_model(NAME, default_model_cache())
    models = {"fp32": OnnxImageModel(fp32_path, threads), "int8": OnnxImageModel(cached_int8_model(fp32_path, SIZE), threads)}
    outputs = {name: ([], []) for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for start in range(0, len(locations), BATCH):
        batch = np.stack([np.asarray(decode_rgb(read_bytes(p), (SIZE, SIZE))) for p in locations[start:start + BATCH]])
        for name, model in models.items():
            began = time.perf_counter()
            features, logits = model.run(batch)
            seconds[name] += time.perf_counter() - began
            outputs[name][0].append(features)
            outputs[name][1].append(logits)
    return {name: (np.concatenate(f), np.concatenate(g)) for name, (f, g) in outputs.items()}, seconds


def delivered_clusterings(table: pd.DataFrame, features: dict[str, np.ndarray], work: Path) -> dict[str, np.ndarray]:
    bundle, out = work / "bundle", work / "run"
    (bundle / "descriptors").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"paths": table["path"]}).to_csv(bundle / "images_paths.csv", index=False)
    for name, matrix in features.items():
        with open(bundle / "descriptors" / f"lite0_{name}.pickle", "wb") as f:
            pickle.dump(matrix, f, protocol=4)
    done = subprocess.run([sys.executable, "-m", "vehiclust.cli", "run", str(bundle), "--out", str(out), "--force",
                           "--no-notebook"], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"vehiclust run {bundle} failed:\n{done.stderr[-2000:]}")
    return {name: np.load(out / "clusterings" / f"lite0_{name}.npz")["labels"] for name in features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="a run folder of images")
    parser.add_argument("--work", type=Path, default=Path("/tmp/int8-bench"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    table = pd.read_parquet(args.run / "collection.parquet")
    table = table[table["error"].fillna("") == ""].reset_index(drop=True)
    outputs, seconds = both_graphs(table["location"].tolist(), args.threads)
    (a, a_logits), (b, b_logits) = outputs["fp32"], outputs["int8"]
    cosine = feature_cosine(a, b)
    print(f"{len(table)} images of {args.run}; network time fp32 {seconds['fp32']:.1f} s, int8 {seconds['int8']:.1f} s, "
          f"ratio {seconds['fp32'] / seconds['int8']:.2f}")
    print(f"feature cosine: min {cosine.min():.3f}, 1st percentile {np.percentile(cosine, 1):.3f}, "
          f"median {np.median(cosine):.3f}")
    same_type = (type_probabilities(a_logits).argmax(1) == type_probabilities(b_logits).argmax(1)).mean()
    same_top = (a_logits.argmax(1) == b_logits.argmax(1)).mean()
    print(f"same vehicle-type argmax: {same_type:.3f}; same top ImageNet class: {same_top:.3f}")
    labels = delivered_clusterings(table, {"fp32": a, "int8": b}, args.work)
    print(f"delivered clusterings, ARI int8 vs fp32: {adjusted_rand_score(labels['fp32'], labels['int8']):.3f}")
    for column in [c for c in ("type", "color") if c in table]:
        print(f"  ARI against {column}: fp32 {adjusted_rand_score(table[column], labels['fp32']):.3f}, "
              f"int8 {adjusted_rand_score(table[column], labels['int8']):.3f}")


if __name__ == "__main__":
    main()
