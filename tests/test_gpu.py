"""The GPU extraction path (PyTorch fp16 + nvjpeg decoding). Runs only where CUDA is present;
CI has no GPU, so these run on the device machine (see benchmarks/gpu_check.sh)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vehiclust.collection import ingest
from vehiclust.describe import DescribeSettings, describe
from vehiclust.describe.devices import cuda_available
from vehiclust.runfolder import RunFolder

from conftest import write_bad_files

pytestmark = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")


def _extract(folder, out, device, names=("efficientnet_lite0", "vehicle_type")):
    run = RunFolder(out)
    ingest(folder, run)
    describe(run, list(names), DescribeSettings(device=device))
    return run


def test_gpu_features_match_cpu_features(tmp_path, photo_folder):
    cpu = _extract(photo_folder, tmp_path / "cpu", "cpu")
    gpu = _extract(photo_folder, tmp_path / "gpu", "cuda")
    a = np.load(cpu.descriptor_path("efficientnet_lite0"))
    b = np.load(gpu.descriptor_path("efficientnet_lite0"))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.97, cos.min()  # fp16 and GPU resizing, same images
    types_a = np.load(cpu.descriptor_path("vehicle_type")).argmax(1)
    types_b = np.load(gpu.descriptor_path("vehicle_type")).argmax(1)
    assert (types_a == types_b).mean() > 0.9
    meta = json.loads(gpu.descriptor_meta_path("efficientnet_lite0").read_text())
    assert meta["decoder"] == "nvjpeg" and meta["runtime"].startswith("torch cuda")


def test_gpu_pass_keeps_bad_files_as_placeholder_rows(tmp_path, photo_folder):
    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    good = next(folder.rglob("*.jpg"))
    expected = write_bad_files(folder, good.read_bytes())
    Image.open(good).save(folder / "bad" / "a_png.png")  # not a JPEG: decoded by PIL
    exif = Image.open(good).getexif()
    exif[0x0112] = 6  # rotated: PIL applies it, nvjpeg would not
    Image.open(good).save(folder / "bad" / "rotated.jpg", exif=exif)
    runs = {device: _extract(folder, tmp_path / device, device, names=("efficientnet_lite0",))
            for device in ("cpu", "cuda")}
    table = runs["cuda"].load_collection()
    matrices = {d: np.load(r.descriptor_path("efficientnet_lite0")) for d, r in runs.items()}
    invalid = {d: set(json.loads(r.descriptor_meta_path("efficientnet_lite0").read_text())["invalid"])
               for d, r in runs.items()}
    assert invalid["cuda"] == invalid["cpu"]  # the same files are unusable on both paths
    assert {table["path"][int(row)] for row in invalid["cuda"]} >= set(expected) - {"bad/no_permission.jpg"}
    assert np.isfinite(matrices["cuda"]).all() and len(matrices["cuda"]) == len(table)
    for path in ("bad/a_png.png", "bad/rotated.jpg"):  # decoded by PIL on the GPU path too
        row = table.index[table["path"] == path][0]
        a, b = matrices["cpu"][row], matrices["cuda"][row]
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.97, path
