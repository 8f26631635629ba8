"""The command line: exit codes, one-line errors, and extraction that survives being killed."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vehiclust.cli import app
from vehiclust.describe import DescribeSettings
from vehiclust.pipeline import describe_folder
from vehiclust.runfolder import DESCRIPTOR, DESCRIPTOR_META, RunFolder

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_help_names_every_stage():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "demo", "ingest", "describe", "cluster", "outliers", "report"):
        assert command in result.output


@pytest.mark.parametrize("args, code, text", [
    (["run", "/no/such/input", "--out", "OUT"], 2, "/no/such/input: input not found"),
    (["cluster", "/no/such/run"], 1, "not a run folder"),
    (["run", "EMPTY", "--out", "OUT", "--k", "9:3"], 1, "--k needs 2 <= MIN <= MAX"),
])
def test_errors_are_one_line_with_exit_code(tmp_path, args, code, text):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) if a in ("OUT", "EMPTY") else a for a in args]
    result = invoke(*args)
    assert result.exit_code == code
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.output


@pytest.mark.parametrize("damage", ["not parquet", "a column missing"])
def test_a_damaged_collection_table_is_one_line_naming_it(tmp_path, photo_folder, damage):
    import pandas as pd

    out = tmp_path / "run"
    assert invoke("ingest", photo_folder, "--out", out).exit_code == 0
    table = out / "collection.parquet"
    if damage == "not parquet":
        table.write_bytes(b"PAR1 this is not a parquet file")
    else:
        pd.read_parquet(table).drop(columns="content_hash").to_parquet(table)
    for command in (["cluster", out], ["describe", out, "-d", "color_hist"]):
        result = invoke(*command)
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith("error:") and str(table) in lines[0] and "ingest" in lines[0], lines[0]
        assert ("content_hash" in lines[0]) == (damage == "a column missing")


@pytest.mark.parametrize("damage", [b"garbage", b"[1, 2]", b"\xff\xfe not utf-8"])
def test_a_damaged_descriptor_provenance_is_one_line_naming_it(tmp_path, photo_folder, damage):
    out = tmp_path / "run"
    assert invoke("ingest", photo_folder, "--out", out).exit_code == 0
    assert invoke("describe", out, "-d", "color_hist").exit_code == 0
    meta = out / "descriptors" / "color_hist.json"
    meta.write_bytes(damage)
    cluster = ["cluster", out, "--k", "2:4", "--preprocessing", "l2+pca"]
    for command in (["describe", out, "-d", "color_hist"], cluster):  # describe must not call it up to date
        result = invoke(*command)
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, (command[0], result.output)
        assert lines[0].startswith("error:") and str(meta) in lines[0] and "color_hist.npy" in lines[0], lines[0]
    assert meta.read_bytes() == damage  # not vehiclust's to rewrite: the message says what to remove
    meta.unlink()
    (out / "descriptors" / "color_hist.npy").unlink()
    assert invoke("describe", out, "-d", "color_hist").exit_code == 0
    assert invoke(*cluster).exit_code == 0


@pytest.mark.parametrize("stored", [{"name": 5}, {"name": "a", "rule": "r", "surprise": 1}, ["name"]])
def test_a_damaged_best_choice_is_one_line_naming_it(tmp_path, stored):
    import json

    from vehiclust.compare.best import BestChoice
    from vehiclust.errors import VehiclustError

    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    (run.root / "best.json").write_text(json.dumps(stored))
    with pytest.raises(VehiclustError, match="best.json") as caught:
        BestChoice.load(run)
    assert "\n" not in str(caught.value) and "compare" in str(caught.value)


def test_stage_commands_on_one_run_folder(tmp_path, photo_folder):
    out = tmp_path / "run"
    assert invoke("ingest", photo_folder, "--out", out).exit_code == 0
    assert invoke("describe", out, "-d", "color_hist").exit_code == 0
    result = invoke("cluster", out, "--k", "2:4", "--preprocessing", "l2+pca")
    assert result.exit_code == 0 and "color_hist: k=" in result.output
    assert invoke("outliers", out).exit_code == 0
    result = invoke("report", out, "--map-method", "pca", "--no-notebook")
    assert result.exit_code == 0 and (out / "report.html").exists() and (out / "clusters.csv").exists()


def test_option_help_lists_what_the_registries_and_settings_hold():
    from vehiclust.cluster import ALGORITHMS, ClusterSettings
    from vehiclust.describe import default_descriptors
    from vehiclust.outliers import CHECKS, DETECTORS

    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"else {','.join(default_descriptors())}." in text
    assert all(name in text for name in [*ALGORITHMS.names(), *CHECKS.names(), *DETECTORS.names()])
    assert f"Default: {','.join(ClusterSettings().preprocessing)}." in text and "{default" not in text


def test_debug_raises_the_error_instead_of_one_line(tmp_path):
    from vehiclust.errors import VehiclustError

    result = invoke("--debug", "cluster", tmp_path / "no run")
    assert isinstance(result.exception, VehiclustError) and "error:" not in result.output


class Interrupted(Exception):
    """Stands for the crash (kill, power loss, a failing JPEG decoder) in the middle of extraction."""


class StopAfterChunks:
    """A reporter that interrupts the describe stage right after ``chunks`` chunks were stored."""

    def __init__(self, chunks: int):
        self.left = chunks

    @contextlib.contextmanager
    def task(self, description: str, total: int | None):
        yield self

    def advance(self, n: int = 1) -> None:
        if n:  # called once per finished chunk (and with 0 before the first)
            self.left -= 1
            if self.left == 0:
                raise Interrupted

    def message(self, text: str) -> None:
        pass


def _interrupted_extraction(out: Path, photo_folder: Path, chunks: int) -> Path:
    """Ingest, then extract color_hist in chunks of 8 rows until the crash; returns the parts folder."""
    assert invoke("ingest", photo_folder, "--out", out).exit_code == 0
    with pytest.raises(Interrupted):
        describe_folder(out, ["color_hist"], DescribeSettings(chunk_rows=8), StopAfterChunks(chunks))
    return out / "descriptors" / ".parts"


def _fresh_extraction(tmp_path: Path, photo_folder: Path) -> np.ndarray:
    fresh = tmp_path / "fresh"
    assert invoke("ingest", photo_folder, "--out", fresh).exit_code == 0
    assert invoke("describe", fresh, "-d", "color_hist", "--chunk-rows", "8").exit_code == 0
    return np.load(DESCRIPTOR.path(RunFolder(fresh), "color_hist"))


def test_interrupted_extraction_resumes_without_recomputing(tmp_path, photo_folder):
    out = tmp_path / "run"
    parts = _interrupted_extraction(out, photo_folder, chunks=2)
    assert len(list(parts.glob("color_hist-*/part_*.json"))) == 2  # 36 rows = 5 chunks, 2 stored
    assert not DESCRIPTOR_META.exists(RunFolder(out), "color_hist")  # nothing under the final name

    result = invoke("describe", out, "-d", "color_hist", "--chunk-rows", "8")
    assert result.exit_code == 0, result.output
    assert DESCRIPTOR_META.load(RunFolder(out), "color_hist")["chunks_reused"] == 2
    resumed = np.load(DESCRIPTOR.path(RunFolder(out), "color_hist"))
    np.testing.assert_array_equal(resumed, _fresh_extraction(tmp_path, photo_folder))
    assert not parts.exists()


def test_chunks_stored_under_another_fingerprint_are_not_reused_and_go_once_assembled(tmp_path, photo_folder):
    out = tmp_path / "run"
    parts = _interrupted_extraction(out, photo_folder, chunks=2)
    (stored,) = parts.glob("color_hist-*")
    for part in stored.glob("part_*.npy"):  # what another version of the describer would have written
        np.save(part, np.full_like(np.load(part), 7.0))
    stale = stored.rename(parts / "color_hist-0000000000000000")
    from vehiclust import ownership

    for part in stale.iterdir():  # logged as vehiclust logs the parts it writes
        ownership.written(part)

    assert invoke("describe", out, "-d", "color_hist", "--chunk-rows", "8").exit_code == 0
    assert DESCRIPTOR_META.load(RunFolder(out), "color_hist")["chunks_reused"] == 0
    resumed = np.load(DESCRIPTOR.path(RunFolder(out), "color_hist"))
    np.testing.assert_array_equal(resumed, _fresh_extraction(tmp_path, photo_folder))
    assert not stale.exists()  # the folder keeps one matrix per descriptor: stale parts go once it is assembled


def test_export_transport_dataset_and_plan(tmp_path, photo_folder):
    import shutil

    out, photos = tmp_path / "run", tmp_path / "photos"
    shutil.copytree(photo_folder, photos)  # one image is removed below
    assert invoke("run", photos, "--out", out, "-d", "color_hist", "--k", "2:4", "--preprocessing", "l2+pca",
                  "--no-image-checks", "--map-method", "pca", "--no-notebook").exit_code == 0
    result = invoke("export", out, "--transport-dataset")
    assert result.exit_code == 0
    import pandas as pd

    transport = pd.read_csv(out / "transport_dataset.csv")
    assert list(transport.columns) == ["path", "car_id", "width", "height", "brisque"]
    assert len(transport) == len(list(photos.rglob("*.jpg"))) and (transport["width"] > 0).all()
    target = tmp_path / "by_cluster"
    result = invoke("export", out, "--by", "cluster", "--to", target)
    assert result.exit_code == 0 and "dry run" in result.output and not target.exists()
    result = invoke("export", out, "--by", "cluster", "--to", target, "--link")
    assert result.exit_code == 0
    clusters = pd.read_csv(out / "clusters.csv")
    placed = sorted(target.rglob("*.jpg"))
    assert len(placed) == len(clusters)
    assert {p.parent.name for p in placed} == {f"cluster_{c:03d}" for c in clusters["cluster"].unique()}
    # a clusters.csv edited in place to lead out of --to, and an image gone since: the copies
    # stay inside --to, the missing image is a warning, the others are placed
    clusters["outlier_reasons"] = [str(tmp_path / "escaped") + ";blur", "../../escaped"] + [""] * (len(clusters) - 2)
    clusters.to_csv(out / "clusters.csv", index=False)
    copied = tmp_path / "by_reason"
    Path(pd.read_parquet(out / "collection.parquet")["location"].iloc[-1]).unlink()
    result = invoke("export", out, "--by", "reason", "--to", copied, "--copy")
    assert result.exit_code == 0 and "not exported" in result.output, result.output
    assert not (tmp_path / "escaped").exists() and len(list(copied.rglob("*.jpg"))) == len(clusters) - 1
    assert all(copied.resolve() in p.resolve().parents for p in copied.rglob("*.jpg"))
