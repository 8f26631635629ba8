"""Zero-shot vehicle type from ImageNet classes, checked on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import real_photos
from vehiclust.describe.registry import create_describer
from vehiclust.describe.vehicle_type import NOT_A_VEHICLE, TYPE_COLUMNS, imagenet_classes, type_matrix, type_probabilities


def test_every_grouped_class_exists_once():
    matrix = type_matrix()
    assert matrix.shape == (1000, len(TYPE_COLUMNS) - 1)
    assert matrix.sum(axis=1).max() == 1  # no class counted in two types
    assert imagenet_classes()[717] == "pickup"


def test_probabilities_sum_to_one():
    logits = np.random.default_rng(0).normal(size=(20, 1000)) * 3
    probs = type_probabilities(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()


@pytest.fixture(scope="module")
def described():
    photos = real_photos()
    names = ["stereo_motorcycle", "chelsea", "coffee"]
    batch = np.stack([np.asarray(Image.fromarray(photos[n]).resize((224, 224))) for n in names])
    out = create_describer("efficientnet_lite0").describe(batch)
    return dict(zip(names, out["vehicle_type"]))


@pytest.fixture(scope="module")
def top_classes_of_photos():
    photos = real_photos()
    names = ["stereo_motorcycle", "chelsea"]
    batch = np.stack([np.asarray(Image.fromarray(photos[n]).resize((224, 224))) for n in names])
    out = create_describer("efficientnet_lite0").describe(batch)
    return dict(zip(names, out["imagenet_top"]))


def test_top_imagenet_classes_are_ranked_indices_with_probabilities(top_classes_of_photos):
    for row in top_classes_of_photos.values():
        classes, probs = row[0::2], row[1::2]
        assert (classes == classes.round()).all() and ((0 <= classes) & (classes < 1000)).all()
        assert len(set(classes)) == len(classes) and (np.diff(probs) <= 0).all() and probs.sum() <= 1.0001
    motorcycle_class = int(top_classes_of_photos["stereo_motorcycle"][0])
    assert type_matrix()[motorcycle_class, TYPE_COLUMNS.index("motorcycle")] == 1
    assert "cat" in imagenet_classes()[int(top_classes_of_photos["chelsea"][0])]


def test_motorcycle_photo_is_a_motorcycle(described):
    row = described["stereo_motorcycle"]
    assert TYPE_COLUMNS[int(np.argmax(row))] == "motorcycle"


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_cat_and_coffee_are_not_vehicles(described, name):
    assert described[name][TYPE_COLUMNS.index(NOT_A_VEHICLE)] > 0.9
