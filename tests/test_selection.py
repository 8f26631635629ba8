"""What the selection benchmark (benchmarks/selection_yardsticks.py) relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from test_cluster import LINEAR, make_run, planted

from vehiclust.cluster import ClusterSettings, cluster
from vehiclust.cluster.stage import ClusterStage
from vehiclust.runfolder import CLUSTERING, RUN_LABELS, RunFolder
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


# -- the overall choice (compare.table's rule on the footing of compare.footing) ----------------

SMALL_SWEEP = dict(preprocessing=("l2+pca",), algorithms=("kmeans",), k_values=(2, 3, 4, 6, 8))


def rich_binary_noise(n: int = 600, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """rich: 6 planted groups; binary: one clean bimodal column and nothing else; noise: nothing."""
    rng = np.random.default_rng(seed)
    rich, group = planted(n, 16, 6, seed=seed, separation=6.0)
    binary = rng.normal(size=(n, 12)).astype(np.float32)
    binary[:, 0] += 6.0 * rng.integers(0, 2, n)
    return {"rich": rich, "binary": binary, "noise": rng.normal(size=(n, 32)).astype(np.float32)}, group


def compared(tmp_path, descriptors: dict[str, np.ndarray], seed: int = 0) -> tuple[pd.DataFrame, dict]:
    from vehiclust.compare import compare
    from vehiclust.compare.settings import CompareSettings
    from vehiclust.runfolder import BEST

    run = make_run(tmp_path, descriptors)
    settings = ClusterSettings(**SMALL_SWEEP)
    cluster(run, list(descriptors), settings)
    comparison = compare(run, list(descriptors), settings, CompareSettings(seed=seed, consensus=False))
    return comparison.set_index("name"), BEST.load(run)


def test_noise_and_a_lone_binary_attribute_never_win_over_planted_groups(tmp_path):
    descriptors, group = rich_binary_noise()
    comparison, best = compared(tmp_path, descriptors)
    assert best["name"] == "rich" and best["measure"] == "excess_score"
    assert comparison.loc["noise", "eligible_note"].startswith("no structure")
    assert comparison.loc["binary", "excess_score"] < comparison.loc["rich", "excess_score"]
    assert "noise" in best["not_eligible"] and "rich" not in best["not_eligible"]
    assert adjusted_rand_score(group, CLUSTERING.load(RunFolder(tmp_path / "run"), "rich").labels) > 0.9


def test_flat_data_says_weak(tmp_path):
    rng = np.random.default_rng(4)
    _, best = compared(tmp_path, {"gauss": rng.normal(size=(500, 32)).astype(np.float32),
                                  "uniform": rng.uniform(size=(500, 8)).astype(np.float32)})
    assert best["reason"].startswith("weak structure") and set(best["not_eligible"]) == {"gauss", "uniform"}


def test_a_descriptor_that_does_not_apply_is_never_delivered(tmp_path, monkeypatch):
    import vehiclust.outliers.evidence as evidence

    descriptors, _ = rich_binary_noise(seed=2)
    # vehicle_type (a vehicle-tagged descriptor) carries the planted groups, but 90% of the images hold no vehicle
    descriptors = {"vehicle_type": descriptors["rich"], "noise": descriptors["noise"],
                   "other": planted(600, 8, 3, seed=5, separation=1.5)[0]}
    share = np.r_[np.full(540, 0.95), np.zeros(60)]
    monkeypatch.setattr(evidence, "load_not_a_vehicle", lambda run, table: share)
    comparison, best = compared(tmp_path, descriptors)
    assert not comparison.loc["vehicle_type", "applies"]
    assert comparison.loc["vehicle_type", "excess_score"] > comparison.loc["other", "excess_score"]
    assert best["name"] == "other" and best["not_eligible"]["vehicle_type"].startswith("does not apply: 90%")
    assert not best["reason"].startswith("weak") and "other" not in best["not_eligible"]


def test_a_tie_is_declared_and_broken_the_same_way_whatever_the_seed(tmp_path):
    X, _ = planted(600, 16, 5, seed=7, separation=6.0)
    rng = np.random.default_rng(0)
    twins = {"first": X, "second": X + rng.normal(scale=1e-3, size=X.shape).astype(np.float32)}
    for seed in (0, 1, 2):
        comparison, best = compared(tmp_path / str(seed), twins, seed=seed)
        assert best["name"] == "first" and best["tie_with"] == ["second"], best["reason"]
        assert comparison["tie"].all() and "TIE with second" in best["reason"]


def test_a_clusterings_footing_does_not_change_with_the_descriptors_beside_it(tmp_path):
    # digits' failure: in a common space of every descriptor, the uninformative ones held most of
    # the variance and efficientnet_lite0's fine clustering measured below structureless data
    rng = np.random.default_rng(0)
    strong, group = planted(600, 16, 8, seed=2, separation=2.0)
    beside = {f"noise_{i}": rng.normal(size=(600, 48)).astype(np.float32) for i in range(3)}
    alone, _ = compared(tmp_path / "one", {"strong": strong, "noise_0": beside["noise_0"]})
    crowded, best = compared(tmp_path / "three", {"strong": strong, **beside})
    assert crowded.loc["strong", "excess_space"] == "own"
    assert crowded.loc["strong", "excess"] == alone.loc["strong", "excess"] > 0.1
    assert best["name"] == "strong" and set(best["not_eligible"]) == set(beside)
    assert adjusted_rand_score(group, CLUSTERING.load(RunFolder(tmp_path / "three" / "run"), "strong").labels) > 0.9


# -- the fine level (cluster.levels) -----------------------------------------------------------

HIERARCHY_PCA = ("l2+pca:0.999",)


def hierarchy(n: int = 900, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 broad groups far apart, each of 3 finer groups at equal distances from each other (random
    offsets would make an accidental middle level: two close finer groups and a third further):
    (X, coarse, fine). The finer groups hold about 2% of the variance, so the sweeps below keep
    99.9% of it (``HIERARCHY_PCA``): PCA's default 90% would drop the fine level's directions."""
    rng = np.random.default_rng(seed)
    coarse_centres = rng.normal(size=(3, 12)) * 30
    offsets = np.concatenate([np.linalg.qr(rng.normal(size=(12, 3)))[0].T for _ in range(3)]) * 8
    fine_centres = coarse_centres.repeat(3, axis=0) + offsets
    fine = rng.integers(0, 9, n)
    return (fine_centres[fine] + rng.normal(size=(n, 12))).astype(np.float32), fine // 3, fine


