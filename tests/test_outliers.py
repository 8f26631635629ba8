"""Descriptor-space detectors and the outlier verdict, on real photographs with planted defects."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from conftest import variants, write_bad_files, write_case_bundle
from vehiclust.collection import ingest
from vehiclust.describe import describe
from vehiclust.errors import VehiclustError
from vehiclust.outliers import (CHECKS, DetectorSettings, OutlierSettings, add_verdict, create_detector,
                                outlier_settings, outliers)
from vehiclust.outliers.evidence import NEEDS, load_evidence
from vehiclust.outliers.stage import build_checks
from vehiclust.outliers.verdict import severity
from vehiclust.outliers.detectors import DETECTORS, Neighbours, score_descriptor
from vehiclust.quality.describer import QUALITY_DESCRIPTOR
from vehiclust.robust import robust_z
from vehiclust.runfolder import RunFolder

LEADING = ["row", "path", "error"]
# ordinary photographs; see test_quality.PHOTOS for why not the others scikit-image bundles
ORDINARY = ("astronaut", "chelsea", "coffee", "retina")


# -- detectors -----------------------------------------------------------------------------------
def blobs(n: int, d: int, rng: np.random.Generator, outliers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(5, d)) * 4
    X = centres[rng.integers(0, 5, n)] + rng.normal(size=(n, d))
    planted = rng.choice(n, outliers, replace=False)
    X[planted] = rng.normal(size=(outliers, d)) * 12  # far from every blob
    return X.astype(np.float32), planted


@pytest.mark.parametrize("name", DETECTORS.names())
def test_each_detector_ranks_planted_outliers_first(name):
    rng = np.random.default_rng(0)
    X, planted = blobs(3000, 16, rng, outliers=30)
    settings = DetectorSettings(detectors=(name,), fit_sample=1500, pca_components=16, k=10)
    scores = score_descriptor(X, np.arange(len(X)), settings)[name]
    top = np.argsort(-scores)[:30]
    # ECOD looks at one coordinate at a time: it finds rows extreme in some coordinate, not rows
    # in an unusual direction with ordinary coordinates (after L2 normalisation, half of these)
    assert len(set(top) & set(planted)) >= (12 if name == "ecod" else 27)


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detector_contract(name):
    """Every registered detector: given only what its spec declares (the shared neighbours when
    it needs them), fitted on a sample, it scores every row, finite and the same on a refit."""
    spec = DETECTORS.get(name)
    assert spec.summary and set(spec.needs) <= {"neighbours", "seed"}
    X, _ = blobs(600, 8, np.random.default_rng(8), outliers=6)
    sample_rows = np.arange(0, 600, 2)
    self_rows = np.where(np.arange(600) % 2 == 0, np.arange(600) // 2, -1)

    def scores():
        neighbours = Neighbours(X[sample_rows], k=10) if "neighbours" in spec.needs else None
        detector = create_detector(name, DetectorSettings(seed=3)).fit(X[sample_rows], neighbours)
        return detector.score(X, neighbours, self_rows)

    first = scores()
    assert first.shape == (len(X),) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, scores())
    z = robust_z(first, spec.log_scale)
    assert np.isfinite(z).all()


def test_lof_matches_scikit_learn_on_the_sample():
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(1)
    X, _ = blobs(800, 8, rng, outliers=10)
    neighbours = Neighbours(X, k=10, backend="sklearn")
    ours = create_detector("lof").score(X, neighbours, np.arange(len(X)))
    reference = -LocalOutlierFactor(n_neighbors=10).fit(X).negative_outlier_factor_
    np.testing.assert_allclose(ours, reference, rtol=1e-4)


def test_faiss_and_sklearn_neighbours_agree():
    rng = np.random.default_rng(2)
    X, _ = blobs(2000, 12, rng)
    own = np.arange(len(X))
    d_faiss, _ = Neighbours(X[:1000], 5, "faiss").query(X, np.where(own < 1000, own, -1))
    d_sk, _ = Neighbours(X[:1000], 5, "sklearn").query(X, np.where(own < 1000, own, -1))
    np.testing.assert_allclose(d_faiss, d_sk, rtol=1e-3, atol=1e-3)


def test_ecod_is_the_empirical_tail_probability():
    rng = np.random.default_rng(3)
    sample = rng.normal(size=(500, 3))
    ecod = create_detector("ecod").fit(sample, None)
    x = np.array([[0.0, 0.0, 0.0], [4.0, -4.0, 0.0]])
    scores = ecod.score(x, None, np.array([-1, -1]))
    # brute force: -log of the share of the sample (the row counted) at least as extreme
    left = [(np.sum(sample[:, j] <= x[1, j]) + 1) / 501 for j in range(3)]
    right = [(np.sum(sample[:, j] >= x[1, j]) + 1) / 501 for j in range(3)]
    expected = max(-np.log(left).sum(), -np.log(right).sum())
    assert scores[1] >= expected - 1e-9 and scores[1] > 3 * scores[0]


def test_a_collection_without_outliers_gets_almost_none(tmp_path):
    """Outlier-free vectors (a case bundle without images): the stage's consensus flags (almost)
    no row as isolated; the same collection with planted far rows flags every one of them."""
    rng = np.random.default_rng(4)
    clean, _ = blobs(6000, 64, rng)
    planted_vectors, planted = blobs(6000, 64, rng, outliers=20)
    paths = [f"veriwild\\{i // 10:05d}\\{i:06d}.jpg" for i in range(6000)]
    bundle = write_case_bundle(tmp_path / "case", paths, {"clean": clean, "planted": planted_vectors})
    run = RunFolder(tmp_path / "run")
    ingest(bundle, run)
    isolated_only = OutlierSettings(checks=("isolated",))
    verdicts = outliers(run, ["clean"], settings=isolated_only)
    assert verdicts["is_outlier"].mean() < 0.002
    verdicts = outliers(run, ["planted"], settings=isolated_only)
    assert verdicts.loc[planted, "is_outlier"].all()
    assert (verdicts.loc[planted, "outlier_reasons"] == "isolated").all()


def test_unknown_detector_is_named():
    with pytest.raises(VehiclustError, match="unknown outlier detector 'svm'"):
        create_detector("svm")


# -- the verdict ---------------------------------------------------------------------------------
def test_verdict_scale_and_reasons():
    frame = pd.DataFrame({"dark_score": [0.1, 0.6, 0.3], "blurry_score": [0.0, 0.0, 0.95],
                          "motion_blur_score": [0.0, 0.7, 0.9]})
    out = add_verdict(frame.copy(), ["dark", "blurry", "motion_blur"],
                      {"dark": "dark", "blurry": "blurry", "motion_blur": "blurry"}, {"blurry": 0.9})
    assert out["is_outlier"].tolist() == [False, True, True]
    assert out["outlier_reasons"].tolist() == ["", "blurry;dark", "blurry"]  # in the documented order
    # blurry 0.95 at threshold 0.9 -> severity 0.75; motion 0.9 at 0.5 -> 0.9: the larger counts
    assert out.loc[2, "outlier_score"] == pytest.approx(0.9)
    assert out.loc[0, "outlier_score"] < 0.5
    fixed = add_verdict(frame.copy(), ["dark", "blurry"], contamination=0.34)
    assert fixed["is_outlier"].sum() == 1


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """40 ordinary JPEG crops of real photographs plus one of each defect, a copy, a re-encoded
    copy and the bad files; the describe stage's color_hist and quality descriptors; no clustering."""
    from skimage import data

    root = tmp_path_factory.mktemp("planted") / "images"
    rng = np.random.default_rng(5)
    for index, name in enumerate(ORDINARY):
        folder = root / f"{index + 1:05d}"
        folder.mkdir(parents=True)
        for j, variant in enumerate(variants(getattr(data, name)(), 10, rng)):
            variant.save(folder / f"{index * 100 + j:06d}.jpg", quality=90)
    good = sorted(root.rglob("*.jpg"))
    base = Image.open(good[3]).convert("RGB")
    a = np.asarray(base)
    (root / "zz").mkdir()
    defects = {
        "zz/blurry.jpg": jpeg(np.asarray(base.filter(ImageFilter.GaussianBlur(6)))),
        "zz/dark.jpg": jpeg((a * 0.1).astype(np.uint8)),
        "zz/overexposed.jpg": jpeg(np.clip(a.astype(float) * 3 + 60, 0, 255).astype(np.uint8)),
        "zz/noisy.jpg": jpeg(np.clip(a + np.random.default_rng(0).normal(0, 40, a.shape), 0, 255).astype(np.uint8)),
        "zz/small.jpg": jpeg(np.asarray(base.resize((20, 14)))),
        "zz/copy.jpg": good[5].read_bytes(),
        "zz/reencoded.jpg": jpeg(np.asarray(Image.open(good[8]).convert("RGB")), 80),
    }
    for name, content in defects.items():
        (root / name).write_bytes(content)
    expected_bad = write_bad_files(root, good[0].read_bytes())
    run = RunFolder(root.parent / "run")
    ingest(root, run)
    describe(run, ["color_hist", QUALITY_DESCRIPTOR])
    return run, root, good, expected_bad


