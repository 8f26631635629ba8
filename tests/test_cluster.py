"""The cluster stage: settings, preprocessing, algorithms, metrics, selection, and the yardsticks
(planted structure, scikit-learn's digits) run through the real stage on a run folder."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
)

from vehiclust.cluster import ALGORITHMS, ClusterSettings, cluster, k_grid, parse_k, parse_k_range
from vehiclust.runfolder import CLUSTERING
from vehiclust.cluster.algorithms import GridContext
from vehiclust.cluster.backends import knn_vote, nearest_centroid
from vehiclust.cluster.metrics import cluster_geometry, internal_metrics, label_checks
from vehiclust.cluster.preprocess import PCAReduce, apply_linear, parse
from vehiclust.collection import collection_table
from vehiclust.cluster.select import consensus_k, overall_choice, score, select_run, selection_score
from vehiclust.compare.best import all_runs
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import RunFolder

LINEAR = ("l2+pca", "std+pca")  # the default preprocessings without UMAP: fast


# -- helpers ---------------------------------------------------------------------------------

def make_run(tmp_path, descriptors: dict[str, np.ndarray], labels: dict[str, np.ndarray] | None = None,
             invalid: dict[str, dict[int, str]] | None = None) -> RunFolder:
    """A run folder as the ingest and describe stages leave it."""
    run = RunFolder(tmp_path / "run")
    n = len(next(iter(descriptors.values())))
    table = collection_table([f"img/{i:06d}.jpg" for i in range(n)], width=64, height=64, **(labels or {}))
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
    algorithm = ALGORITHMS.get(name)
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
                   "reason", "seconds", "sampling", "fit_rows", "ari_type", "score"):
        assert column in runs.columns, column
    assert runs.groupby("descriptor")["selected"].sum().tolist() == [1, 1]
    # no comparison yet: the combined view marks the cluster stage's choice across descriptors
    view = all_runs(run)
    assert view["best_overall"].sum() == 1 and len(view) == len(runs)
    best = view[view["best_overall"]].iloc[0]
    assert best["selected"] and best["reason"].endswith("best overall: highest score among the 2 descriptors' "
                                                        "selected runs")
    assert best["score"] == runs.loc[runs["selected"], "score"].max()
    assert (runs.loc[runs["selected"], "reason"].str.len() > 20).all()
    saved = np.load(CLUSTERING.path(run, "a"))
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
    labels = np.load(CLUSTERING.path(run, "x"))["labels"]
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
    saved = np.load(CLUSTERING.path(run, "x"))
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
    labels = np.load(CLUSTERING.path(run, "x"))["labels"]
    assert chosen["n_clusters"] == k and adjusted_rand_score(y, labels) >= 0.95


@pytest.mark.slow
def test_planted_structure_with_default_settings(tmp_path):
    X, y = planted(2000, 128, 6, seed=12)
    run = make_run(tmp_path, {"x": X})
    runs = cluster(run, ["x"])
    chosen = selected(runs, "x")
    labels = np.load(CLUSTERING.path(run, "x"))["labels"]
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
    labels = np.load(CLUSTERING.path(run, "digits"))["labels"]
    assert adjusted_rand_score(y, labels) >= 0.80, chosen["reason"]
    assert chosen["ari_type"] == pytest.approx(adjusted_rand_score(y, labels), abs=1e-6)
    if "umap" in chosen["preprocessing"]:  # distances before UMAP kept for the outlier stage
        assert np.isfinite(np.load(CLUSTERING.path(run, "digits"))["distance_input"]).all()
    # the label check is reported for every run, and plain k-means on the pixels is far below
    kmeans_raw = runs[(runs["algorithm"] == "kmeans") & (runs["preprocessing"] == "std+pca")]
    assert kmeans_raw["ari_type"].max() < 0.8


# -- the algorithm registry's contract (every registered algorithm) ---------------------------

def blobs_and_strays(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Three separated blobs of 100 rows in 3 dims, then 6 strays far from them and each other."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 100)
    blobs = np.eye(3)[y] * 6 + rng.normal(size=(300, 3)) * 0.5
    strays = np.array([[40, 0, 0], [0, 40, 0], [0, 0, 40], [-40, 0, 0], [0, -40, 0], [0, 0, -40]], float)
    return np.vstack([blobs, strays]).astype(np.float32), np.concatenate([y, np.full(6, -1)])


def middle_of_grid(spec, n_fit: int) -> dict:
    grid = spec.grid(GridContext(ks=[3], n_fit=n_fit, dims=3))
    return grid[1] if len(grid) > 1 else grid[0]


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_every_registered_algorithm_keeps_the_estimator_contract(name):
    import sklearn.cluster
    import sklearn.mixture
    from sklearn.base import BaseEstimator, ClusterMixin, clone

    spec = ALGORITHMS.get(name)
    X, y = blobs_and_strays()
    params = middle_of_grid(spec, len(X))
    model = spec.make(params, 0)
    assert isinstance(model, BaseEstimator) and isinstance(model, ClusterMixin)
    assert not hasattr(sklearn.cluster, type(model).__name__) and not hasattr(sklearn.mixture, type(model).__name__)
    # parameters live in __init__: they survive clone and set_params, and the grid's k is n_clusters
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(**model.get_params()).get_params() == model.get_params()
    if spec.takes_k:
        assert model.get_params()["n_clusters"] == 3
    refit = spec.reseeded(model, 7)
    assert refit is not model and not hasattr(refit, "labels_")
    assert refit.get_params().get("random_state", 7) == 7 and spec.seeded == ("random_state" in model.get_params())
    # one label per row, the same labels for the same seed
    labels = model.fit_predict(X)
    assert labels.shape == (len(X),) and np.issubdtype(labels.dtype, np.integer)
    assert np.array_equal(labels, spec.make(params, 0).fit_predict(X))
    # noise (-1) only from algorithms whose spec says they produce it; most strays are noise there
    if spec.noise:
        assert (labels[y == -1] == -1).sum() >= 5
    else:
        assert (labels >= 0).all()
    if spec.path:  # one tree for every k gives what one fit per k gives
        assert np.array_equal(spec.make(params, 0).fit_path(X, [2, 3])[1], labels)
    if spec.assign == "predict":
        assert spec.make(params, 0).fit(X).predict(X[:5]).shape == (5,)


def test_the_sweep_refits_with_clones_under_other_seeds():
    from vehiclust.cluster.sweep import fit_grid

    spec = ALGORITHMS.get("kmeans")
    X, _ = blobs_and_strays()
    grid = [{"k": 2}, {"k": 3}]
    clones = [spec.reseeded(spec.make(p, 0), 5) for p in grid]
    via_clones = [lab for _, lab, _ in fit_grid(spec, X, grid, 5, clones)]
    direct = [lab for _, lab, _ in fit_grid(spec, X, grid, 5)]
    assert all(np.array_equal(a, b) for a, b in zip(via_clones, direct))


def test_an_unknown_algorithm_is_one_line_naming_the_known_ones():
    with pytest.raises(VehiclustError, match=r"unknown clustering algorithm 'kmean'; known: .*kmeans"):
        ClusterSettings(algorithms=("kmean",))


def sklearn_checked():
    """One estimator per class: the clusterers (at small sizes the checks' data allow) and the steps."""
    from vehiclust.cluster.preprocess import L2Normalize, PCAReduce, Standardize

    seen, out = set(), []
    for spec in ALGORITHMS.specs():
        if spec.factory not in seen:
            seen.add(spec.factory)
            out.append(spec.make({"k": 3} if spec.takes_k else {}, 0))
    return out + [Standardize(), L2Normalize(), PCAReduce(n_components=2)]


SKLEARN_CHECKS_EXPECTED_TO_FAIL = {
    "KMeansClusterer": {"check_non_transformer_estimators_n_iter": "faiss does not report its iterations"},
    "HDBSCANClusterer": {"check_clustering": "min_cluster_size=50 by default: the check's clusters are smaller"},
    "PCAReduce": {"check_methods_sample_order_invariance": "float32 products: BLAS may sum a row in another order "
                                                           "at another position (1e-7 apart; flaky)"},
    "OPTICSClusterer": {check: "min_samples=20 by default: the check fits on fewer rows" for check in (
        "check_n_features_in_after_fitting", "check_estimators_nan_inf", "check_clustering", "check_fit2d_1feature")},
}


@pytest.mark.slow
@parametrize_with_checks(sklearn_checked(), expected_failed_checks=lambda estimator: SKLEARN_CHECKS_EXPECTED_TO_FAIL.get(
    type(estimator).__name__, {}))
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


# -- preprocessing steps and the k-NN placement ------------------------------------------------

def test_a_preprocessing_chain_is_a_scikit_learn_pipeline_equal_to_its_steps_in_turn():
    from sklearn.pipeline import Pipeline

    from vehiclust.cluster.preprocess import L2Normalize, PCAReduce, make_pipeline_of

    X = np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32)
    chain = make_pipeline_of(parse("l2+pca:5w"), ClusterSettings())
    assert isinstance(chain, Pipeline) and [type(t) for _, t in chain.steps] == [L2Normalize, PCAReduce]
    by_hand = PCAReduce(n_components=5, whiten=True).fit(L2Normalize().transform(X))
    np.testing.assert_array_equal(chain.fit(X).transform(X), by_hand.transform(L2Normalize().transform(X)))


