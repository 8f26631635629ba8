"""The int8 EfficientNet-Lite0 graph the CPU runs by default: quantised once, close to fp32 on
photographs it was not calibrated on, refused when it is not, and never mixed with fp32 features."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from vehiclust.collection import ingest
from vehiclust.describe import DescribeSettings, describe, descriptor_key, is_current
from vehiclust.describe import int8
from vehiclust.describe.describers import BackboneDescriber, default_model_cache
from vehiclust.describe.onnx_backend import cached_onnx_model
from vehiclust.describe.stage import run_keys
from vehiclust.errors import VehiclustError
from vehiclust.progress import NullReporter
from vehiclust.runfolder import RunFolder

from conftest import PHOTOS, real_photos

NAME = "efficientnet_lite0"


@pytest.fixture(scope="module")
def fp32_path():
    return cached_onnx_model(NAME, default_model_cache())


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(p).resize((224, 224))) for p in real_photos().values()])


def test_the_tests_photos_are_not_calibration_photos():
    assert not {name.split(".")[0] for name in int8.CALIBRATION_PHOTOS} & set(PHOTOS)


def test_int8_features_and_classes_are_close_to_fp32_on_photos_it_was_not_calibrated_on(photos):
    quantised = BackboneDescriber(NAME, classes=True, threads=2).describe(photos)
    exact = BackboneDescriber(NAME, classes=True, threads=2, precision="fp32").describe(photos)
    cosine = int8.feature_cosine(quantised[NAME], exact[NAME])
    assert cosine.mean() > 0.98 and cosine.min() > 0.95, cosine
    assert not np.allclose(quantised[NAME], exact[NAME], atol=1e-3)  # it is another graph
    assert (quantised["vehicle_type"].argmax(1) == exact["vehicle_type"].argmax(1)).all()
    assert (quantised["imagenet_top"][:, 0] == exact["imagenet_top"][:, 0]).mean() >= 0.8


def test_the_int8_graph_is_made_once_and_keeps_the_full_resolution_convolutions_in_float(fp32_path):
    path = int8.cached_int8_model(fp32_path, 224)
    stamp = path.stat().st_mtime_ns
    assert int8.cached_int8_model(fp32_path, 224) == path and path.stat().st_mtime_ns == stamp
    graph = onnx.load(str(path)).graph
    dequantised = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    in_int8 = [n.input[1] in dequantised for n in convs]  # its weights are int8
    assert sum(in_int8) > len(convs) // 2  # most of the network runs in int8
    assert in_int8[:5] == [False] * 5 and not in_int8[-1]  # the 224 and 112 px maps, the last one
    assert in_int8[5]


def test_a_graph_too_far_from_fp32_is_refused_and_not_cached(fp32_path, tmp_path, monkeypatch):
    target = tmp_path / "int8.onnx"
    monkeypatch.setattr(int8, "MIN_MEAN_COSINE", 1.01)  # no quantised graph reaches it
    with pytest.raises(int8.Int8QuantisationError, match="--precision fp32"):
        int8.quantise(fp32_path, target, 224)
    assert list(tmp_path.iterdir()) == []


def test_int8_and_fp32_features_have_different_keys_and_both_are_current(tmp_path, photo_folder):
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    table = run.load_collection()
    names = [NAME, "vehicle_type", "imagenet_top", "color_hist"]
    by_int8 = run_keys(names, table, DescribeSettings(device="cpu"))
    by_fp32 = run_keys(names, table, DescribeSettings(device="cpu", precision="fp32"))
    assert [n for n in names if by_int8[n] != by_fp32[n]] == [NAME, "vehicle_type", "imagenet_top"]
    assert by_fp32[NAME] == descriptor_key(NAME, table)  # fp32 keys are those of before int8

    describe(run, [NAME], DescribeSettings(device="cpu", precision="fp32"))
    exact = np.asarray(run.load_descriptor(NAME))
    assert run.descriptor_meta(NAME)["precision"] == "fp32" and is_current(run, NAME)
    assert describe(run, [NAME], DescribeSettings(device="cpu")) == [NAME]  # fp32 is not reused as int8
    meta = run.descriptor_meta(NAME)
    assert meta["precision"] == "int8" and meta["chunks_reused"] == 0 and is_current(run, NAME)
    assert not np.array_equal(np.asarray(run.load_descriptor(NAME)), exact)


@pytest.mark.slow
def test_a_refused_int8_graph_leaves_a_default_run_in_fp32_and_is_not_quantised_again(
        fp32_path, tmp_path, photo_folder, monkeypatch):
    from vehiclust.describe import describers

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(fp32_path, models / fp32_path.name)  # a model cache of its own, with no int8 graph yet
    monkeypatch.setattr(describers, "default_model_cache", lambda: models)
    monkeypatch.setattr(int8, "MIN_MEAN_COSINE", 1.01)  # no quantised graph reaches it
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    lines = []
    reporter = type("Lines", (NullReporter,), {"message": lambda self, text: lines.append(text)})()

    assert describe(run, [NAME], DescribeSettings(device="cpu"), reporter) == [NAME]
    meta = run.descriptor_meta(NAME)
    assert meta["precision"] == "fp32" and meta["fingerprint"] == descriptor_key(NAME, run.load_collection())
    assert any("too far from fp32" in line and "describing in fp32 instead" in line for line in lines), lines
    assert not int8.int8_path(models / fp32_path.name).exists()
    assert int8.refusal_path(int8.int8_path(models / fp32_path.name)).is_file()

    def quantised_again(*args):
        raise AssertionError("quantised again")

    monkeypatch.setattr(int8, "quantise", quantised_again)
    lines.clear()
    assert describe(run, [NAME], DescribeSettings(device="cpu"), reporter) == []  # its fp32 features are current
    assert any("describing in fp32 instead" in line for line in lines), lines


def test_an_unknown_precision_is_refused():
    with pytest.raises(VehiclustError, match="precision 'int4'"):
        DescribeSettings(precision="int4")


def test_a_bad_precision_on_the_command_line_stops_before_the_ingest(tmp_path, photo_folder):
    from typer.testing import CliRunner

    from vehiclust.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["describe", str(photo_folder), "--out", str(out), "--precision", "int4"])
    assert result.exit_code != 0 and "--precision" in result.output and "expected one of auto, fp32" in result.output
    assert not out.exists()


def test_quantising_leaves_a_bare_root_logger_bare(fp32_path, tmp_path):
    """``logging.warning`` on a root logger without handlers would install one for good."""
    import logging

    root = logging.getLogger()
    kept = list(root.handlers)
    for handler in kept:
        root.removeHandler(handler)
    try:
        int8.quantise(fp32_path, tmp_path / "int8.onnx", 224)
        assert root.handlers == [] and root.filters == []
    finally:
        for handler in kept:
            root.addHandler(handler)


def test_a_gpu_actor_describes_int8_keyed_networks_on_its_cpu(tmp_path):
    from vehiclust.executor.describe_job import DescribeShards

    def given(names, precision="auto"):
        job = DescribeShards(str(tmp_path), names, {}, [], DescribeSettings(device="cpu", precision=precision),
                             worker_gpus=(0,))
        return job.device_settings(job.settings).device

    assert given([NAME, "vehicle_type"]) == "cpu"  # fp16 features under an int8 key otherwise
    assert given([NAME], precision="fp32") == "cuda"
    assert given(["color_hist"]) == "cuda"


def test_the_recipe_is_part_of_the_key(tmp_path, photo_folder, monkeypatch):
    from vehiclust.describe import stage

    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    table = run.load_collection()
    now = run_keys([NAME], table, DescribeSettings(device="cpu"))[NAME]
    monkeypatch.setattr(stage, "INT8_KEY", "int8q2")
    assert run_keys([NAME], table, DescribeSettings(device="cpu"))[NAME] != now
