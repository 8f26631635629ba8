"""The command line: exit codes, one-line errors, and extraction that survives being killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vehiclust.cli import app
from vehiclust.runfolder import RunFolder

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


def test_stage_commands_on_one_run_folder(tmp_path, photo_folder):
    out = tmp_path / "run"
    assert invoke("ingest", photo_folder, "--out", out).exit_code == 0
    assert invoke("describe", out, "-d", "color_hist").exit_code == 0
    result = invoke("cluster", out, "--k", "2:4")
    assert result.exit_code == 0 and "color_hist: k=" in result.output
    assert invoke("outliers", out).exit_code == 0
    result = invoke("report", out)
    assert result.exit_code == 0 and (out / "report.html").exists() and (out / "clusters.csv").exists()


def _describe_process(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vehiclust.cli", "describe", str(run_dir), "-d", "efficientnet_lite0",
         "--chunk-rows", "8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_killed_extraction_resumes_without_recomputing(tmp_path, photo_folder):
    out = tmp_path / "run"
    assert invoke("ingest", photo_folder, "--out", out).exit_code == 0
    process = _describe_process(out)
    parts = out / "descriptors" / ".parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*/part_*.json"))) < 2:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored_before = len(list(parts.glob("*/part_*.json")))
    assert 2 <= stored_before < 5, "the kill came too late to test resuming"  # 36 rows = 5 chunks
    assert not RunFolder(out).descriptor_meta_path("efficientnet_lite0").exists()

    result = invoke("describe", out, "-d", "efficientnet_lite0", "--chunk-rows", "8")
    assert result.exit_code == 0, result.output
    meta = json.loads(RunFolder(out).descriptor_meta_path("efficientnet_lite0").read_text())
    assert meta["chunks_reused"] >= stored_before
    resumed = np.load(RunFolder(out).descriptor_path("efficientnet_lite0"))

    fresh = tmp_path / "fresh"
    assert invoke("ingest", photo_folder, "--out", fresh).exit_code == 0
    assert invoke("describe", fresh, "-d", "efficientnet_lite0", "--chunk-rows", "8").exit_code == 0
    np.testing.assert_allclose(resumed, np.load(RunFolder(fresh).descriptor_path("efficientnet_lite0")),
                               atol=1e-4)
    assert not parts.exists()


def test_export_transport_dataset_and_plan(tmp_path, photo_folder):
    out = tmp_path / "run"
    assert invoke("run", photo_folder, "--out", out, "-d", "color_hist", "--k", "2:4",
                  "--no-image-checks").exit_code == 0
    result = invoke("export", out, "--transport-dataset")
    assert result.exit_code == 0
    import pandas as pd

    transport = pd.read_csv(out / "transport_dataset.csv")
    assert list(transport.columns) == ["path", "car_id", "width", "height", "brisque"]
    assert len(transport) == len(list(photo_folder.rglob("*.jpg"))) and (transport["width"] > 0).all()
    target = tmp_path / "by_cluster"
    result = invoke("export", out, "--by", "cluster", "--to", target)
    assert result.exit_code == 0 and "dry run" in result.output and not target.exists()
    result = invoke("export", out, "--by", "cluster", "--to", target, "--link")
    assert result.exit_code == 0
    clusters = pd.read_csv(out / "clusters.csv")
    placed = sorted(target.rglob("*.jpg"))
    assert len(placed) == len(clusters)
    assert {p.parent.name for p in placed} == {f"cluster_{c:03d}" for c in clusters["cluster"].unique()}