def test_knn_placement_is_a_distance_weighted_neighbour_mean():
    from sklearn.neighbors import KNeighborsRegressor

    from vehiclust.cluster.preprocess import KNNPlacement

    rng = np.random.default_rng(1)
    fitted, embedding, new = rng.normal(size=(300, 6)), rng.normal(size=(300, 2)), rng.normal(size=(50, 6))
    placed = KNNPlacement(10).fit(fitted, embedding).transform(new)
    reference = KNeighborsRegressor(10, weights="distance").fit(fitted, embedding).predict(new)
    np.testing.assert_allclose(placed, reference, rtol=1e-4, atol=1e-5)
    assert KNNPlacement(10).fit(fitted, embedding).transform(new[:0]).shape == (0, 2)  # nothing to place
    # a row the embedding was fitted on lands (almost) where it was embedded
    np.testing.assert_allclose(KNNPlacement(10).fit(fitted, embedding).transform(fitted[:3]), embedding[:3], atol=1e-3)


def test_the_report_maps_place_rows_with_the_clustering_placement(monkeypatch):
    from vehiclust.cluster import preprocess
    from vehiclust.report import maps

    calls = []
    original = preprocess.KNNPlacement.interpolate
    monkeypatch.setattr(preprocess.KNNPlacement, "interpolate",
                        lambda self, *a: calls.append(len(a[0])) or original(self, *a))
    reduced = np.random.default_rng(2).normal(size=(80, 5)).astype(np.float32)
    fitted = np.arange(80) < 60
    out = maps.embed(reduced, fitted, 2, maps.MapSettings(method="tsne"))
    assert calls == [20] and np.isfinite(out).all()
    distance, index = maps._neighbours(reduced, np.ones(80, bool))  # every row fitted: nothing to place
    assert distance.shape == index.shape == (0, 10)


