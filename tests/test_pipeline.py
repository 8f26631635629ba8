"""End to end on real photographs: outputs, bad files, skipping, descriptor-only inputs."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_bad_files, write_case_bundle
from vehiclust.pipeline import RunSettings, run_pipeline
from vehiclust.results import load_run
from vehiclust.cluster import ClusterSettings
from vehiclust.report.maps import MapSettings
from vehiclust.report.stage import ReportSettings

# What these tests assert needs no network, no UMAP and no notebook: a classical descriptor, one
# linear space, PCA maps, and the image checks only where a test reads their verdicts.
CHEAP_REPORT = ReportSettings(maps=MapSettings(method="pca"), notebook=False)
CHEAP_CLUSTER = ClusterSettings(k_min=2, k_max=6, preprocessing=("l2+pca",))
FAST = RunSettings(descriptors=["color_hist"], cluster=CHEAP_CLUSTER, image_checks=False, report=CHEAP_REPORT)


@pytest.fixture(scope="module")
def clean_run(photo_folder, tmp_path_factory):
    return run_pipeline(photo_folder, tmp_path_factory.mktemp("clean"), FAST)


@pytest.fixture(scope="module")
def messy(photo_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("messy") / "images"
    shutil.copytree(photo_folder, root)
    good = next(root.rglob("*.jpg")).read_bytes()
    expected = write_bad_files(root, good)
    result = run_pipeline(root, root.parent / "run", FAST)
    return root, expected, result


def test_outputs_of_a_clean_run(clean_run, photo_folder):
    clusters = pd.read_csv(clean_run.clusters_csv, keep_default_na=False)
    leading = [c for c in clusters.columns[:6] if c != "cluster_coarse"]  # the broad level of a hierarchy
    assert leading[:5] == ["path", "cluster", "is_outlier", "outlier_score", "outlier_reasons"]
    assert "cluster_color_hist" in clusters.columns
    assert len(clusters) == len(list(photo_folder.rglob("*.jpg")))
    runs = pd.read_csv(clean_run.run.path("runs.csv"))
    for column in ("descriptor", "preprocessing", "algorithm", "params", "n_clusters",
                   "calinski_harabasz", "davies_bouldin", "silhouette", "selected"):
        assert column in runs.columns
    assert runs["selected"].sum() == 1 and load_run(clean_run.run.root).runs["best_overall"].sum() == 1
    assert set(runs.loc[runs["algorithm"] == "kmeans", "k"]) == set(range(2, 7))
    assert clusters["cluster"].nunique() == runs.loc[runs["selected"], "n_clusters"].iloc[0]
    html = clean_run.report_html.read_text()
    assert "Best clustering" in html and "data:image/jpeg;base64," in html


def test_bad_files_are_kept_and_marked(messy, clean_run):
    root, expected, result = messy
    clusters = pd.read_csv(result.clusters_csv, keep_default_na=False).set_index("path")
    outliers = pd.read_csv(result.run.path("outliers.csv"), keep_default_na=False).set_index("path")
    for path, reason in expected.items():
        if "permission" in reason and os.geteuid() == 0:
            continue  # root can read it: it is a valid image for root
        assert "unreadable" in clusters.at[path, "outlier_reasons"], path
        assert clusters.at[path, "cluster"] == -1
        assert reason in outliers.at[path, "error"], (path, outliers.at[path, "error"])
    # the good rows got exactly the vectors they get without the bad files beside them
    clean = pd.read_csv(clean_run.clusters_csv, keep_default_na=False)
    messy_table = result.run.load_collection().set_index("path")
    vectors = result.run.load_descriptor("color_hist")
    clean_vectors = clean_run.run.load_descriptor("color_hist")
    rows = messy_table.loc[clean["path"], "row"].to_numpy()
    np.testing.assert_array_equal(vectors[rows], clean_vectors)


def test_stages_are_skipped_when_nothing_changed(photo_folder, tmp_path):
    run = run_pipeline(photo_folder, tmp_path / "run", FAST).run
    before = {s: run.stage_record(s)["finished"] for s in ("ingest", "describe", "cluster", "compare", "outliers")}
    mtime = run.descriptor_path("color_hist").stat().st_mtime_ns
    run_pipeline(photo_folder, tmp_path / "run", FAST)
    assert {s: run.stage_record(s)["finished"] for s in before} == before
    assert run.descriptor_path("color_hist").stat().st_mtime_ns == mtime
    # other settings for the clustering: only clustering and later stages run again
    other = replace(FAST, cluster=replace(CHEAP_CLUSTER, k_min=3, k_max=4))
    run_pipeline(photo_folder, tmp_path / "run", other)
    assert run.stage_record("ingest")["finished"] == before["ingest"]
    assert run.descriptor_path("color_hist").stat().st_mtime_ns == mtime
    runs = pd.read_csv(run.path("runs.csv"))
    assert set(runs.loc[runs["algorithm"] == "kmeans", "k"]) == {3, 4}


def test_case_bundle_without_images_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    truth = rng.integers(0, 3, size=300)
    paths = [f"veriwild\\1\\{v:05d}\\{i:06d}.jpg" for i, v in enumerate(truth)]
    bundle = write_case_bundle(tmp_path / "case", [p.replace("\\", "/") for p in paths], {
        "vdc_type": centres[truth] + rng.normal(size=(300, 16)),
        "osnet": rng.normal(size=(300, 8)),
    })
    result = run_pipeline(bundle, tmp_path / "run", RunSettings(cluster=CHEAP_CLUSTER, report=CHEAP_REPORT))
    clusters = pd.read_csv(result.clusters_csv, keep_default_na=False)
    assert clusters["path"].tolist() == paths  # input order, the user's own path strings
    assert {"cluster_vdc_type", "cluster_osnet"} <= set(clusters.columns)
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(truth, clusters["cluster_vdc_type"]) > 0.95
    assert "Images are missing" in result.report_html.read_text()


def test_unusual_images_run_through(tmp_path):
    from conftest import real_photos

    photo = real_photos()["coffee"]
    root = tmp_path / "odd images"
    root.mkdir()
    Image.fromarray(photo).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(photo).convert("P").save(root / "palette.png")
    Image.fromarray(photo).convert("RGBA").save(root / "alpha.png")
    Image.fromarray(photo).convert("L").save(root / "gray.jpg")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(root / "one pixel.png")
    Image.fromarray((np.asarray(Image.fromarray(photo).convert("L"), dtype=np.uint16) * 200)).save(root / "16bit.png")
    Image.fromarray(photo).save(root / "véhicule 車.jpg")
    result = run_pipeline(root, tmp_path / "run", replace(FAST, cluster=replace(CHEAP_CLUSTER, k_max=3),
                                                          image_checks=True))  # "small" is an image check
    clusters = pd.read_csv(result.clusters_csv, keep_default_na=False).set_index("path")
    assert not clusters["outlier_reasons"].str.contains("unreadable").any()
    assert "small" in clusters.at["one pixel.png", "outlier_reasons"]
    assert (clusters["cluster"] >= 0).all()


def test_a_descriptor_with_too_few_usable_rows_is_left_out_and_the_others_go_on(tmp_path):
    from vehiclust.collection import IngestSettings
    from vehiclust.progress import NullReporter

    class Said(NullReporter):
        def __init__(self):
            self.said = []

        def message(self, text):
            self.said.append(text)

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 3, 120)
    good = (rng.normal(size=(120, 8)) + 5 * np.eye(8)[groups]).astype(np.float32)
    broken = np.full((120, 4), np.nan, np.float32)
    broken[:2] = 1.0  # two rows survive: kept as outliers with --allow-invalid-rows, nothing to cluster
    paths = [f"veriwild/1/{i // 4 + 1:05d}/{i:06d}.jpg" for i in range(120)]
    bundle = write_case_bundle(tmp_path / "bundle", paths, {"good": good, "broken": broken})
    from vehiclust.compare import CompareSettings

    # the mixture of all asks for two clustered descriptors: with one left, it is left out too
    settings = replace(FAST, descriptors=None, ingest=IngestSettings(allow_invalid_rows=True),
                       compare=CompareSettings(mixes=("all",)))
    said = Said()
    result = run_pipeline(bundle, tmp_path / "run", settings, reporter=said)
    assert any(m.startswith("warning: broken: only 2 usable rows") for m in said.said)
    assert "mix_all: left out, only good is clustered" in said.said
    clusters = pd.read_csv(result.clusters_csv)
    assert len(clusters) == 120 and "cluster_good" in clusters and "cluster_broken" not in clusters
    assert set(pd.read_csv(result.run.path("runs.csv"))["descriptor"]) == {"good"}
    assert set(result.run.stage_record("cluster")["left_out"]) == {"broken"}  # kept where a later run finds it
    again = Said()
    run_pipeline(bundle, tmp_path / "run", settings, reporter=again)  # and the next run resumes
    assert "cluster: up to date" in again.said and "compare: up to date" in again.said
