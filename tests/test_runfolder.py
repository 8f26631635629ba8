"""The run folder: atomic writes, the declared artifacts, and the stage runner's skipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vehiclust.errors import VehiclustError
from vehiclust.pipeline import run_stages
from vehiclust.cluster.clustering import Clustering
from vehiclust.compare.best import best_name
from vehiclust.runfolder import ARTIFACTS, CLUSTERING, RUNS, RunFolder, atomic_path, write_text
from vehiclust.stage import RunContext, Stage


class Boom(Exception):
    pass


def test_atomic_path_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    target = tmp_path / "runs.csv"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half a tab")
            raise Boom
    assert list(tmp_path.iterdir()) == []  # no file under the final name, no temporary left


def test_atomic_path_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "runs.csv"
    write_text(target, "complete\n")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise Boom
    assert target.read_text() == "complete\n" and list(tmp_path.iterdir()) == [target]


def test_every_artifact_has_its_own_path_and_one_writer():
    run = RunFolder("/r")
    paths = [a.path(run, "x", dims=2, stage="s", key="k", by="b") for a in ARTIFACTS.values()]
    assert len(set(paths)) == len(paths)
    assert all(a.writer and a.holds for a in ARTIFACTS.values())


def test_a_missing_artifact_names_the_stage_that_writes_it(tmp_path):
    with pytest.raises(VehiclustError, match=r"runs\.csv is missing; run `vehiclust cluster "):
        RUNS.load(RunFolder(tmp_path))


def test_a_table_without_its_declared_columns_is_refused_with_the_file_named(tmp_path):
    run = RunFolder(tmp_path)
    pd.DataFrame({"descriptor": ["a"]}).to_csv(RUNS.path(run), index=False)
    with pytest.raises(VehiclustError, match=r"runs\.csv: lacks preprocessing, algorithm"):
        RUNS.load(run)


def test_a_clustering_round_trips_as_its_class_and_refuses_missing_keys(tmp_path):
    run = RunFolder(tmp_path)
    stored = Clustering(labels=np.array([0, 1, -1], np.int32), distance=np.array([0.5, 1.0, np.nan], np.float32),
                        centers=np.zeros((2, 3), np.float32), embedding_rows=np.array([0, 1]),
                        preprocessing="l2+pca", algorithm="kmeans", params="k=2")
    CLUSTERING.save(run, stored, "color_hist")
    loaded = CLUSTERING.load(run, "color_hist")
    assert isinstance(loaded, Clustering) and loaded.algorithm == "kmeans" and loaded.distance_input is None
    np.testing.assert_array_equal(loaded.labels, stored.labels)
    with pytest.raises(VehiclustError, match="lacks distance"):
        CLUSTERING.save(run, Clustering(**{**vars(stored), "distance": None}), "other")
    assert not CLUSTERING.exists(run, "other")
    np.savez(CLUSTERING.path(run, "other"), labels=stored.labels)  # a foreign file without distances
    with pytest.raises(VehiclustError, match=r"other\.npz: lacks distance"):
        CLUSTERING.load(run, "other")


def test_a_truncated_file_is_one_message_naming_it(tmp_path):
    run = RunFolder(tmp_path)
    CLUSTERING.path(run, "x").parent.mkdir()
    CLUSTERING.path(run, "x").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(VehiclustError, match=r"x\.npz: unreadable"):
        CLUSTERING.load(run, "x")


def test_the_best_clustering_comes_from_best_json_made_on_the_current_clustering(tmp_path):
    from vehiclust.compare.best import BestChoice

    run = RunFolder(tmp_path)
    runs = pd.DataFrame({c: [0, 0] for c in RUNS.columns})
    runs["descriptor"], runs["selected"], runs["reason"] = ["a", "b"], [True, True], ""
    runs["score"] = [0.2, 0.9]
    RUNS.save(run, runs)
    run.record_stage("cluster", "k1", 0.0)
    assert best_name(run) == "b"  # no comparison yet: the cluster stage's rule
    BestChoice(name="a", rule="common score", reason="chosen", measure="common_score", score=0.5, runner_up="b",
               runner_up_score=0.4, override=None, cluster_key="k1").save(run)
    assert best_name(run) == "a"
    run.record_stage("cluster", "k2", 0.0)  # re-clustered since: best.json describes clusterings that are gone
    assert best_name(run) == "b"


class Counting(Stage):
    """A stage that writes one file and counts its runs."""

    name = "counting"

    def __init__(self, settings: str, always: bool = False):
        super().__init__(settings)
        self.runs = 0
        self.always_runs = always

    def key(self, ctx: RunContext) -> str:
        return f"key-{self.settings}"

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [ctx.run.root / "counted.txt"]

    def run(self, ctx: RunContext) -> dict:
        self.runs += 1
        write_text(ctx.run.root / "counted.txt", self.settings)
        return {"wrote": self.settings}


def test_run_stages_skips_a_current_stage_and_reruns_on_a_new_key_or_a_lost_output(tmp_path):
    ctx = RunContext(RunFolder(tmp_path))
    stage = Counting("a")
    assert run_stages([stage], ctx) == ["counting"]
    record = ctx.run.stage_record("counting")
    assert record["fingerprint"] == "key-a" and record["wrote"] == "a" and record["seconds"] >= 0
    assert run_stages([stage], ctx) == [] and stage.runs == 1
    (tmp_path / "counted.txt").unlink()
    assert run_stages([stage], ctx) == ["counting"] and stage.runs == 2
    other = Counting("b")
    assert run_stages([other], ctx) == ["counting"] and ctx.run.stage_record("counting")["fingerprint"] == "key-b"


@pytest.mark.parametrize("damage", [b"garbage", b"[1, 2]", b"\xff\xfe"])
def test_a_damaged_stage_record_makes_the_stage_run_again_and_is_rewritten(tmp_path, damage):
    ctx = RunContext(RunFolder(tmp_path))
    stage = Counting("a")
    run_stages([stage], ctx)
    record_path = ctx.run.stages_dir / "counting.json"
    record_path.write_bytes(damage)
    assert ctx.run.stage_record("counting") is None
    assert run_stages([stage], ctx) == ["counting"] and stage.runs == 2
    assert ctx.run.stage_record("counting")["fingerprint"] == "key-a"


def test_an_always_running_stage_runs_when_current_and_keeps_its_record(tmp_path):
    ctx = RunContext(RunFolder(tmp_path))
    stage = Counting("a", always=True)
    run_stages([stage], ctx)
    finished = ctx.run.stage_record("counting")["finished"]
    record_path = ctx.run.stages_dir / "counting.json"
    stamp = record_path.stat().st_mtime_ns
    assert run_stages([stage], ctx) == ["counting"] and stage.runs == 2
    assert record_path.stat().st_mtime_ns == stamp and ctx.run.stage_record("counting")["finished"] == finished


def test_a_failing_stage_is_not_recorded(tmp_path):
    class Failing(Counting):
        def run(self, ctx):
            raise Boom

    ctx = RunContext(RunFolder(tmp_path))
    with pytest.raises(Boom):
        run_stages([Failing("a")], ctx)
    assert ctx.run.stage_record("counting") is None