# -- selection: the branches -------------------------------------------------------------------

def test_nothing_eligible_falls_back_to_the_best_score_and_says_so():
    runs = fake_runs({2: (0.3, 0.9), 3: (0.6, 0.9), 4: (0.4, 0.9)}).assign(min_cluster_share=0.0001)
    out = select_run(runs, ClusterSettings())
    chosen = out.query("selected")
    assert len(chosen) == 1 and chosen.iloc[0]["k"] == 3
    assert "no run met the eligibility rules" in chosen.iloc[0]["reason"]
    assert out["note"].str.contains("smallest cluster").sum() == 2  # the others keep why they were not eligible


def test_runs_with_more_noise_than_the_cap_are_not_selected():
    clean = fake_runs({2: (0.5, 0.9), 3: (0.55, 0.9), 4: (0.5, 0.9)})
    noisy = fake_runs({2: (0.9, 1.0), 3: (0.95, 1.0), 4: (0.9, 1.0)}, algorithm="hdbscan").assign(noise_share=0.6)
    out = select_run(pd.concat([clean, noisy], ignore_index=True), ClusterSettings(max_noise_share=0.5))
    assert out.query("selected").iloc[0]["algorithm"] == "kmeans"
    assert (out.loc[out["algorithm"] == "hdbscan", "note"] == "noise 60% > 50%").all()
    # under a looser cap the noisy family is eligible, and its score pays for the noise (coverage 0.4)
    loose = select_run(pd.concat([clean, noisy], ignore_index=True), ClusterSettings(max_noise_share=0.7))
    family = loose[loose["algorithm"] == "hdbscan"]
    assert family["note"].str.startswith("best of its family").sum() == 1
    assert family["score"].max() == pytest.approx(0.4 * (0.95 + 0.5) / 2)
    assert loose.query("selected").iloc[0]["algorithm"] == "kmeans"


