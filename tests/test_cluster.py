"""The cluster stage: settings, preprocessing, algorithms, metrics, selection, and the yardsticks
(planted structure, scikit-learn's digits) run through the real stage on a run folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
)

from vehiclust.cluster import ALGORITHMS, ClusterSettings, cluster, k_grid, parse_k, parse_k_range
from vehiclust.cluster.algorithms import GridContext
from vehiclust.cluster.backends import knn_vote, nearest_centroid
from vehiclust.cluster.metrics import cluster_geometry, internal_metrics, label_checks
from vehiclust.cluster.preprocess import PCAReduce, apply_linear, parse
from vehiclust.cluster.select import select_run
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import CLUSTERING, RunFolder

LINEAR = ("l2+pca", "std+pca")  # the default preprocessings without UMAP: fast


# -- helpers ---------------------------------------------------------------------------------

def make_run(tmp_path, descriptors: dict[str, np.ndarray], labels: dict[str, np.ndarray] | None = None,
             invalid: dict[str, dict[int, str]] | None = None) -> RunFolder:
    """A run folder as the ingest and describe stages leave it."""
    run = RunFolder(tmp_path / "run")
    n = len(next(iter(descriptors.values())))
    table = pd.DataFrame({"row": np.arange(n), "path": [f"img/{i:06d}.jpg" for i in range(n)], "location": "",
                          "width": 64, "height": 64, "error": ""})
    for column, values in (labels or {}).items():
        table[column] = values
    run.root.mkdir(parents=True)
    table.to_parquet(run.collection_path)
    for name, matrix in descriptors.items():
        run.save_descriptor(name, matrix, {"name": name, "kind": "imported", "invalid": (invalid or {}).get(name, {})})
    return run


def planted(n: int, d: int, k: int, seed: int, anisotropic: bool = True,
            separation: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters of unequal sizes (shares from 3% to 35%) in d dimensions; anisotropic:
    each cluster's covariance has its own random orientation and axis scales over a 4x range.
    Centres lie ``separation`` apart on average; a cluster's radius is about 1."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(k, 2.0)) * 0.7 + 0.3 / k
    y = rng.choice(k, size=n, p=shares / shares.sum())
    centres = rng.normal(size=(k, d))
    centres *= separation / np.sqrt(2) / np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.empty((n, d), dtype=np.float32)
    for j in range(k):
        members = y == j
        noise = rng.normal(size=(members.sum(), d))
        if anisotropic:
            rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
            noise = (noise * np.exp(rng.uniform(-0.7, 0.7, size=d))) @ rotation.T
        X[members] = centres[j] + noise / np.sqrt(d)
    return X, y


def selected(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[(runs["descriptor"] == name) & runs["selected"]].iloc[0]


# -- settings --------------------------------------------------------------------------------

def test_k_grammar():
    assert parse_k_range("2:15") == (2, 15) and parse_k_range("8") == (8, 8)
    assert parse_k("2:30")["k_max"] == 30
    assert parse_k("8") == {"fixed_k": 8, "k_min": 8, "k_max": 8}
    assert parse_k("4,9,6")["k_values"] == (4, 6, 9)
    assert parse_k("2:10:4")["k_values"] == (2, 6, 10)
    for bad in ("1:5", "x", "5:2", "1", "2:10:0"):
        with pytest.raises(VehiclustError):
            parse_k(bad)
    grid = k_grid(2, 30)
    assert grid[:11] == list(range(2, 13)) and grid[-1] == 30 and len(grid) < 20
    assert ClusterSettings(k_values=[5, 3]).ks() == [3, 5]
    assert ClusterSettings(fixed_k=7).ks() == [7]
    assert ClusterSettings(algorithms="kmeans, ward").algorithms == ("kmeans", "ward")
    for bad in ({"k_min": 5, "k_max": 3}, {"algorithms": "kmeans,kmeens"}, {"preprocessing": ("l2+pcaa",)}):
        with pytest.raises(VehiclustError):
            ClusterSettings(**bad)


# -- preprocessing ---------------------------------------------------------------------------

def test_preprocessing_grammar():
    assert [s.name for s in parse("l2+pca:50w+umap")] == ["l2", "pca", "umap"]
    assert parse("none") == [] and parse("standardize")[0].name == "std"
    for bad in ("foo", "umap+pca"):
        with pytest.raises(VehiclustError):
            parse(bad)


def test_pca_variance_target_and_whitening():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(2000, 5)) * [10, 5, 1, 0.1, 0.1]) @ rng.normal(size=(5, 40))
    pca = PCAReduce(variance=0.95).fit(X)
    assert pca.components_.shape[0] == 2 and pca.explained_variance_ratio_ >= 0.95
    white = PCAReduce(n_components=3, whiten=True).fit(X).transform(X)
    np.testing.assert_allclose(white.std(0), 1, rtol=0.05)


def test_linear_steps_are_fitted_on_a_sample_and_applied_to_every_row():
    rng = np.random.default_rng(1)
    matrix = (rng.normal(size=(3000, 32)) * np.arange(1, 33)).astype(np.float16)
    rows = np.arange(0, 3000, 2)
    settings = ClusterSettings(preprocess_sample=500)
    X, info = apply_linear(matrix, rows, parse("std+pca:8"), settings)
    assert X.shape == (1500, 8) and X.dtype == np.float32
    assert info["preprocess_fit_rows"] == 500 and 0 < info["explained_variance"] < 1
    # chunking is invisible: the same rows in one go give the same vectors
    X_small, _ = apply_linear(matrix, rows[:100], parse("std+pca:8"), ClusterSettings(preprocess_sample=500))
    assert np.isfinite(X).all() and X_small.shape == (100, 8)


# -- kernels and metrics ---------------------------------------------------------------------

def test_nearest_centroid_and_knn_vote():
    X = np.array([[0, 0], [10, 0], [0.4, 0.1]], dtype=np.float32)
    labels, dist = nearest_centroid(X, np.array([[0, 0], [10, 0]], dtype=np.float32))
    assert labels.tolist() == [0, 1, 0] and dist[2] == pytest.approx(np.hypot(0.4, 0.1), rel=1e-5)
    votes = knn_vote(np.array([[1, 2, 2], [-1, -1, 0], [3, 0, 0], [5, 4, 6]]))
    assert votes.tolist() == [2, -1, 0, 5]  # majority; noise stays noise; a tie goes to the nearest


def test_centroid_metrics_equal_scikit_learn():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 6)).astype(np.float32) + np.repeat(np.eye(6)[:3] * 4, 200, axis=0)
    labels = np.repeat(np.arange(3), 200)
    labels[::17] = -1  # noise is left out of the geometric metrics
    centers, sizes, distance = cluster_geometry(X, labels)
    metrics = internal_metrics(X, labels, centers, sizes, distance)
    keep = labels >= 0
    assert metrics["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(X[keep], labels[keep]), rel=1e-4)
    assert metrics["davies_bouldin"] == pytest.approx(davies_bouldin_score(X[keep], labels[keep]), rel=1e-4)
    assert metrics["noise_share"] == pytest.approx(1 - keep.mean())
    assert np.isnan(distance[~keep]).all() and np.isfinite(distance[keep]).all()


def test_label_checks():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 1000)
    labels = np.where(rng.random(1000) < 0.8, truth, rng.integers(0, 4, 1000))
    table = pd.DataFrame({"type": truth.astype(str), "vehicle_id": np.arange(1000) // 5})
    table.loc[:9, "type"] = ""  # unknown labels are left out
    checks = label_checks(labels, table, ("type", "color"), "vehicle_id")
    known = np.arange(1000) >= 10
    assert checks["ari_type"] == pytest.approx(adjusted_rand_score(truth[known], labels[known]))
    assert checks["nmi_type"] == pytest.approx(normalized_mutual_info_score(truth[known], labels[known]))
    assert "ari_color" not in checks  # the collection has no such column
    by_vehicle = np.repeat(rng.integers(0, 4, 200), 5)  # each vehicle in one cluster
    perfect = label_checks(by_vehicle, table, (), "vehicle_id")
    assert perfect["identity_consistency"] == 1.0 and perfect["identity_consistency_chance"] < 0.8


# -- algorithms ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_finds_separated_blobs(name):
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 100)
    X = (np.eye(3)[y] * 6 + rng.normal(size=(300, 3)) * 0.5).astype(np.float32)
    algorithm = ALGORITHMS[name]
    params = algorithm.grid(GridContext(ks=[3], n_fit=300, dims=3))
    params = params[1] if len(params) > 1 else params[0]  # the middle of a density grid
    model = algorithm.make(params, 0).fit(X)
    keep = model.labels_ >= 0
    assert keep.mean() > 0.8 and adjusted_rand_score(y[keep], model.labels_[keep]) > 0.9


# -- selection -------------------------------------------------------------------------------

def fake_runs(scores: dict[int, tuple[float, float]], algorithm="kmeans") -> pd.DataFrame:
    """Runs of one family with given (silhouette, stability) per k."""
    return pd.DataFrame([{
        "descriptor": "d", "preprocessing": "l2+pca", "algorithm": algorithm, "params": f"k={k}", "k": k,
        "n_clusters": k, "silhouette": sil, "davies_bouldin": 1.0, "stability": stab, "noise_share": 0.0,
        "min_cluster_share": 0.05, "ari_type": 1.0 if k == 9 else 0.0,
    } for k, (sil, stab) in scores.items()])


def test_selection_prefers_an_interior_peak_to_a_drifting_edge():
    # silhouette drifting down with k (the case's trap), with a plateau/peak at k=5
    drifting = {2: (0.40, 0.9), 3: (0.37, 0.9), 4: (0.35, 0.9), 5: (0.37, 0.9), 6: (0.33, 0.9), 7: (0.30, 0.9)}
    runs = select_run(fake_runs(drifting), ClusterSettings())
    chosen = runs[runs["selected"]].iloc[0]
    assert chosen["k"] == 5 and "interior peak" in chosen["reason"] and "edge" in chosen["reason"]
    # a clear best at the edge stays (planted k=2)
    clear = {2: (0.8, 1.0), 3: (0.4, 0.7), 4: (0.35, 0.7), 5: (0.37, 0.7), 6: (0.3, 0.7)}
    chosen = select_run(fake_runs(clear), ClusterSettings()).query("selected").iloc[0]
    assert chosen["k"] == 2 and "edge" in chosen["reason"]


def test_selection_options_and_labels_do_not_vote():
    scores = {k: (0.5 - 0.01 * abs(k - 6), 0.95) for k in range(2, 12)}
    runs = fake_runs(scores)
    assert select_run(runs, ClusterSettings()).query("selected").iloc[0]["k"] == 6  # ari_type peaks at 9
    few = select_run(runs, ClusterSettings(prefer_few_clusters=True)).query("selected").iloc[0]
    assert few["k"] < 6 and "fewest clusters" in few["reason"]
    assert select_run(runs, ClusterSettings(fixed_k=4)).query("selected").iloc[0]["k"] == 4
    # a run with a 0.1% cluster is not eligible
    tiny = runs.assign(min_cluster_share=np.where(runs["k"] == 6, 0.001, 0.05))
    out = select_run(tiny, ClusterSettings())
    assert out.query("selected").iloc[0]["k"] != 6 and "smallest cluster" in out.loc[out["k"] == 6, "note"].iloc[0]


# -- the stage on a run folder ---------------------------------------------------------------

def test_stage_contract_invalid_rows_and_skipping(tmp_path):
    X, y = planted(600, 32, 4, seed=5, anisotropic=False)
    X[7] = np.nan  # a broken vector the descriptor's metadata did not mark
    run = make_run(tmp_path, {"a": X, "b": X[:, :16].astype(np.float16)}, labels={"type": y.astype(str)},
                   invalid={"a": {3: "unreadable image"}})
    settings = ClusterSettings(k_min=2, k_max=6, preprocessing=LINEAR)
    runs = cluster(run, ["a", "b"], settings)
    for column in ("descriptor", "preprocessing", "algorithm", "params", "n_clusters", "n_rows", "calinski_harabasz",
                   "davies_bouldin", "silhouette", "silhouette_std", "stability", "min_cluster_share", "selected",
                   "best_overall", "reason", "seconds", "sampling", "fit_rows", "ari_type", "score"):
        assert column in runs.columns, column
    assert runs.groupby("descriptor")["selected"].sum().tolist() == [1, 1]
    assert runs["best_overall"].sum() == 1
    assert (runs.loc[runs["selected"], "reason"].str.len() > 20).all()
    saved = CLUSTERING.load(run, "a")
    labels, distance = saved["labels"], saved["distance"]
    assert labels.dtype == np.int32 and distance.dtype == np.float32 and len(labels) == 600
    assert labels[3] == -1 and labels[7] == -1 and np.isnan(distance[[3, 7]]).all()
    clustered = labels >= 0
    assert np.isfinite(distance[clustered]).all()
    sizes = np.bincount(labels[clustered])
    assert (np.diff(sizes) <= 0).all()  # cluster 0 is the largest
    assert saved["centers"].shape[0] == len(sizes) == selected(runs, "a")["n_clusters"]
    assert adjusted_rand_score(y[clustered], labels[clustered]) > 0.95
    # unchanged inputs and settings: skipped; other settings: redone
    finished = run.stage_record("cluster")["finished"]
    again = cluster(run, ["a", "b"], settings)
    assert run.stage_record("cluster")["finished"] == finished and len(again) == len(runs)
    assert again["selected"].dtype == bool
    fewer = cluster(run, ["a"], ClusterSettings(k_min=3, k_max=4, algorithms=("kmeans",), preprocessing=("l2+pca",)))
    assert len(fewer) == 2 and fewer["selected"].sum() == 1


def test_large_inputs_are_sampled_and_say_so(tmp_path):
    X, y = planted(3000, 24, 5, seed=6, anisotropic=False)
    run = make_run(tmp_path, {"x": X.astype(np.float16)})
    settings = ClusterSettings(k_min=4, k_max=6, preprocessing=("l2+pca",), algorithms=("kmeans", "ward", "average"),
                               preprocess_sample=1000, fit_sample=1500, quadratic_sample=600, stability_sample=500,
                               silhouette_sample=800)
    runs = cluster(run, ["x"], settings)
    ward = runs[runs["algorithm"] == "ward"].iloc[0]
    assert ward["sampled"] and ward["fit_rows"] == 600 and ward["assignment"] == "nearest centroid"
    assert "ward fitted on 600 rows" in ward["sampling"] and "preprocessing fitted on 1,000" in ward["sampling"]
    assert "silhouette on 3 x 800 rows" in ward["sampling"]
    assert runs.loc[runs["algorithm"] == "average", "assignment"].iloc[0] == "10-NN vote"
    labels = CLUSTERING.load(run, "x")["labels"]
    assert (labels >= 0).all() and adjusted_rand_score(y, labels) > 0.95


def test_density_based_noise_is_labelled_and_charged(tmp_path):
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(3), 300)
    X = np.vstack([np.eye(3)[y] * 8 + rng.normal(size=(900, 3)), rng.uniform(-6, 14, size=(100, 3))])
    X = np.hstack([X, rng.normal(size=(1000, 1)) * 0.01]).astype(np.float32)
    run = make_run(tmp_path, {"x": X})
    runs = cluster(run, ["x"], ClusterSettings(preprocessing=("pca:3",), algorithms=("hdbscan", "dbscan")))
    assert set(runs["algorithm"]) == {"hdbscan", "dbscan"} and runs["k"].isna().all()
    chosen = selected(runs, "x")
    assert chosen["n_clusters"] == 3 and 0 < chosen["noise_share"] < 0.2
    saved = CLUSTERING.load(run, "x")
    noise = saved["labels"] == -1
    assert noise[900:].mean() > 0.5 and np.isnan(saved["distance"][noise]).all()
    assert adjusted_rand_score(y, saved["labels"][:900]) > 0.9
    assert "dbscan" in runs["algorithm"].tolist() and runs.loc[runs["algorithm"] == "dbscan", "details"].str.contains(
        "eps=").all()  # eps from the k-distance knee, recorded


def test_structureless_data_says_so(tmp_path):
    X = np.random.default_rng(8).normal(size=(800, 32)).astype(np.float32)
    runs = cluster(make_run(tmp_path, {"noise": X}), ["noise"], ClusterSettings(preprocessing=LINEAR))
    assert selected(runs, "noise")["reason"].startswith("weak structure")


@pytest.mark.parametrize("d,k,seed", [(64, 5, 10), (512, 8, 11)])
def test_planted_structure_linear_spaces(tmp_path, d, k, seed):
    """Anisotropic, unequal clusters; default algorithms and k grid, linear preprocessings only."""
    X, y = planted(1500, d, k, seed)
    run = make_run(tmp_path, {"x": X}, labels={"type": y.astype(str)})
    runs = cluster(run, ["x"], ClusterSettings(preprocessing=LINEAR, algorithms=("kmeans", "ward")))
    chosen = selected(runs, "x")
    labels = CLUSTERING.load(run, "x")["labels"]
    assert chosen["n_clusters"] == k and adjusted_rand_score(y, labels) >= 0.95


@pytest.mark.slow
def test_planted_structure_with_default_settings(tmp_path):
    X, y = planted(2000, 128, 6, seed=12)
    run = make_run(tmp_path, {"x": X})
    runs = cluster(run, ["x"])
    chosen = selected(runs, "x")
    labels = CLUSTERING.load(run, "x")["labels"]
    assert chosen["n_clusters"] == 6 and adjusted_rand_score(y, labels) >= 0.95


@pytest.mark.slow
def test_digits_without_k(tmp_path):
    """scikit-learn's 8x8 digits, raw 64-d pixels, k not given: the default sweep and rule must
    reach ARI >= 0.80 (plain k-means on the pixels reaches about 0.5-0.65)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    run = make_run(tmp_path, {"digits": X.astype(np.float32)}, labels={"type": y.astype(str)})
    runs = cluster(run, ["digits"])
    chosen = selected(runs, "digits")
    labels = CLUSTERING.load(run, "digits")["labels"]
    assert adjusted_rand_score(y, labels) >= 0.80, chosen["reason"]
    assert chosen["ari_type"] == pytest.approx(adjusted_rand_score(y, labels), abs=1e-6)
    if "umap" in chosen["preprocessing"]:  # distances before UMAP kept for the outlier stage
        assert np.isfinite(CLUSTERING.load(run, "digits")["distance_input"]).all()
    # the label check is reported for every run, and plain k-means on the pixels is far below
    kmeans_raw = runs[(runs["algorithm"] == "kmeans") & (runs["preprocessing"] == "std+pca")]
    assert kmeans_raw["ari_type"].max() < 0.8