def test_the_nesting_share_is_the_contingency_tables_row_maxima():
    from vehiclust.cluster.levels import nesting_share

    rng = np.random.default_rng(5)
    coarse, fine = rng.integers(-1, 4, 3000), rng.integers(-1, 11, 3000)
    keep = (coarse >= 0) & (fine >= 0)
    expected = pd.crosstab(fine[keep], coarse[keep]).max(axis=1).sum() / keep.sum()
    assert nesting_share(coarse, fine) == expected and nesting_share(fine // 3, fine) == 1.0


def test_a_real_finer_level_is_delivered_and_the_coarse_one_it_nests_in_is_kept(tmp_path):
    from vehiclust.cluster.levels import nesting_share
    from vehiclust.runfolder import COARSE_CLUSTERING

    X, coarse, fine = hierarchy()
    run = make_run(tmp_path, {"d": X})
    runs = cluster(run, ["d"], ClusterSettings(preprocessing=HIERARCHY_PCA, algorithms=("kmeans", "ward"),
                                               k_values=(2, 3, 4, 6, 9, 12)))
    delivered, broad = CLUSTERING.load(run, "d").labels, COARSE_CLUSTERING.load(run, "d").labels
    assert adjusted_rand_score(fine, delivered) > 0.9 and adjusted_rand_score(coarse, broad) > 0.95
    assert nesting_share(broad, delivered) > 0.95
    assert list(runs["level"].value_counts().sort_index().items()) == [("", len(runs) - 2), ("coarse", 1), ("fine", 1)]
    selected = runs[runs["selected"]]
    assert len(selected) == 1 and selected["level"].iloc[0] == "fine" and selected["k"].iloc[0] == 9
    assert selected["reason"].iloc[0].startswith("fine level of the score's choice: k=9")
    assert runs.loc[runs["level"] == "coarse", "reason"].iloc[0].startswith("coarse level of the delivered run")


def test_a_density_based_coarse_choice_without_k_can_have_a_finer_level():
    from vehiclust.cluster.levels import deliver_levels
    from vehiclust.cluster.preprocess import Space

    X, coarse, fine = hierarchy()
    runs = pd.DataFrame({"preprocessing": ["p", "p"], "algorithm": ["hdbscan", "kmeans"], "params": ["m=5", "k=9"],
                         "k": pd.array([pd.NA, 9], dtype="Int64"), "n_clusters": [3, 9], "score": [0.9, 0.7],
                         "selected": [True, False], "note": ["best of its family", "best of its family"],
                         "reason": ["the score's choice", ""]})
    space = Space("p", X, {})
    delivered, kept = deliver_levels(runs, [(space, coarse.astype(np.int32)), (space, fine.astype(np.int32))], 0)
    assert kept == 0 and delivered["selected"].tolist() == [False, True]
    assert "the score's choice hdbscan on p (3 clusters)" in delivered.at[1, "reason"]


def test_asking_for_few_clusters_keeps_the_coarse_level(tmp_path):
    from vehiclust.runfolder import COARSE_CLUSTERING

    X, coarse, _ = hierarchy()
    run = make_run(tmp_path, {"d": X})
    cluster(run, ["d"], ClusterSettings(preprocessing=HIERARCHY_PCA, algorithms=("kmeans", "ward"),
                                        k_values=(2, 3, 4, 6, 9, 12), prefer_few_clusters=True))
    assert adjusted_rand_score(coarse, CLUSTERING.load(run, "d").labels) > 0.95
    assert not COARSE_CLUSTERING.exists(run, "d")


def test_too_few_images_inside_the_coarse_clusters_give_no_finer_level(tmp_path):
    from vehiclust.cluster.levels import MIN_ROWS_INSIDE
    from vehiclust.runfolder import COARSE_CLUSTERING

    X, coarse, _ = hierarchy(n=72)  # 3 broad groups of about 24 images: too few to see a level inside
    assert np.bincount(coarse).max() < MIN_ROWS_INSIDE
    run = make_run(tmp_path, {"d": X})
    runs = cluster(run, ["d"], ClusterSettings(preprocessing=HIERARCHY_PCA, algorithms=("kmeans",),
                                               k_values=(2, 3, 4, 6, 9, 12)))
    assert not COARSE_CLUSTERING.exists(run, "d") and runs.loc[runs["selected"], "k"].iloc[0] == 3


def test_no_finer_level_on_flat_clusters(tmp_path):
    from vehiclust.runfolder import COARSE_CLUSTERING

    X, coarse, _ = hierarchy()
    noise = np.random.default_rng(1).normal(size=X.shape)
    flat = (np.eye(12, dtype=np.float32)[coarse * 4] * 60 + noise).astype(np.float32)
    run = make_run(tmp_path, {"d": flat})
    runs = cluster(run, ["d"], ClusterSettings(**SMALL_SWEEP))
    assert not COARSE_CLUSTERING.exists(run, "d") and (runs["level"] != "fine").all()
    assert adjusted_rand_score(coarse, CLUSTERING.load(run, "d").labels) > 0.95


def test_the_report_says_how_the_choice_was_made_and_how_the_levels_nest(tmp_path):
    from jinja2 import Environment, PackageLoader

    from vehiclust.compare import compare
    from vehiclust.compare.settings import CompareSettings
    from vehiclust.compare.best import read_runs
    from vehiclust.report.selection_view import selection_context

    X, _, _ = hierarchy(seed=3)
    run = make_run(tmp_path, {"d": X, "noise": np.random.default_rng(2).normal(size=X.shape).astype(np.float32)})
    settings = ClusterSettings(preprocessing=HIERARCHY_PCA, algorithms=("kmeans", "ward"), k_values=(2, 3, 4, 6, 9, 12))
    cluster(run, ["d", "noise"], settings)
    compare(run, ["d", "noise"], settings, CompareSettings(consensus=False))
    context = selection_context(run)
    assert context["best"] == "d" and [n for n, _ in context["excluded"]] == ["noise"]
    assert context["levels"]["coarse_k"] == 3 and context["levels"]["fine_k"] == 9
    html = Environment(loader=PackageLoader("vehiclust.report", "templates")).get_template(
        "_selection.html").render(selection=context)
    assert "Two levels: 3 broad clusters, 9 finer ones" in html and "noise: no structure" in html
    assert "excess_score" in html and "cluster_coarse" in html
    assert context["sweep_ties"] == [(d, t) for d, t in zip(*[read_runs(run).query("selected")[c].fillna("")
                                                             for c in ("descriptor", "tie_with")]) if t]


def test_a_tie_between_families_goes_to_the_family_listed_first_whatever_the_seed(tmp_path):
    X, _ = planted(500, 8, 4, seed=11, separation=12.0)  # kmeans and ward find the same clusters
    picks = set()
    for seed in (0, 1, 2):
        for algorithms in (("kmeans", "ward"), ("ward", "kmeans")):
            run = make_run(tmp_path / f"{seed}-{algorithms[0]}", {"d": X})
            runs = cluster(run, ["d"], ClusterSettings(preprocessing=("l2+pca",), algorithms=algorithms,
                                                       k_values=(2, 3, 4, 5, 6), seed=seed))
            chosen = runs[runs["selected"]].iloc[0]
            k = int(chosen["k"])
            assert chosen["algorithm"] == algorithms[0], chosen["reason"]
            assert chosen["tie_with"] == f"{algorithms[1]} on l2+pca (k={k})" and "TIE with" in chosen["reason"]
            other = runs[runs["tie_with"].fillna("") == f"{algorithms[0]} on l2+pca (k={k})"]
            assert list(other["algorithm"]) == [algorithms[1]]
            picks.add(k)
    assert len(picks) == 1  # the same k for every seed and order
