"""The demo written as the assignment's case bundle goes back in through the case-bundle path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vehiclust.cluster import ClusterSettings
from vehiclust.collection import detect_input, ingest
from vehiclust.demo import build_demo, write_case_bundle
from vehiclust.pipeline import RunSettings, run_pipeline
from vehiclust.runfolder import RunFolder


@pytest.mark.slow
def test_demo_as_case_bundle_round_trip(tmp_path):
    demo = build_demo(tmp_path / "demo", size=120, seed=3)
    settings = RunSettings(descriptors=["color_hist"], image_checks=False,
                           cluster=ClusterSettings(k_min=2, k_max=4))
    result = run_pipeline(demo.root, tmp_path / "run", settings)
    bundle = write_case_bundle(result.run, demo.root, tmp_path / "bundle", ["color_hist"])

    paths = pd.read_csv(bundle / "images_paths.csv")["paths"]
    assert paths.str.match(r"^veriwild\\1\\\d{5}\\\d{6}\.jpg$").all()
    spec = detect_input(bundle)
    assert spec.kind == "case_bundle" and spec.has_images

    run = RunFolder(tmp_path / "bundle_run")
    table = ingest(bundle, run)
    assert len(table) == demo.n_images and (table["error"] == "").all()
    assert table["content_hash"].tolist() == result.run.load_collection()["content_hash"].tolist()
    np.testing.assert_array_equal(run.load_descriptor("color_hist"), result.run.load_descriptor("color_hist"))
    assert table["vehicle_id"].tolist() == [p.split("\\")[2] for p in paths]
