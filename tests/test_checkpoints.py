"""Weights files in the public layouts: EfficientNet (torchvision, timm, lukemelas), OSNet
(torchreid), MobileNetV2 (torchvision); resolution, verification and the error messages.

No such weights exist offline, so each test writes a checkpoint from a randomly initialised
model under the publisher's key names and container conventions, loads it back strictly and
checks that the outputs are identical. Only B0 (and OSNet, MobileNetV2) run forward passes;
B7 is built once and run at 64 x 64.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pytest
import torch

from vehiclust.describe.backbones import BACKBONES
from vehiclust.describe.models.checkpoints import (
    CheckpointError,
    read_checkpoint,
    sha256_file,
    strip_wrapper_prefixes,
    write_safetensors,
)
from vehiclust.describe.models.weights import WeightsNotFoundError, weights_cache_dir
from vehiclust.describe.models.efficientnet import VARIANTS, EfficientNet, load_efficientnet
from vehiclust.describe.models.mobilenet_v2 import MobileNetV2, load_mobilenet_v2
from vehiclust.describe.models.osnet import OSNet, load_osnet
from vehiclust.describe.models.pipeline import ImagePipelineModel

B0 = "efficientnet_b0"
OSNET_TEST_HW = (64, 32)  # OSNet's 2:1 shape, small: eager depthwise convs are slow on CPU
# Parameter counts torchvision publishes for its EfficientNet-B0..B7 (1000 classes).
TORCHVISION_PARAMS = {"efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184,
                      "efficientnet_b2": 9_109_994, "efficientnet_b3": 12_233_232,
                      "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
                      "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960}


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test starts with an empty weights cache and no weights variables."""
    monkeypatch.setenv("VEHICLUST_CACHE", str(tmp_path / "cache"))
    for name in BACKBONES:
        monkeypatch.delenv(f"VEHICLUST_WEIGHTS_{name.upper()}", raising=False)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics too, so that eps and statistics mix-ups change outputs."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.01)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def in_layout(model, layout: str) -> dict[str, torch.Tensor]:
    """The model's state dict under a public layout's key names."""
    mapping = model.key_map(layout)
    return {mapping[k]: v.clone() for k, v in model.state_dict().items()}


def outputs(model, size=(64, 64), seed=1) -> torch.Tensor:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


# --- EfficientNet: definition ----------------------------------------------------------------

def test_all_variants_match_torchvision_parameter_counts():
    """Width/depth scaling, SE widths and head width of B0..B7, without allocating weights."""
    for name, expected in TORCHVISION_PARAMS.items():
        with torch.device("meta"):
            model = EfficientNet(name)
        assert sum(p.numel() for p in model.parameters()) == expected, name


def test_b7_has_2560_features_and_runs_at_a_small_size():
    model = EfficientNet("efficientnet_b7", num_classes=0).eval()
    assert model.feature_dim == 2560
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS["efficientnet_b7"] - 2561000
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 2560)
    assert BACKBONES.get("efficientnet_b7").feature_dim == 2560
    assert BACKBONES.get("efficientnet_b7").input_size == (600, 600)


def test_inference_is_deterministic_in_eval_mode():
    """Stochastic depth and dropout are off at inference."""
    model = randomised(EfficientNet(B0))
    assert torch.equal(outputs(model), outputs(model))


# --- EfficientNet: the three layouts ---------------------------------------------------------

@pytest.mark.parametrize(("layout", "filename", "padding", "eps"), [
    ("torchvision", "my_torchvision_b0.pth", "symmetric", 1e-5),
    ("timm", "tf_efficientnet_b0_ns-renamed.pth", "same", 1e-3),
    ("timm", "efficientnet_b0_ra-renamed.pth", "symmetric", 1e-5),
    ("lukemelas", "efficientnet-b0-renamed.pth", "same", 1e-3),
])
def test_each_layout_loads_strictly_with_its_conventions(tmp_path, layout, filename, padding, eps):
    source = randomised(EfficientNet(B0, padding=padding, bn_eps=eps))
    path = tmp_path / filename
    torch.save(in_layout(source, layout), path)
    loaded = load_efficientnet(B0, path)
    assert loaded.layout == layout
    assert (loaded.details["padding"], loaded.details["bn_eps"]) == (padding, eps)
    assert loaded.num_classes == 1000 and loaded.feature_dim == 1280
    assert loaded.input_size == (224, 224)
    assert torch.equal(outputs(loaded.model), outputs(source))