def test_planted_defects_get_their_reasons(planted_run):
    run, root, good, expected_bad = planted_run
    verdicts = outliers(run, ["color_hist"]).set_index("path")
    reasons = verdicts["outlier_reasons"]
    assert "blurry" in reasons["zz/blurry.jpg"]
    assert "dark" in reasons["zz/dark.jpg"]
    assert "overexposed" in reasons["zz/overexposed.jpg"]
    assert "noisy" in reasons["zz/noisy.jpg"]
    assert "small" in reasons["zz/small.jpg"]
    assert "duplicate" in reasons["zz/copy.jpg"]
    copied = good[5].relative_to(root).as_posix()
    assert verdicts.at["zz/copy.jpg", "duplicate_of"] == copied
    assert "duplicate" not in reasons[copied]  # the original is not an outlier
    assert "near_duplicate" in reasons["zz/reencoded.jpg"]
    assert verdicts.at["zz/reencoded.jpg", "duplicate_of"] == good[8].relative_to(root).as_posix()
    for path in expected_bad:
        if path in verdicts.index and verdicts.at[path, "error"]:
            assert reasons[path].startswith("unreadable")
    ordinary = [p.relative_to(root).as_posix() for p in good]
    flagged = verdicts.loc[ordinary, "is_outlier"]
    assert flagged.mean() <= 0.1, verdicts.loc[ordinary][flagged][["outlier_score", "outlier_reasons"]]
    scores = verdicts["outlier_score"]
    assert scores.between(0, 1).all()
    assert (verdicts["is_outlier"] == (scores >= 0.5)).all()


