"""The PyTorch runtime that extraction uses on a GPU, checked here on the CPU against ONNX Runtime."""

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vehiclust.describe.describers import BackboneDescriber
from vehiclust.describe.extract import CPU_BATCH, GPU_BATCH, DescribeSettings
from vehiclust.describe.onnx_backend import available_cpus, build_pipeline
from vehiclust.describe.devices import cuda_available, resolve_device
from vehiclust.describe.torch_backend import TorchImageModel
from vehiclust.errors import VehiclustError

from conftest import real_photos, write_bad_files

NAME = "efficientnet_lite0"


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(p).resize((224, 224))) for p in list(real_photos().values())[:6]])


@pytest.fixture(scope="module")
def onnx_outputs(photos):
    return BackboneDescriber(NAME, threads=2, precision="fp32").model.run(photos)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_torch_fp32_matches_onnx(photos, onnx_outputs):
    pipeline, size = build_pipeline(NAME)
    features, logits = TorchImageModel(pipeline, size, "cpu").run(photos)
    assert np.abs(features - onnx_outputs[0]).max() < 1e-3
    assert (logits.argmax(1) == onnx_outputs[1].argmax(1)).all()


def test_torch_fp16_stays_close_to_fp32(photos, onnx_outputs):
    pipeline, size = build_pipeline(NAME)
    features, logits = TorchImageModel(pipeline, size, "cpu", half=True).run(photos)
    assert features.dtype == np.float32
    assert cosine(features, onnx_outputs[0]).min() > 0.999
    assert (logits.argmax(1) == onnx_outputs[1].argmax(1)).mean() >= 5 / 6


def test_torch_model_refuses_wrong_input(photos):
    pipeline, size = build_pipeline(NAME)
    model = TorchImageModel(pipeline, size, "cpu")
    with pytest.raises(ValueError, match="uint8"):
        model.run(photos.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="224"):
        model.run(photos[:, :200])


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if cuda_available() else "cpu")
    with pytest.raises(VehiclustError, match="unknown device"):
        resolve_device("tpu")
    if not cuda_available():
        with pytest.raises(VehiclustError, match="no CUDA device"):
            resolve_device("cuda")


def test_automatic_settings_follow_the_device():
    cpu = DescribeSettings().for_device("cpu")
    assert (cpu.batch_size, cpu.threads_for("pil")) == (CPU_BATCH, 2)
    gpu = DescribeSettings().for_device("cuda")
    assert gpu.batch_size == GPU_BATCH and gpu.threads_for("nvjpeg") == min(4, available_cpus())
    assert gpu.threads_for("pil") == available_cpus()
    explicit = DescribeSettings(batch_size=8, decode_threads=3).for_device("cuda")
    assert (explicit.batch_size, explicit.threads_for("nvjpeg"), explicit.threads_for("pil")) == (8, 3, 3)


class PilStandInForNvjpeg:
    """Decodes like nvjpeg's interface (CHW uint8 tensors, None on failure), on the CPU with PIL,
    so the GPU pass's slicing, fallbacks and error rows are tested where CI runs."""

    device = torch.device("cpu")

    decoded = 0

    def __init__(self, device: str = "cpu") -> None:
        del device

    def decode(self, blobs):
        PilStandInForNvjpeg.decoded += len(blobs)
        out = []
        for blob in blobs:
            try:
                out.append(torch.from_numpy(np.array(Image.open(io.BytesIO(blob)).convert("RGB"))).permute(2, 0, 1))
            except Exception:  # noqa: BLE001 - nvjpeg returns nothing for a file it rejects
                out.append(None)
        return out


def test_gpu_pass_logic_with_a_stand_in_decoder(tmp_path, photo_folder, monkeypatch):
    from vehiclust.collection import ingest
    from vehiclust.describe import describe, extract, gpu_decode
    from vehiclust.runfolder import RunFolder

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    good = next(folder.rglob("*.jpg"))
    write_bad_files(folder, good.read_bytes())
    Image.open(good).save(folder / "bad" / "a_png.png")
    runs = {}
    for decoder in ("pil", "nvjpeg"):
        PilStandInForNvjpeg.decoded = 0
        monkeypatch.setattr(extract, "_choose_decoder", lambda *a, d=decoder: d)
        monkeypatch.setattr(gpu_decode, "NvjpegDecoder", PilStandInForNvjpeg)
        monkeypatch.setattr(extract, "GPU_SLICE_ROWS", 7)  # several slices per chunk, a ragged last one
        runs[decoder] = run = RunFolder(tmp_path / decoder)
        ingest(folder, run)
        describe(run, ["efficientnet_lite0"], DescribeSettings(device="cpu", chunk_rows=16, decode_threads=3))
    assert PilStandInForNvjpeg.decoded > 0
    table = runs["pil"].load_collection()
    metas = {d: runs[d].descriptor_meta("efficientnet_lite0") for d in runs}
    assert metas["nvjpeg"]["decoder"] == "nvjpeg"
    assert set(metas["nvjpeg"]["invalid"]) == set(metas["pil"]["invalid"]) != set()
    a, b = (np.load(runs[d].descriptor_path("efficientnet_lite0")) for d in ("pil", "nvjpeg"))
    valid = [i for i in range(len(table)) if str(i) not in metas["pil"]["invalid"]]
    assert cosine(a[valid], b[valid]).min() > 0.97  # torch's antialiased resize vs PIL's draft + bilinear
    assert not b[[int(i) for i in metas["pil"]["invalid"]]].any()