def test_a_best_at_the_upper_edge_says_to_widen_the_grid():
    rising = fake_runs({2: (0.2, 0.9), 3: (0.3, 0.9), 4: (0.4, 0.9), 5: (0.5, 0.9)})
    chosen = select_run(rising, ClusterSettings()).query("selected").iloc[0]
    assert chosen["k"] == 5 and "at the upper edge of the k grid (2..5): the score rises" in chosen["reason"]
    assert "consider widening --k" in chosen["reason"]
    # an interior peak within tolerance is preferred to the upper edge, and the hint stays
    bump = fake_runs({2: (0.2, 0.9), 3: (0.48, 0.9), 4: (0.45, 0.9), 5: (0.5, 0.9)})
    chosen = select_run(bump, ClusterSettings()).query("selected").iloc[0]
    assert chosen["k"] == 3 and "interior peak k=3 preferred to the upper grid edge k=5" in chosen["reason"]
    assert "the score still rises at k_max" in chosen["reason"]


def test_families_are_ranked_by_score_and_the_runner_up_is_named():
    low = fake_runs({2: (0.3, 0.9), 3: (0.35, 0.9), 4: (0.3, 0.9)})
    high = fake_runs({2: (0.5, 0.9), 3: (0.6, 0.9), 4: (0.5, 0.9)}, algorithm="ward")
    other_space = fake_runs({2: (0.4, 0.9), 3: (0.45, 0.9), 4: (0.4, 0.9)}).assign(preprocessing="std+pca")
    out = select_run(pd.concat([low, high, other_space], ignore_index=True), ClusterSettings())
    chosen = out.query("selected").iloc[0]
    assert (chosen["algorithm"], chosen["k"]) == ("ward", 3)
    assert "best of 3 families, runner-up kmeans on std+pca (k=3)" in chosen["reason"]
    assert out["note"].str.startswith("best of its family").sum() == 3


def test_a_run_with_fewer_than_two_clusters_is_not_eligible():
    runs = fake_runs({2: (0.5, 0.9), 3: (0.6, 0.9), 4: (0.5, 0.9)})
    runs.loc[runs["k"] == 3, "n_clusters"] = 1
    out = select_run(runs, ClusterSettings())
    assert out.query("selected").iloc[0]["k"] != 3
    assert out.set_index("k")["note"][3] == "fewer than 2 clusters"


def test_one_score_formula_for_the_cluster_stage_and_the_comparison():
    from vehiclust.compare.table import common_score

    runs = fake_runs({2: (0.5, 0.8), 3: (-0.2, 1.4)}).assign(noise_share=[0.1, np.nan])
    expected = [0.9 * (0.5 + 0.5) / 2 * 0.8, 1.0 * (0.0 + 0.5) / 2 * 1.0]
    np.testing.assert_allclose(score(runs), expected)
    common = runs.rename(columns={"silhouette": "silhouette_common", "davies_bouldin": "davies_bouldin_common"})
    np.testing.assert_allclose(common_score(common), expected)
    np.testing.assert_allclose(selection_score(runs["silhouette"], runs["davies_bouldin"], runs["stability"],
                                               runs["noise_share"]), expected)