def test_outliers_csv_columns_and_brisque(planted_run):
    run, *_ = planted_run
    verdicts = outliers(run, ["color_hist"])
    assert list(verdicts.columns[:3]) == LEADING
    score_columns = [c for c in verdicts.columns if c.endswith("_score") and c != "outlier_score"]
    assert {"unreadable_score", "small_score", "dark_score", "blurry_score", "duplicate_score",
            "near_duplicate_score", "isolated_score", "isolated_color_hist_score"} <= set(score_columns)
    tail = list(verdicts.columns[verdicts.columns.get_loc("outlier_score"):])
    assert tail[:3] == ["outlier_score", "is_outlier", "outlier_reasons"]
    assert {"brisque", "duplicate_of", "isolated_by"} <= set(tail)
    table = run.load_collection()
    measurable = (verdicts["error"] == "") & (np.minimum(table["width"], table["height"]) >= 16)
    assert pd.to_numeric(verdicts.loc[measurable, "brisque"]).notna().all()
    on_disk = pd.read_csv(run.path("outliers.csv"), keep_default_na=False)
    assert list(on_disk.columns) == list(verdicts.columns)


def test_contamination_fixes_the_share_and_settings_rerun_the_stage(planted_run):
    run, *_ = planted_run
    default = outliers(run, ["color_hist"])
    fixed = outliers(run, ["color_hist"], settings=OutlierSettings(contamination=0.3))
    unreadable = int((fixed["unreadable_score"] >= 1).sum())
    assert fixed["is_outlier"].sum() == max(round(0.3 * len(fixed)), unreadable)
    assert (fixed.loc[fixed["is_outlier"], "outlier_reasons"] != "").all()
    again = outliers(run, ["color_hist"])  # back to the defaults: recomputed, same verdicts
    pd.testing.assert_series_equal(again["is_outlier"], default["is_outlier"])
    with pytest.raises(VehiclustError, match="contamination"):
        outliers(run, ["color_hist"], settings=OutlierSettings(contamination=1.5))