def test_padding_and_eps_conventions_change_the_outputs():
    """Guards the tests above: the conventions they check are not no-ops."""
    base = randomised(EfficientNet(B0, padding="same", bn_eps=1e-3))
    other = EfficientNet(B0, padding="symmetric", bn_eps=1e-3)
    other.load_state_dict(base.state_dict())
    assert not torch.allclose(outputs(base), outputs(other.eval()), atol=1e-4)


def test_torchvision_b7_keeps_lukemelas_eps_but_symmetric_padding(tmp_path):
    from vehiclust.describe.models.efficientnet import conventions_for

    conv = conventions_for("torchvision", VARIANTS["efficientnet_b7"],
                           pathlib.Path("efficientnet_b7_lukemelas-c5b4e57e.pth"))
    assert (conv.padding, conv.bn_eps) == ("symmetric", 1e-3)
    conv = conventions_for("torchvision", VARIANTS["efficientnet_b4"], pathlib.Path("b4.pth"))
    assert (conv.padding, conv.bn_eps) == ("symmetric", 1e-5)
    conv = conventions_for("timm", VARIANTS["efficientnet_b7"],
                           pathlib.Path("tf_efficientnet_b7_ap-ddb28fec.pth"))
    assert (conv.padding, conv.bn_eps, conv.mean) == ("same", 1e-3, (0.5, 0.5, 0.5))


def test_timm_hub_safetensors_without_classifier(tmp_path):
    """The Hugging Face hub layout: model.safetensors in a folder named after the model."""
    source = randomised(EfficientNet(B0, num_classes=0, padding="same", bn_eps=1e-3))
    folder = tmp_path / "models--timm--tf_efficientnet_b0.ns_jft_in1k" / "snapshots" / "abc123"
    folder.mkdir(parents=True)
    write_safetensors(in_layout(source, "timm"), folder / "model.safetensors")
    loaded = load_efficientnet(B0, folder / "model.safetensors")
    assert loaded.layout == "timm" and loaded.details["padding"] == "same"
    assert loaded.num_classes == 0 and not loaded.has_logits
    assert torch.equal(outputs(loaded.model), outputs(source))  # features when no classifier


def test_training_checkpoint_with_dataparallel_prefix_and_args(tmp_path):
    """timm/torchreid-style training checkpoints: container, module. prefix, benign extras."""
    source = randomised(EfficientNet(B0, num_classes=10))
    state = {f"module.{k}": v for k, v in in_layout(source, "timm").items()}
    path = tmp_path / "checkpoint-12.pth.tar"
    torch.save({"epoch": 12, "arch": "efficientnet_b0", "state_dict": state,
                "args": argparse.Namespace(lr=0.1), "metric": np.float64(71.5)}, path)
    loaded = load_efficientnet(B0, path)
    assert loaded.num_classes == 10  # a fine-tuned head is kept with its own size
    assert torch.equal(outputs(loaded.model), outputs(source))


def test_strip_wrapper_prefixes_only_when_every_key_has_one():
    state = {"module._orig_mod.a": torch.zeros(1), "module._orig_mod.b": torch.zeros(1)}
    assert set(strip_wrapper_prefixes(state)) == {"a", "b"}
    mixed = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert set(strip_wrapper_prefixes(mixed)) == {"module.a", "b"}


# --- EfficientNet: what goes wrong, and what the user reads ----------------------------------

def test_mismatched_checkpoint_names_the_file_and_first_keys(tmp_path):
    state = in_layout(EfficientNet(B0), "torchvision")
    del state["features.1.0.block.0.0.weight"]
    del state["features.8.1.running_mean"]
    state["features.2.0.block.0.0.weight"] = torch.zeros(1, 2, 3, 4)
    state["features.9.0.weight"] = torch.zeros(1)
    path = tmp_path / "edited_b0.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_efficientnet(B0, path)
    message = str(err.value)
    assert str(path) in message and "efficientnet_b0 (torchvision layout)" in message
    assert "2 keys missing (first: features.1.0.block.0.0.weight, features.8.1.running_mean)" in message
    assert "1 keys unexpected (first: features.9.0.weight)" in message
    assert ("features.2.0.block.0.0.weight: file (1, 2, 3, 4) vs model (96, 16, 1, 1)" in message)