def test_the_overall_choice_without_a_comparison_takes_the_highest_score_then_stability():
    runs = pd.DataFrame({"descriptor": ["a", "a", "b", "c"], "selected": [False, True, True, True],
                         "score": [0.9, 0.5, 0.7, 0.7], "stability": [1.0, 1.0, 0.8, 0.9]})
    index, why = overall_choice(runs)
    assert index == 3 and why == "best overall: highest score among the 3 descriptors' selected runs"
    assert overall_choice(runs.iloc[[1]]) == (1, "best overall (the only descriptor)")
    assert overall_choice(runs.assign(selected=False)) == (None, "")
    # a delivering its finer level (0.5) of a coarse choice that scored 0.9: it competes with 0.9
    levels = runs.assign(level=["coarse", "fine", "coarse", "coarse"])
    assert overall_choice(levels)[0] == 1


def test_the_consensus_k_is_the_first_cut_that_agrees_most_within_the_grid():
    tried = []
    agreement = {2: 0.3, 3: 0.7, 4: 0.7, 5: 0.2, 6: 0.9}

    def cut(k):
        tried.append(k)
        return np.full(3, k)

    assert consensus_k(cut, lambda labels: agreement[int(labels[0])], n_rows=100, k_max=5)[0] == 3
    assert tried == [2, 3, 4, 5]  # never beyond the sweep's k_max
    assert consensus_k(cut, lambda labels: agreement[int(labels[0])], n_rows=4, k_max=30)[0] == 3  # n - 1


def test_a_stored_clustering_names_its_arrays_and_round_trips(tmp_path):
    from vehiclust.cluster import Clustering

    run = RunFolder(tmp_path)
    stored = Clustering(labels=np.array([0, 1, -1], np.int32), distance=np.array([0.5, 0.25, np.nan], np.float32),
                        centers=np.zeros((2, 4), np.float32), embedding_rows=np.array([0, 1]),
                        preprocessing="l2+pca", algorithm="kmeans", params="k=2")
    stored.save(CLUSTERING.path(run, "x"))
    with np.load(CLUSTERING.path(run, "x")) as data:  # the keys the outlier stage and notebooks read
        assert data.files == ["labels", "distance", "centers", "embedding_rows", "preprocessing", "algorithm", "params"]
    loaded = Clustering.load(CLUSTERING.path(run, "x"))
    assert (loaded.preprocessing, loaded.algorithm, loaded.params, loaded.distance_input) == ("l2+pca", "kmeans",
                                                                                               "k=2", None)
    np.testing.assert_array_equal(loaded.distance, stored.distance)
    np.testing.assert_array_equal(Clustering.load_labels(CLUSTERING.path(run, "x")), stored.labels)