def test_thresholds_reach_the_verdict(planted_run):
    run, *_ = planted_run
    lenient = outliers(run, ["color_hist"], settings=OutlierSettings(thresholds={"dark": 1.0, "low_contrast": 1.0,
                                                                                "low_information": 1.0}))
    row = lenient.set_index("path").loc["zz/dark.jpg"]
    assert "dark" not in row["outlier_reasons"] or row["dark_score"] >= 1.0


def test_without_the_quality_descriptor_only_size_duplicates_and_isolation(tmp_path, photo_folder):
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    describe(run, ["color_hist"])
    verdicts = outliers(run, ["color_hist"])
    assert "dark_score" not in verdicts and "small_score" in verdicts and "isolated_score" in verdicts
    assert "brisque" not in verdicts
    assert verdicts["is_outlier"].mean() <= 0.1


def test_no_vehicle_plugs_in_from_vehicle_type(planted_run):
    run, root, *_ = planted_run
    table = run.load_collection()
    probabilities = np.zeros((len(table), 3), dtype=np.float32)
    target = int(table.index[table["path"] == "zz/blurry.jpg"][0])
    probabilities[:, 0] = 1.0
    probabilities[target] = [0.05, 0.0, 0.95]
    run.save_descriptor("vehicle_type", probabilities, {"name": "vehicle_type", "kind": "imported",
                                                         "columns": ["car", "truck", "not_a_vehicle"]})
    try:
        verdicts = outliers(run, ["color_hist"]).set_index("path")
        assert verdicts.at["zz/blurry.jpg", "no_vehicle_score"] == pytest.approx(0.95)
        assert verdicts.at["zz/blurry.jpg", "outlier_reasons"].startswith("no_vehicle")
        assert (verdicts.drop(index="zz/blurry.jpg")["no_vehicle_score"] == 0).all()
    finally:
        run.descriptor_path("vehicle_type").unlink()
        run.descriptor_meta_path("vehicle_type").unlink()


def test_the_quality_describer_plugs_into_the_describe_stage(tmp_path, photo_folder):
    """Through the registry: ``describe(run, ["quality"])``, one row per image with BRISQUE first."""
    from vehiclust.quality.describer import QUALITY_DESCRIPTOR as name  # importing registers it

    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    describe(run, [name])
    matrix = run.load_descriptor(name)
    assert matrix.shape[0] == len(run.load_collection()) and np.isfinite(np.asarray(matrix)).all()
    assert run.descriptor_meta(name)["columns"][0] == "brisque"


def test_centroid_distance_of_the_selected_clustering_joins_isolation(planted_run):
    """The cluster stage's clusterings/<name>.npz (labels, distance) is one more detector."""
    run, *_ = planted_run
    table = run.load_collection()
    labels = np.zeros(len(table), dtype=np.int32)
    distance = np.random.default_rng(0).normal(1.0, 0.05, len(table)).astype(np.float32)
    far = int(table.index[table["path"] == "zz/overexposed.jpg"][0])
    distance[far] = 50.0
    path = run.root / "clusterings" / "color_hist.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez(path, labels=labels, distance=distance)
    try:
        verdicts = outliers(run, ["color_hist"], settings=OutlierSettings(detectors=DetectorSettings(detectors=())))
        assert "color_hist:centroid" in verdicts.at[far, "isolated_by"]
        assert verdicts.at[far, "isolated_score"] >= 0.5
        assert (verdicts.drop(index=far)["isolated_score"] < 0.5).mean() > 0.95
    finally:
        path.unlink()