def test_weights_of_another_variant_are_refused(tmp_path):
    path = tmp_path / "b1_weights.pth"
    with torch.device("meta"):
        b1 = EfficientNet("efficientnet_b1")
    torch.save({k: torch.zeros(v.shape) for k, v in in_layout(b1, "lukemelas").items()}, path)
    with pytest.raises(CheckpointError, match=r"keys unexpected \(first: _blocks\.16\."):
        load_efficientnet(B0, path)


def test_truncated_file_says_download_again(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(in_layout(EfficientNet(B0), "timm"), whole)
    cut = tmp_path / "efficientnet_b0_partial.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"efficientnet_b0_partial\.pth: not a readable PyTorch "
                                              r"weights file .* download it again"):
        load_efficientnet(B0, cut)


def test_unknown_layout_lists_the_expected_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path)
    with pytest.raises(CheckpointError, match="not a efficientnet_b0 weights file in any layout.*"
                                              "torchvision: features.0.0.weight"):
        load_efficientnet(B0, path)


def test_arbitrary_pickled_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"state_dict": in_layout(EfficientNet(B0), "timm"), "where": pathlib.PurePosixPath("/x")},
               path)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors"):
        load_efficientnet(B0, path)


def test_missing_weights_say_which_file_and_where(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        load_efficientnet("efficientnet_b7")
    message = str(err.value)
    target = weights_cache_dir() / "efficientnet_b7_lukemelas-c5b4e57e.pth"
    assert "Get efficientnet_b7_lukemelas-c5b4e57e.pth (torchvision layout)" in message
    assert f"put it at {target}" in message
    assert "tf_efficientnet_b7_ns-1dbc32de.pth" in message and "efficientnet-b7-dcc49843.pth" in message
    assert "VEHICLUST_WEIGHTS_EFFICIENTNET_B7" in message


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match="does not exist: .*nowhere.pth"):
        load_efficientnet(B0, tmp_path / "nowhere.pth")
    monkeypatch.setenv("VEHICLUST_WEIGHTS_EFFICIENTNET_B0", str(tmp_path / "gone.pth"))
    with pytest.raises(WeightsNotFoundError, match=r"\$VEHICLUST_WEIGHTS_EFFICIENTNET_B0 does not exist"):
        load_efficientnet(B0)


def test_cache_folder_and_environment_variable(tmp_path, monkeypatch):
    source = randomised(EfficientNet(B0, padding="same", bn_eps=1e-3))
    cached = weights_cache_dir() / "efficientnet-b0-355c32eb.pth"  # lukemelas name: not hash-checked
    cached.parent.mkdir(parents=True)
    torch.save(in_layout(source, "lukemelas"), cached)
    assert BACKBONES.get(B0).load().weights_path == cached
    elsewhere = tmp_path / "elsewhere" / "b0.pth"
    elsewhere.parent.mkdir()
    torch.save(in_layout(source, "torchvision"), elsewhere)
    monkeypatch.setenv("VEHICLUST_WEIGHTS_EFFICIENTNET_B0", str(elsewhere))
    loaded = BACKBONES.get(B0).load()
    assert loaded.weights_path == elsewhere and loaded.layout == "torchvision"
    # A folder is searched like the cache: published names, then <name>.pth / .safetensors.
    renamed = elsewhere.rename(elsewhere.parent / "efficientnet_b0.pth")
    assert load_efficientnet(B0, elsewhere.parent).weights_path == renamed


def test_sha256_checks(tmp_path):
    state = in_layout(EfficientNet(B0), "torchvision")
    # A file under torchvision's published name must have the hash that name carries.
    published = tmp_path / "efficientnet_b0_rwightman-7f5810bc.pth"
    torch.save(state, published)
    with pytest.raises(CheckpointError, match=r"sha256 is [0-9a-f]{64}, expected 7f5810bc\.\.\.; "
                                              r"the file is corrupt"):
        load_efficientnet(B0, published)
    other = tmp_path / "b0.pth"
    torch.save(state, other)
    digest = sha256_file(other)
    assert load_efficientnet(B0, other, sha256=digest[:12]).weights_path == other
    with pytest.raises(CheckpointError, match="sha256"):
        load_efficientnet(B0, other, sha256="0" * 64)


