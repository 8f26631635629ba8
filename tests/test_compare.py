"""Comparison and mixtures: block normalisation, fusion, weights, agreement, consensus, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from conftest import write_case_bundle
from vehiclust.cli import app
from vehiclust.compare.agreement import agreement_table, contingency_frame
from vehiclust.compare.attributes import sentence
from vehiclust.compare.consensus import consensus
from vehiclust.compare.fusion import BlockScaler, fuse, store_mixture
from vehiclust.compare.settings import CompareSettings, parse_mix, resolve_mix
from vehiclust.compare.table import apply_best
from vehiclust.compare.weights import choose_weights, split_tuning_rows
from vehiclust.errors import VehiclustError
from vehiclust.results import load_run
from vehiclust.runfolder import RunFolder, read_json

N_VEHICLES, PER_VEHICLE = 240, 5


def two_label_data(seed: int = 0):
    """Vehicles with two independent labels: a wide, large-scale block carries only the first
    (4 classes), a narrow small-scale block only the second (3 classes)."""
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, 4, N_VEHICLES), rng.integers(0, 3, N_VEHICLES)
    first_centres, second_centres = rng.normal(size=(4, 300)) * 0.5, rng.normal(size=(3, 5)) * 3
    rows_first, rows_second = np.repeat(first, PER_VEHICLE), np.repeat(second, PER_VEHICLE)
    wide = (first_centres[rows_first] + rng.normal(size=(len(rows_first), 300))) * 50
    narrow = second_centres[rows_second] + rng.normal(size=(len(rows_second), 5))
    ids = np.repeat(np.arange(N_VEHICLES), PER_VEHICLE)
    return wide.astype(np.float32), narrow.astype(np.float32), rows_first, rows_second, ids


def run_folder_with(tmp_path, **matrices) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    for name, matrix in matrices.items():
        run.save_descriptor(name, matrix, {"name": name, "kind": "imported", "fingerprint": name})
    return run


@pytest.mark.parametrize("norm", ["variance", "unit"])
def test_block_normalisation_equalises_blocks_whatever_their_width(norm):
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(2000, 500)).astype(np.float32) * 40 + 7
    narrow = rng.normal(size=(2000, 4)).astype(np.float32) * 0.01
    totals = [BlockScaler(norm, max_dims=64).fit(b).transform(b).var(0).sum() for b in (wide, narrow)]
    assert totals == pytest.approx([1.0, 1.0], rel=1e-3)


def test_fused_blocks_share_the_variance_as_weighted(tmp_path):
    wide, narrow, *_ = two_label_data()
    run = run_folder_with(tmp_path, wide=wide, narrow=narrow)
    rows = np.arange(len(wide))
    fused, info = fuse(run, ("narrow", "wide"), np.array([1.0, 3.0]), rows, mix_dims=10_000)
    narrow_dims = info["block_dims"]["narrow"]
    shares = np.array([fused[:, :narrow_dims].var(0).sum(), fused[:, narrow_dims:].var(0).sum()])
    assert shares / shares.sum() == pytest.approx([0.25, 0.75], abs=1e-3)
    assert info["weights"] == [0.25, 0.75]


def test_mixture_recovers_the_joint_label_better_than_either_block_or_raw_concatenation(tmp_path):
    wide, narrow, first, second, _ = two_label_data()
    joint = first * 3 + second
    run = run_folder_with(tmp_path, wide=wide, narrow=narrow)
    fused, _ = fuse(run, ("narrow", "wide"), np.array([1.0, 1.0]), np.arange(len(wide)))

    def ari(X):
        return adjusted_rand_score(joint, KMeans(12, n_init=4, random_state=0).fit_predict(X))

    mixture, raw = ari(fused), ari(np.hstack([wide, narrow]))
    assert mixture > 0.9
    assert mixture > max(ari(wide), ari(narrow)) + 0.3
    assert mixture > raw + 0.3  # the wide block drowns the narrow one without per-block scaling


def test_weights_measured_on_held_out_vehicles_turn_down_a_block_that_carries_nothing(tmp_path):
    wide, narrow, first, second, ids = two_label_data()
    noise = np.random.default_rng(5).normal(size=wide.shape).astype(np.float32) * 50
    run = run_folder_with(tmp_path, signal=narrow, noise=noise)
    table = pd.DataFrame({"vehicle_id": ids.astype(str)})
    tuning, evaluation = split_tuning_rows(np.arange(len(ids)), table["vehicle_id"], 0.3, 10_000, 0)
    assert not set(ids[tuning]) & set(ids[evaluation])  # whole vehicles on one side
    scalers = [BlockScaler().fit(run.load_descriptor(n)[tuning]) for n in ("noise", "signal")]
    weights, candidates = choose_weights(run, ("noise", "signal"), scalers, tuning, "identity", table,
                                         "vehicle_id", list(range(2, 9)), 0)
    assert weights[1] > weights[0]
    assert candidates["chosen"].sum() == 1


def test_stored_mixture_is_a_descriptor_with_provenance(tmp_path):
    wide, narrow, *_ = two_label_data()
    narrow[3] = 0.0
    run = run_folder_with(tmp_path, wide=wide, narrow=narrow)
    run.save_descriptor_meta("narrow", {"name": "narrow", "kind": "imported", "invalid": {"3": "unreadable"}})
    meta = store_mixture(run, "mix_narrow+wide", ("narrow", "wide"), np.array([1.0, 1.0]), "k", "variance",
                         64, 32, 0, None)
    matrix = run.load_descriptor("mix_narrow+wide")
    assert matrix.shape == (len(wide), 32) and meta["kind"] == "mixture"
    assert meta["blocks"] == ["narrow", "wide"] and meta["invalid"] == {"3": "invalid in a block of the mixture"}
    assert not matrix[3].any() and np.abs(matrix[4]).sum() > 0


def test_agreement_of_a_clustering_with_itself_and_a_relabelling_is_one():
    labels = np.random.default_rng(0).integers(0, 6, 3000)
    relabelled = np.array([3, 5, 0, 1, 4, 2])[labels]
    other = np.random.default_rng(1).integers(0, 6, 3000)
    table = agreement_table({"a": labels, "b": labels, "c": relabelled, "d": other}, sample=1000, seed=0)
    same = table[table["b"] != "d"]
    assert np.allclose(same[["ari", "ami", "nmi"]].to_numpy(), 1.0)
    assert (table.loc[table["b"] == "d", "ari"].abs() < 0.05).all()


def test_contingency_counts_where_each_cluster_went():
    frame = contingency_frame(np.array([0, 0, 1, 1, -1]), np.array([1, 1, 0, 1, 0]))
    assert frame.loc[0, 1] == 2 and frame.loc[1, 0] == 1 and frame.loc[-1, 0] == 1 and frame.to_numpy().sum() == 5


def test_consensus_of_identical_partitions_is_that_partition():
    labels = np.repeat(np.arange(7), 300)
    result = consensus(np.column_stack([labels, labels, np.array([6, 5, 4, 3, 2, 1, 0])[labels]]), 500, seed=0)
    assert result["k"] == 7
    assert adjusted_rand_score(labels, result["labels"]) == 1.0
    assert result["stability"] == 1.0


def test_consensus_of_two_crossed_partitions_is_their_product():
    first, second = np.repeat(np.arange(3), 400), np.tile(np.repeat(np.arange(2), 200), 3)
    result = consensus(np.column_stack([first, second]), 600, seed=0)
    assert adjusted_rand_score(first * 2 + second, result["labels"]) == 1.0


def test_mix_grammar_and_short_names():
    available = ["efficientnet_lite0", "vehicle_color", "vehicle_type"]
    assert resolve_mix(parse_mix("type+color"), available) == (("vehicle_color", "vehicle_type"), None)
    assert resolve_mix(parse_mix("type:2+lite0:1"), available) == (("efficientnet_lite0", "vehicle_type"), (1.0, 2.0))
    assert resolve_mix(parse_mix("all"), available)[0] == tuple(available)
    assert resolve_mix(parse_mix("type+color"), ["vdc_type", "vdc_color"])[0] == ("vdc_color", "vdc_type")
    for bad in ("type", "type+", "type:x+color", "type:1+color"):
        with pytest.raises(VehiclustError):
            parse_mix(bad)
    with pytest.raises(VehiclustError, match="matches no clustered descriptor"):
        resolve_mix(parse_mix("osnet+color"), available)
    with pytest.raises(VehiclustError):
        CompareSettings(mixes=("nonsense",))


def footing_frame(names, values, spreads=None, notes=None, **extra) -> pd.DataFrame:
    """comparison.csv rows as the best rule reads them (excess_score and its spread given)."""
    from vehiclust.compare.table import kind_of

    n = len(names)
    frame = pd.DataFrame({"name": names, "kind": [kind_of(x) for x in names], "n_clusters": [4] * n,
                          "excess_score": values, "excess_score_std": spreads or [0.001] * n,
                          "excess": values, "applies": [True] * n, "eligible_note": notes or [""] * n, **extra})
    return frame


def test_best_rule_and_override():
    frame = footing_frame(["a", "mix_a+b", "consensus"], [0.03, 0.05, 0.04])
    marked, name, why, rule = apply_best(frame, None)
    assert name == "mix_a+b" and marked["best"].tolist() == [False, True, False] and "runner-up consensus" in why
    assert "excess_score" in rule and "vehicle ids" in rule and not marked["tie"].any()
    assert marked.set_index("name")["rank"].to_dict() == {"mix_a+b": 1, "consensus": 2, "a": 3}
    assert apply_best(frame, "a+b")[1] == "mix_a+b"
    assert apply_best(frame, "consensus")[1] == "consensus"
    with pytest.raises(VehiclustError):
        apply_best(frame, "zzz")


def test_the_runner_up_named_is_eligible_and_a_finer_level_states_whose_excess_it_is():
    frame = footing_frame(["deep", "vehicle_type", "colour"], [0.05, 0.04, 0.01],
                          notes=["", "does not apply: 100% of the images hold no vehicle", ""],
                          excess_of=["cluster_coarse", "cluster", "cluster"], excess_k=[2, 4, 4])
    _, name, why, _ = apply_best(frame, None)
    assert name == "deep" and "runner-up colour" in why and "runner-up vehicle_type" not in why
    assert "at k=2 (its coarse level, cluster_coarse)" in why


def test_with_three_eligible_views_the_one_that_agrees_most_with_the_others_wins():
    frame = footing_frame(["softmax", "deep", "colour", "noise", "consensus"], [0.09, 0.07, 0.08, 0.0, 0.08],
                          notes=["", "", "", "no structure", ""],
                          agreement=[0.27, 0.38, 0.21, np.nan, np.nan], agreement_std=[0.01] * 3 + [np.nan] * 2)
    marked, name, why, _ = apply_best(frame, None)
    assert name == "deep" and "agreement 0.380" in why and "the other 2 single descriptors that apply" in why
    assert marked.set_index("name")["rank"].to_dict()["noise"] == 5
    # fewer than three voters: the excess decides
    assert apply_best(frame.assign(agreement=np.nan), None)[1] == "softmax"
    # the consensus ranks second by its excess, but has no agreement: the runner-up named is a voter
    second = footing_frame(["softmax", "deep", "colour", "consensus"], [0.09, 0.07, 0.08, 0.2],
                           agreement=[0.27, 0.38, 0.21, np.nan], agreement_std=[0.01] * 3 + [np.nan])
    marked, _, why, _ = apply_best(second, None)
    assert marked.set_index("name")["rank"]["consensus"] == 2 and "runner-up softmax (agreement 0.270)" in why


def test_a_view_without_significant_structure_votes_but_is_not_delivered():
    # the demo of seed 1: vehicle_type's excess not significant; without its vote the two colour
    # descriptors agreed most with each other and the colour histogram was delivered
    frame = footing_frame(["deep", "vehicle_type", "colour", "histogram"], [0.12, 0.005, 0.29, 0.05],
                          notes=["", "no structure beyond a structureless reference", "", ""],
                          agreement=[0.30, 0.33, 0.23, 0.20], agreement_std=[0.01] * 4)
    _, name, why, _ = apply_best(frame, None)
    assert name == "deep" and "the other 3 single descriptors that apply" in why
    assert "runner-up colour (agreement 0.230)" in why
    # one eligible view among the voters: nothing for agreement to choose, the excess decides
    one = frame.assign(eligible_note=["", "no structure", "no structure", "no structure"])
    assert apply_best(one, None)[2].startswith("best overall: excess_score")


def test_every_single_descriptor_that_applies_votes_significant_or_not():
    from vehiclust.compare.table import add_footing

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 150)
    blobs = rng.normal(size=(600, 6)) + 6 * np.eye(6)[groups]  # four well separated groups
    spaces = {"deep": blobs, "colour": blobs[:, ::-1] + rng.normal(size=(600, 6)),
              "flat": rng.normal(size=(600, 6)), "vehicle_type": rng.normal(size=(600, 6))}
    labels = {"deep": groups, "colour": groups, "flat": rng.integers(0, 4, 600), "vehicle_type": groups}
    frame = pd.DataFrame({"name": list(spaces), "kind": "descriptor", "noise_share": 0.0, "stability": 1.0})
    footed = add_footing(frame, spaces, labels, 0, {"vehicle_type": "does not apply"}).set_index("name")
    # the structureless view is not eligible, yet it votes; the one that does not apply does not
    assert footed.loc["flat", "eligible_note"].startswith("no structure") and footed.loc["deep", "eligible_note"] == ""
    assert footed.loc[["deep", "colour", "flat"], "agreement"].notna().all()
    assert np.isnan(footed.loc["vehicle_type", "agreement"]) and not footed.loc["vehicle_type", "applies"]
    # its vote counts: the eligible views agree with each other and with it (AMI about 0), so
    # their agreement is about half their AMI with each other
    assert 0.3 < footed.loc["deep", "agreement"] < 0.7


def test_vehicle_ids_only_check_the_choice():
    # b has by far the best identity lift; the rule never reads it, the reason shows it as the check
    frame = footing_frame(["a", "b"], [0.06, 0.03], identity_lift=[0.1, 0.9])
    marked, name, why, _ = apply_best(frame, None)
    assert name == "a" and "check: identity_lift 0.100" in why


def test_a_tie_is_declared_and_broken_by_kind_then_order_whatever_the_values_inside_it():
    names = ["d1", "d2", "mix_d1+d2", "consensus"]
    for values in ([0.050, 0.052, 0.060, 0.055], [0.060, 0.050, 0.052, 0.058], [0.052, 0.060, 0.05, 0.05]):
        marked, name, why, _ = apply_best(footing_frame(names, values, spreads=[0.01] * 4), None)
        assert name == "d1" and marked["tie"].all() and "TIE with d2, mix_d1+d2, consensus" in why
    # outside the spread the leader wins, no tie
    marked, name, why, _ = apply_best(footing_frame(names, [0.05, 0.05, 0.2, 0.05]), None)
    assert name == "mix_d1+d2" and not marked["tie"].any() and "TIE" not in why


def test_not_eligible_rows_are_never_best_and_nothing_eligible_says_weak():
    notes = ["", "does not apply: 90% of the images hold no vehicle", "no structure beyond a structureless reference"]
    frame = footing_frame(["deep", "vehicle_type", "noise"], [0.02, 0.5, 0.4], notes=notes)
    marked, name, why, _ = apply_best(frame, None)
    assert name == "deep" and "not eligible: vehicle_type: does not apply" in why and not why.startswith("weak")
    flat = footing_frame(["gauss", "uniform"], [0.0, 0.0], notes=["no structure"] * 2)
    assert apply_best(flat, None)[2].startswith("weak structure")


def test_best_rule_name_resolution():
    from vehiclust.compare.table import _own_space, resolve_name

    frame = footing_frame(["vdc_color", "vdc_type", "mix_vdc_color+vdc_type"], [0.02, 0.03, 0.01])
    one = apply_best(frame.iloc[[0]], None)
    assert one[1] == "vdc_color" and "runner-up" not in one[2]
    override = apply_best(frame, "color")[2]
    assert override == "best overall: chosen by the user (--best color); the rule would pick vdc_type"
    names = list(frame["name"]) + ["consensus"]
    assert resolve_name("vdc_color+vdc_type", names) == "mix_vdc_color+vdc_type"  # mix_ left out
    assert resolve_name("color", names) == "vdc_color"  # matches two, one of them a single descriptor
    assert resolve_name("consensus", names) == "consensus"
    with pytest.raises(VehiclustError, match="matches vdc_color, vdc_type"):
        resolve_name("vdc", names)
    with pytest.raises(VehiclustError, match="no such clustering"):
        resolve_name("osnet", names)
    assert _own_space(pd.Series({"n_rows": 900, "space_dims": 12})) == "900 x 12"
    assert _own_space(pd.Series({"n_rows": np.nan, "space_dims": np.nan})) == ""


def test_sentence_names_what_a_clustering_groups():
    scores = pd.DataFrame({"clustering": ["c"] * 3, "attribute": ["color", "type", "camera_id"],
                           "ami": [0.41, 0.05, 0.02], "nmi": [0.5, 0.1, 0.2], "n_rows": [10] * 3})
    assert sentence("c", scores) == "c groups colour (AMI 0.41), far more than vehicle type (0.05)."
    no_labels = scores[scores["attribute"] == "camera_id"].assign(attribute=["day_night"])
    assert sentence("c", pd.concat([no_labels, scores.iloc[[0]].assign(attribute="aspect")])).endswith("day/night (0.02).")


# -- end to end through the CLI --------------------------------------------------------------

runner = CliRunner()
SWEEP = ["--k", "2:8", "--algorithms", "kmeans", "--preprocessing", "l2+pca"]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    wide, narrow, *_ = two_label_data()
    root = tmp_path_factory.mktemp("mix")
    paths = [f"veriwild/1/{v + 1:05d}/{i:06d}.jpg" for i, v in enumerate(np.repeat(np.arange(N_VEHICLES), PER_VEHICLE))]
    bundle = write_case_bundle(root / "bundle", paths, {"vdc_type": wide, "vdc_color": narrow})
    result = runner.invoke(app, ["run", str(bundle), "--out", str(root / "run"), *SWEEP,
                                 "--mix", "type+color", "--mix", "all"])
    assert result.exit_code == 0, result.output
    return RunFolder(root / "run")


@pytest.mark.slow
def test_cli_mix_adds_mixtures_to_runs_comparison_and_clusters_csv(mixed_run):
    # each stage writes its own table: runs.csv the descriptors', mixture_runs.csv the rest
    assert set(pd.read_csv(mixed_run.path("runs.csv"))["descriptor"]) == {"vdc_type", "vdc_color"}
    assert set(pd.read_csv(mixed_run.path("mixture_runs.csv"))["descriptor"]) == {
        "mix_vdc_color+vdc_type", "mix_all", "consensus"}
    runs = load_run(mixed_run.root).runs  # the combined view
    assert {"mix_vdc_color+vdc_type", "mix_all", "consensus"} <= set(runs["descriptor"])
    assert set(runs.loc[runs["descriptor"] == "mix_all", "k"]) == set(range(2, 9))  # the same sweep
    assert runs.groupby("descriptor")["selected"].sum().eq(1).all() and runs["best_overall"].sum() == 1
    comparison = pd.read_csv(mixed_run.path("comparison.csv"))
    # the consensus has no descriptor of its own: its structure is measured in the common space
    assert comparison.set_index("name")["excess_space"].to_dict() == {
        "vdc_type": "own", "vdc_color": "own", "mix_vdc_color+vdc_type": "own", "mix_all": "own",
        "consensus": "common"}
    best_json = read_json(mixed_run.path("best.json"))
    ranked = comparison.sort_values("rank")
    assert best_json["name"] == ranked["name"].iloc[0] == runs.loc[runs["best_overall"], "descriptor"].iloc[0]
    assert best_json["measure"] == "excess_score" and best_json["runner_up"] == ranked["name"].iloc[1]
    assert best_json["score"] == pytest.approx(ranked["excess_score"].iloc[0])
    assert best_json["runner_up_score"] == pytest.approx(ranked["excess_score"].iloc[1])
    assert runs.loc[runs["best_overall"], "reason"].iloc[0].endswith(best_json["reason"])
    assert set(comparison["kind"]) == {"descriptor", "mixture", "consensus"} and comparison["best"].sum() == 1
    agreement = pd.read_csv(mixed_run.path("agreement.csv"))
    assert len(agreement) == len(comparison) * (len(comparison) - 1) // 2
    clusters = pd.read_csv(mixed_run.path("clusters.csv"))
    for name in comparison["name"]:
        assert f"cluster_{name}" in clusters.columns
    best = comparison.loc[comparison["best"], "name"].iloc[0]
    assert best == comparison.loc[comparison["rank"] == 1, "name"].iloc[0]
    assert comparison["identity_lift"].notna().all()  # vehicle ids exist: reported as a check, never used
    assert (clusters["cluster"] == clusters[f"cluster_{best}"]).all()
    html = mixed_run.path("report.html").read_text()
    assert 'id="comparison"' in html and "mix_vdc_color+vdc_type" in html and "common space" in html


@pytest.mark.slow
def test_cli_best_overrides_the_rule_without_redoing_the_comparison(mixed_run):
    record = mixed_run.stage_record("compare")
    result = runner.invoke(app, ["compare", str(mixed_run.root), *SWEEP, "--mix", "type+color", "--mix", "all",
                                 "--best", "color"])
    assert result.exit_code == 0, result.output
    assert mixed_run.stage_record("compare")["finished"] == record["finished"]  # only the choice changed
    clusters = pd.read_csv(mixed_run.path("clusters.csv"))
    assert (clusters["cluster"] == clusters["cluster_vdc_color"]).all()
    runs = load_run(mixed_run.root).runs
    assert runs.loc[runs["best_overall"], "descriptor"].tolist() == ["vdc_color"]
    assert "chosen by the user" in runs.loc[runs["best_overall"], "reason"].iloc[0]
    assert read_json(mixed_run.path("best.json"))["override"] == "color"


def test_the_runs_view_joins_each_stages_table_and_marks_the_current_best(tmp_path):
    from vehiclust.cluster.sweep import RUN_COLUMNS
    from vehiclust.compare.best import BestChoice, all_runs
    from vehiclust.runfolder import MIXTURE_RUNS, RUNS

    run = RunFolder(tmp_path)
    row = {"preprocessing": "l2+pca", "algorithm": "kmeans", "params": "k=3", "k": 3, "n_clusters": 3,
           "stability": 0.9, "noise_share": 0.0, "note": "", "seconds": 1.0}
    RUNS.save(run, pd.DataFrame([
        {**row, "descriptor": "a", "score": 0.5, "selected": True, "reason": "a's reason"},
        {**row, "descriptor": "a", "score": 0.4, "selected": False, "reason": ""},
        {**row, "descriptor": "b", "score": 0.6, "selected": True, "reason": "b's reason"}], columns=RUN_COLUMNS))
    MIXTURE_RUNS.save(run, pd.DataFrame([
        {**row, "descriptor": "mix_a+b", "score": 0.3, "selected": True, "reason": "mix reason"}], columns=RUN_COLUMNS))
    run.record_stage("cluster", "clustering 1", 1.0)
    BestChoice("mix_a+b", "the rule", "best overall by the comparison rule: x", "common_score", 0.7, "a", 0.6, None,
               "clustering 1").save(run)
    runs = all_runs(run)
    assert runs["descriptor"].tolist() == ["a", "a", "b", "mix_a+b"]
    assert runs["best_overall"].tolist() == [False, False, False, True]
    assert runs["reason"].iloc[3] == "mix reason; best overall by the comparison rule: x"
    assert list(runs.columns[runs.columns.get_loc("selected"):][:3]) == ["selected", "best_overall", "reason"]
    # a choice made on another clustering is not shown, nor are that comparison's runs
    BestChoice("mix_a+b", "r", "x", "common_score", 0.7, None, None, None, "clustering 0").save(run)
    runs = all_runs(run)
    assert runs["descriptor"].tolist() == ["a", "a", "b"] and runs.loc[runs["best_overall"], "descriptor"].tolist() == ["b"]
    assert runs.loc[runs["best_overall"], "reason"].iloc[0] == (
        "b's reason; best overall: highest score among the 2 descriptors' selected runs")
    # a choice naming a clustering that is gone falls back to the cluster stage's rule
    BestChoice("mix_gone", "r", "x", "common_score", 0.7, None, None, None, "clustering 1").save(run)
    runs = all_runs(run)
    assert len(runs) == 4 and runs.loc[runs["best_overall"], "descriptor"].tolist() == ["b"]


def test_mix_auto_pairs_the_descriptors_that_capture_each_label_on_held_out_rows(tmp_path):
    from vehiclust.runfolder import CLUSTERING
    from vehiclust.compare.stage import informed_pair
    from vehiclust.progress import NullReporter

    rng = np.random.default_rng(0)
    types, colours = rng.integers(0, 4, 1000), rng.integers(0, 3, 1000)
    table = pd.DataFrame({"type": types.astype(str), "color": colours.astype(str)})
    run = RunFolder(tmp_path)
    clusterings = {"sees_type": types, "sees_colour": colours, "sees_nothing": rng.integers(0, 5, 1000),
                   "sees_type_badly": np.where(rng.random(1000) < 0.5, types, 0)}
    for name, labels in clusterings.items():
        CLUSTERING.path(run, name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(CLUSTERING.path(run, name), labels=labels.astype(np.int32))
    spec = informed_pair(run, list(clusterings), np.arange(0, 1000, 3), table, ("type", "color"), NullReporter())
    assert spec.blocks == ("sees_type", "sees_colour")
    assert informed_pair(run, list(clusterings), np.arange(0, 1000, 3), table[["type"]], ("type", "color"),
                         NullReporter()) is None


def test_report_leaves_out_a_comparison_of_clusterings_that_were_redone(tmp_path):
    from vehiclust.report.comparison_view import comparison_context

    run = RunFolder(tmp_path)
    for name in ("comparison.csv", "agreement.csv", "attributes.csv"):
        pd.DataFrame({"name": ["a"], "captures": [""]}).to_csv(run.path(name), index=False)
    run.path("compare.json").write_text("{}")
    run.record_stage("cluster", "new", 1.0)
    run.record_stage("compare", "x", 1.0, cluster="old")
    assert comparison_context(run) is None


def test_demo_and_compare_commands_take_the_mix_options():
    for command in ("run", "demo", "compare"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "--mix" in result.output and "--best" in result.output and "--mix-tune" in result.output


def test_a_block_is_fitted_once_for_the_same_rows_and_the_fit_is_the_one_a_new_fit_gives(tmp_path, monkeypatch):
    from vehiclust.compare import fusion

    rng = np.random.default_rng(5)
    run = run_folder_with(tmp_path, wide=rng.normal(size=(400, 90)).astype(np.float32),
                          narrow=rng.normal(size=(400, 6)).astype(np.float32))
    fits = []
    real_fit = fusion.BlockScaler.fit
    monkeypatch.setattr(fusion.BlockScaler, "fit", lambda self, X: fits.append(X.shape) or real_fit(self, X))
    rows = np.arange(0, 400, 2)
    first = fusion.fit_blocks(run, ("wide", "narrow"), rows, "variance", 32, 0)
    again = fusion.fit_blocks(run, ("narrow", "wide"), rows, "variance", 32, 0)  # another mixture, same blocks
    assert fits == [(200, 90), (200, 6)] and again[0] is first[1] and again[1] is first[0]
    fresh = real_fit(fusion.BlockScaler("variance", 32, 0), run.load_descriptor("wide")[rows])
    X = run.load_descriptor("wide")[:50]
    assert np.array_equal(first[0].transform(X), fresh.transform(X))
    fusion.fit_blocks(run, ("wide",), rows[1:], "variance", 32, 0)  # other rows: fitted anew
    fusion.fit_blocks(run, ("wide",), rows, "unit", 32, 0)  # other settings: fitted anew
    run.save_descriptor("wide", rng.normal(size=(400, 90)).astype(np.float32), {"fingerprint": "wide-v2"})
    fusion.fit_blocks(run, ("wide",), rows, "variance", 32, 0)  # the descriptor changed: fitted anew
    assert len(fits) == 5