@pytest.mark.parametrize("method, dims", [("ward", 8), ("ward", 40), ("average", 8), ("complete", 40)])
def test_linkage_trees_are_scipys(method, dims):
    """fastcluster builds the trees (its vector variant for Ward on few dimensions): the same
    merges and heights as scipy's linkage, so every cut is the same."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.datasets import make_blobs

    from vehiclust.cluster.algorithms import linkage_tree

    X, _ = make_blobs(1500, dims, centers=7, cluster_std=2.0, random_state=dims)
    ours, theirs = linkage_tree(X, method), linkage(X, method=method)
    np.testing.assert_allclose(ours[:, 2], theirs[:, 2], rtol=1e-9)
    for k in (2, 3, 7, 12, 30):
        assert adjusted_rand_score(fcluster(ours, k, "maxclust"), fcluster(theirs, k, "maxclust")) == 1.0


def test_families_run_side_by_side_in_worker_processes_with_the_same_runs(tmp_path, monkeypatch):
    """Small N: every family runs in a worker process (the parent runs none), and the runs are
    those of one process."""
    import vehiclust.cluster.sweep as sweep

    X, y = planted(900, 32, 4, seed=21)
    settings = ClusterSettings(preprocessing=LINEAR, algorithms=("kmeans", "ward"), k_max=8)
    monkeypatch.setattr(sweep, "family_workers", lambda threads, settings: 1)
    inline = cluster(make_run(tmp_path / "inline", {"x": X}, labels={"type": y.astype(str)}), ["x"], settings)

    def not_here(*args, **kwargs):
        raise AssertionError("a family ran in the parent process")

    monkeypatch.setattr(sweep, "family_workers", lambda threads, settings: 2)
    monkeypatch.setattr(sweep, "run_family", not_here)
    pooled = cluster(make_run(tmp_path / "pooled", {"x": X}, labels={"type": y.astype(str)}), ["x"], settings)
    timing = [c for c in inline.columns if c.endswith("seconds")]
    pd.testing.assert_frame_equal(inline.drop(columns=timing), pooled.drop(columns=timing))
    assert len(pooled) == 2 * 2 * len(settings.ks())



def test_the_next_descriptor_is_prepared_while_workers_finish_the_last_one(tmp_path, monkeypatch):
    """Families in worker processes: the second descriptor's spaces are built before the first
    descriptor is finished; the runs and the saved clusterings are those of one descriptor
    after the other (families in this process)."""
    import vehiclust.cluster.sweep as sweep

    X, y = planted(900, 32, 4, seed=21)
    Z, _ = planted(900, 16, 3, seed=22)
    settings = ClusterSettings(preprocessing=LINEAR, algorithms=("kmeans", "ward"), k_max=6)
    events = []
    start, finish = sweep.DescriptorSweep.start.__func__, sweep.DescriptorSweep.finish
    monkeypatch.setattr(sweep.DescriptorSweep, "start", classmethod(
        lambda cls, run, name, *args: events.append(("start", name)) or start(cls, run, name, *args)))
    monkeypatch.setattr(sweep.DescriptorSweep, "finish",
                        lambda self: events.append(("finish", self.name)) or finish(self))
    outcome = {}
    for workers in (1, 2):
        monkeypatch.setattr(sweep, "family_workers", lambda threads, settings, w=workers: w)
        events.clear()
        run = make_run(tmp_path / str(workers), {"x": X, "z": Z}, labels={"type": y.astype(str)})
        runs = cluster(run, ["x", "z"], settings)
        outcome[workers] = runs, list(events), [CLUSTERING.load(run, name).labels for name in "xz"]
    assert outcome[1][1] == [("start", "x"), ("finish", "x"), ("start", "z"), ("finish", "z")]
    assert outcome[2][1] == [("start", "x"), ("start", "z"), ("finish", "x"), ("finish", "z")]
    timing = [c for c in outcome[1][0].columns if c.endswith("seconds")]
    pd.testing.assert_frame_equal(outcome[1][0].drop(columns=timing), outcome[2][0].drop(columns=timing))
    assert all(np.array_equal(a, b) for a, b in zip(outcome[1][2], outcome[2][2]))

def test_a_workers_warnings_reach_the_parent_once_each():
    from vehiclust.executor.processes import in_worker, unpacked

    def warns():
        for _ in range(3):
            warnings.warn("did not converge", RuntimeWarning)
        return "runs"

    sent = in_worker(warns)  # what a worker sends back
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert unpacked(sent) == "runs"
    assert [(w.category, str(w.message)) for w in caught] == [(RuntimeWarning, "did not converge")]


def test_a_space_too_big_to_copy_to_workers_is_clustered_here(monkeypatch):
    import vehiclust.cluster.sweep as sweep
    from vehiclust.cluster.preprocess import Space

    monkeypatch.setattr(sweep, "family_workers", lambda threads, settings: 2)
    runner = sweep.FamilyRunner(1, ClusterSettings(), None)
    sent = []
    monkeypatch.setattr(sweep, "start", lambda pool, *args: sent.append(pool) or (lambda: []))
    monkeypatch.setattr(sweep, "WORKER_SPACE_BYTES", 1000)
    runner.start(Space("small", np.zeros((10, 4), np.float32), {}), ALGORITHMS.get("kmeans"))
    runner.start(Space("big", np.zeros((100, 4), np.float32), {}), ALGORITHMS.get("kmeans"))
    assert sent == [runner.pool, None] and runner.pool is not None