def test_settings_from_command_line_options(planted_run):
    settings = outlier_settings(0.05, ["dark=0.7", "no_vehicle=0.9", "isolated=0.6"], "none", "knn,ecod")
    assert settings.thresholds == {"dark": 0.7, "no_vehicle": 0.9, "isolated": 0.6} and settings.group_by is None
    assert settings.threshold("dark") == 0.7 and settings.threshold("blurry") == 0.5
    assert settings.detectors.detectors == ("knn", "ecod") and settings.contamination == 0.05
    for bad, message in ((["dark"], "CHECK=VALUE"), (["dark=2"], "CHECK=VALUE"), (["darkness=0.5"], "unknown check")):
        with pytest.raises(VehiclustError, match=message):
            outlier_settings(thresholds=bad)
    with pytest.raises(VehiclustError, match="unknown svm"):
        outlier_settings(detectors="knn,svm")
    run, *_ = planted_run
    strict = outliers(run, ["color_hist"], settings=outlier_settings(thresholds=["isolated=0.05"]))
    assert strict["outlier_reasons"].str.contains("isolated").sum() > 0


def test_cluster_distance_z_when_most_members_are_equally_far():
    """Over half of a cluster at one distance (copies of one image) makes the MAD 0; the one
    farther member must get an ordinary z, not one in the billions."""
    from vehiclust.outliers.evidence import cluster_distance_z

    labels = np.zeros(10, dtype=np.int64)
    distance = np.array([1.0] * 7 + [1.1, 1.2, 1.3])
    z = cluster_distance_z(labels, distance)
    assert np.isfinite(z).all() and 0 < z[-1] < 10 and (z[:7] == 0).all()


def test_robust_z_is_median_and_scaled_mad():
    from scipy.stats import median_abs_deviation

    values = np.random.default_rng(7).lognormal(size=500)
    expected = (np.log(values) - np.median(np.log(values))) / median_abs_deviation(np.log(values), scale="normal")
    np.testing.assert_allclose(robust_z(values, log_scale=True), expected, rtol=1e-5)
    reference = np.arange(100)
    assert np.median(robust_z(values, reference=reference)[reference]) == pytest.approx(0.0)


# -- the check registry's contract -----------------------------------------------------------------
CONTRACT_NAMES = ["color_hist", "imported"]


@pytest.fixture(scope="module")
def full_run(planted_run, tmp_path_factory):
    """The planted run (copied) with every input a check can read: an imported descriptor with
    an invalid row, vehicle_type probabilities and a clustering of color_hist."""
    import shutil

    run = RunFolder(shutil.copytree(planted_run[0].root, tmp_path_factory.mktemp("full") / "run"))
    n = len(run.load_collection())
    rng = np.random.default_rng(9)
    run.save_descriptor("imported", rng.normal(size=(n, 6)).astype(np.float32),
                        {"name": "imported", "kind": "imported", "invalid": {"3": "NaN in the file"}})
    not_vehicle = rng.uniform(0, 1, n) ** 4
    run.save_descriptor("vehicle_type", np.column_stack([1 - not_vehicle, not_vehicle]).astype(np.float32),
                        {"name": "vehicle_type", "kind": "imported", "columns": ["car", "not_a_vehicle"]})
    (run.root / "clusterings").mkdir(exist_ok=True)  # (an earlier test may have left it, empty)
    np.savez(run.root / "clusterings" / "color_hist.npz", labels=rng.integers(0, 3, n),
             distance=rng.lognormal(0, 0.3, n).astype(np.float32))
    return run


def test_every_check_runs_on_the_full_run(full_run):
    verdicts = outliers(full_run, CONTRACT_NAMES)
    assert [c for c in verdicts.columns if c.endswith("_score")][:len(CHECKS)] == [f"{c}_score" for c in CHECKS]
    assert verdicts.at[3, "invalid_vector_score"] == 1.0 and "invalid_vector" in verdicts.at[3, "outlier_reasons"]


@pytest.mark.parametrize("name", CHECKS.names())
def test_check_contract(full_run, name):
    """Every registered check, as scikit-learn's check_estimator does for estimators: given only
    the evidence its spec declares, it scores every row, finite, in [0, 1], the same twice."""
    spec = CHECKS.get(name)
    assert spec.summary and spec.code and 0.0 < spec.threshold <= 1.0 and set(spec.needs) <= set(NEEDS)
    table = full_run.load_collection()

    def scores():
        evidence = load_evidence(full_run, table, CONTRACT_NAMES, set(spec.needs))
        result = spec.factory(threshold=spec.threshold).score(evidence)
        assert result is not None, f"{name}: its declared needs {spec.needs} are not enough"
        return result.score

    first = scores()
    assert first.shape == (len(table),) and np.isfinite(first).all()
    assert ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(first, scores())


