"""`vehiclust demo` (what `make run` runs), end to end on a tiny demo collection."""

from __future__ import annotations

import pandas as pd
import pytest

from vehiclust.cluster import ClusterSettings
from vehiclust.demo_run import run_demo
from vehiclust.evaluate import clustering_columns
from vehiclust.report.stage import ReportSettings


def test_clustering_columns_are_the_label_columns_only():
    clusters = pd.DataFrame({"path": ["a", "b"], "cluster": [0, 1], "cluster_name": ["Red vans", "White cars"],
                             "cluster_vehicle_type": [1, -1], "cluster_mix_all": [0, 0]})
    assert clustering_columns(clusters) == ["cluster", "cluster_vehicle_type", "cluster_mix_all"]


@pytest.mark.slow
def test_demo_scores_every_clustering_and_writes_the_deliverables(tmp_path, monkeypatch):
    monkeypatch.setattr("vehiclust.demo_run.cache_root", lambda: tmp_path / "cache")
    result = run_demo(tmp_path / "run", size=150, seed=4,
                      cluster=ClusterSettings(k_min=3, k_max=5, algorithms=("kmeans",), preprocessing=("std+pca",)),
                      report_settings=ReportSettings(execute_notebook=False))
    clusters = pd.read_csv(result.clusters_csv, keep_default_na=False)
    scores = pd.read_csv(result.run.path("external_scores_clusters.csv"))
    assert set(scores["clustering"]) == set(clustering_columns(clusters))
    assert any(c.startswith("cluster_mix_") for c in scores["clustering"])  # the demo's mixtures
    assert {"type", "color", "type+color"} <= set(scores["label"])
    assert scores[["ari", "nmi"]].notna().all().all()
    for name in ("report.html", "report.ipynb", "comparison.csv", "demo_contact_sheet.jpg",
                 "external_scores_outliers.csv"):
        assert result.run.path(name).exists(), name
    assert "External scores" in result.run.path("report.html").read_text()