def test_per_channel_normalisation_in_the_uint8_pipeline():
    """ImagePipelineModel takes per-channel mean/std as (1, 3, 1, 1) tensors as it is."""
    torch.manual_seed(0)
    model = randomised(EfficientNet(B0))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    images = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features, logits = ImagePipelineModel(model, mean=mean, std=std)(images)
        expected = model.forward_features((images.permute(0, 3, 1, 2).float() - mean) / std)
    # Relative to the features' norm: random blocks make their scale anything from 10 to 2500
    # (an absolute tolerance failed on one init in eight). x * (1/std) vs x / std left at most
    # 1.3e-5 over eight inits; the channels' std in the wrong order moves them by 0.027 or more.
    relative_error = ((features - expected).norm() / expected.norm()).item()
    assert relative_error < 1e-4, relative_error
    assert logits.shape == (2, 1000)


# --- OSNet (torchreid) -----------------------------------------------------------------------

def test_osnet_training_checkpoint_with_prefix_and_foreign_classifier(tmp_path):
    source = randomised(OSNet())
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.classifier.weight"] = torch.randn(751, 512)  # Market-1501 identities
    state["module.classifier.bias"] = torch.zeros(751)
    path = tmp_path / "model.pth.tar-150"
    torch.save({"state_dict": state, "epoch": 150, "rank1": np.float64(0.94),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0015}]}}, path)
    loaded = load_osnet(path)
    assert loaded.feature_dim == 512 and loaded.input_size == (256, 128)
    assert loaded.details["ignored_classifier_classes"] == 751 and not loaded.has_logits
    assert outputs(loaded.model, OSNET_TEST_HW).shape == (2, 512)
    assert torch.equal(outputs(loaded.model, OSNET_TEST_HW), outputs(source, OSNET_TEST_HW))


def test_osnet_plain_state_dict_from_the_cache(tmp_path):
    source = randomised(OSNet(), seed=3)
    state = dict(source.state_dict())
    state["classifier.weight"], state["classifier.bias"] = torch.randn(1000, 512), torch.zeros(1000)
    cached = weights_cache_dir() / "osnet_x1_0_imagenet.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    loaded = BACKBONES.get("osnet").load()
    assert loaded.weights_path == cached
    assert BACKBONES.get("osnet").square_size == 256 and loaded.model.input_hw == (256, 128)
    loaded.model.input_hw = None  # compare at the small test size
    assert torch.equal(outputs(loaded.model, OSNET_TEST_HW), outputs(source, OSNET_TEST_HW))


def test_osnet_resizes_square_input_when_asked():
    model = randomised(OSNet(input_hw=OSNET_TEST_HW))
    square = torch.randn(1, 3, 64, 64)
    resized = torch.nn.functional.interpolate(square, size=OSNET_TEST_HW, mode="bilinear",
                                              align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(square), model(resized))


def test_osnet_of_another_width_is_refused(tmp_path):
    state = dict(OSNet().state_dict())
    state["conv1.conv.weight"] = torch.zeros(48, 3, 7, 7)  # osnet_x0_75's stem
    path = tmp_path / "osnet_x0_75.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"conv1\.conv\.weight: file \(48, 3, 7, 7\) vs model "
                                              r"\(64, 3, 7, 7\)"):
        load_osnet(path)


def test_osnet_missing_weights_message():
    with pytest.raises(WeightsNotFoundError) as err:
        load_osnet()
    message = str(err.value)
    assert "osnet_x1_0_msmt17_256x128_amsgrad" in message and "torchreid" in message
    assert str(weights_cache_dir()) in message and "VEHICLUST_WEIGHTS_OSNET" in message


# --- MobileNetV2 in torchvision's layout -----------------------------------------------------

def test_mobilenet_v2_torchvision_layout_with_classifier(tmp_path):
    source = randomised(MobileNetV2(num_classes=1000))
    state = in_layout(source, "torchvision")
    assert "features.2.conv.1.0.weight" in state and "features.1.conv.1.weight" in state
    path = tmp_path / "mobilenet_v2_tv.pth"
    torch.save(state, path)
    loaded = load_mobilenet_v2(path)
    assert loaded.layout == "torchvision" and loaded.num_classes == 1000
    assert torch.equal(outputs(loaded.model), outputs(source))
    assert read_checkpoint(path).keys() == state.keys()
