"""What the selection benchmark (benchmarks/selection_yardsticks.py) relies on."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score
from test_cluster import LINEAR, make_run, planted

from vehiclust.cluster import ClusterSettings, cluster
from vehiclust.cluster.stage import ClusterStage
from vehiclust.runfolder import CLUSTERING, RUN_LABELS
from vehiclust.stage import RunContext


def test_keep_run_labels_stores_every_run_and_is_off_by_default(tmp_path):
    X, y = planted(400, 16, 4, seed=3)
    run = make_run(tmp_path, {"d": X})
    plain = ClusterSettings(preprocessing=LINEAR, algorithms=("kmeans",), k_values=(2, 4, 6))
    cluster(run, ["d"], plain)
    assert not RUN_LABELS.exists(run, "d")
    keeping = ClusterSettings(preprocessing=LINEAR, algorithms=("kmeans",), k_values=(2, 4, 6), keep_run_labels=True)
    runs = cluster(run, ["d"], keeping)
    stored = RUN_LABELS.load(run, "d")
    assert stored["labels"].shape == (len(runs), len(X))
    assert list(stored["params"]) == list(runs["params"]) and list(stored["algorithm"]) == list(runs["algorithm"])
    chosen = int(np.flatnonzero(runs["selected"].to_numpy())[0])
    assert adjusted_rand_score(stored["labels"][chosen], CLUSTERING.load(run, "d").labels) == 1.0
    assert [len(np.unique(lab)) for lab in stored["labels"]] == list(runs["n_clusters"])


def test_the_run_labels_are_a_cluster_stage_output_only_when_kept(tmp_path):
    X, _ = planted(200, 8, 3, seed=1)
    ctx = RunContext(run=make_run(tmp_path, {"d": X}), descriptors=["d"])
    kept = ClusterStage(ClusterSettings(keep_run_labels=True)).outputs(ctx)
    assert RUN_LABELS.path(ctx.run, "d") in kept
    assert RUN_LABELS.path(ctx.run, "d") not in ClusterStage().outputs(ctx)
    assert RUN_LABELS.writer == "cluster"