@pytest.mark.parametrize("name", CHECKS.names())
def test_threshold_option_works_for_every_check(full_run, name):
    """--threshold NAME=VALUE reaches the verdict: the check flags exactly the rows scoring at
    least VALUE, and outlier_score is the severity at VALUE. VALUE is one of the check's scores
    that flags other rows than its default threshold does, where its scores have one (binary
    checks flag the same rows at every threshold)."""
    column = f"{name}_score"
    default = outliers(full_run, CONTRACT_NAMES, settings=OutlierSettings(checks=(name,)))[column].to_numpy()
    at_default = default >= CHECKS.get(name).threshold
    splitting = [v for v in np.unique(default[default > 0]) if ((default >= v) != at_default).any()]
    value = float(splitting[len(splitting) // 2]) if splitting else 1.0
    settings = dataclasses.replace(outlier_settings(thresholds=[f"{name}={value}"]), checks=(name,))
    assert [check.threshold for _, check in build_checks(settings)] == [value]
    verdicts = outliers(full_run, CONTRACT_NAMES, settings=settings)
    scores = verdicts[column].to_numpy()
    np.testing.assert_array_equal(verdicts["is_outlier"].to_numpy(), scores >= value)
    np.testing.assert_allclose(verdicts["outlier_score"], np.round(severity(scores, value), 4))
    assert set(verdicts.loc[verdicts["is_outlier"], "outlier_reasons"]) <= {CHECKS.get(name).code}


def test_unknown_thresholds_and_options_are_named(full_run):
    with pytest.raises(VehiclustError, match="thresholds for unknown checks"):
        outliers(full_run, CONTRACT_NAMES, settings=OutlierSettings(thresholds={"darkness": 0.5}))
    with pytest.raises(VehiclustError, match="check no_vehicle: threshold must be in"):
        outliers(full_run, CONTRACT_NAMES, settings=OutlierSettings(thresholds={"no_vehicle": 1.5}))
    with pytest.raises(VehiclustError, match="not options"):
        outliers(full_run, CONTRACT_NAMES, settings=OutlierSettings(options={"dark": {"threshold": 0.5}}))
    with pytest.raises(VehiclustError, match="check isolated: .*'zz'"):
        outliers(full_run, CONTRACT_NAMES, settings=OutlierSettings(options={"isolated": {"zz": 3}}))


def test_a_clustering_that_does_not_fit_the_collection_is_named(full_run, tmp_path):
    import shutil

    run = RunFolder(shutil.copytree(full_run.root, tmp_path / "run"))
    run.path("outliers.csv").unlink(missing_ok=True)  # (the stage is current while the cluster stage's key is)
    path = run.root / "clusterings" / "color_hist.npz"
    np.savez(path, labels=np.zeros(3, dtype=np.int64), distance=np.ones(3))
    with pytest.raises(VehiclustError, match="3 rows, the collection has"):
        outliers(run, CONTRACT_NAMES)
    path.write_bytes(b"not a zip")
    with pytest.raises(VehiclustError, match=r"color_hist\.npz: unreadable .*`vehiclust cluster"):
        outliers(run, CONTRACT_NAMES)


def test_a_row_s_projection_does_not_depend_on_the_batch_it_is_scored_in():
    """Shards of other sizes (the Ray executor) and duplicates of sample rows must rank the same:
    in float32 the PCA product's last bit depended on the batch's row count (OpenBLAS, AMD EPYC),
    and ECOD's ranks then moved (tests/test_ray.py failed there)."""
    from sklearn.decomposition import PCA

    from vehiclust.outliers.detectors import reduce_exactly

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 48)).astype(np.float32)
    pca = PCA(8, random_state=0).fit(X[:1500])
    whole = reduce_exactly(pca, X)
    assert whole.dtype == np.float32
    for size in (1, 7, 500, 1500, 2999):
        parts = np.concatenate([reduce_exactly(pca, X[s:s + size]) for s in range(0, len(X), size)])
        np.testing.assert_array_equal(parts, whole)
