"""Zero-shot vehicle type: ImageNet class probabilities summed into vehicle types.

ImageNet has about 60 vehicle classes (and a few vehicle parts a tight crop often shows: grille,
car wheel, car mirror). Summing a classifier's softmax over each group gives a probability per
type; what is left is the ``not_a_vehicle`` mass, the basis of the "no vehicle" outlier check.
This is the weight-free counterpart of the case's 10-class vehicle-type model.

``imagenet_classes.txt`` is the standard ImageNet-1k class-name list in index order (as
torchvision lists it, BSD-3-Clause).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

# Class names as in the ImageNet-1k label list shipped beside this file.
VEHICLE_TYPES: dict[str, tuple[str, ...]] = {
    "car": ("beach wagon", "cab", "convertible", "jeep", "limousine", "Model T", "racer",
            "sports car", "grille", "car wheel", "car mirror"),
    "van": ("minibus", "minivan", "moving van", "police van", "ambulance"),
    "pickup": ("pickup",),
    "truck": ("garbage truck", "fire engine", "tow truck", "trailer truck", "recreational vehicle",
              "tractor", "harvester", "forklift", "snowplow"),
    "bus": ("school bus", "trolleybus"),
    "motorcycle": ("moped", "motor scooter"),
    "bicycle": ("bicycle-built-for-two", "mountain bike", "tricycle", "unicycle"),
    "aircraft": ("airliner", "warplane", "airship", "space shuttle"),
    "boat": ("canoe", "catamaran", "container ship", "fireboat", "gondola", "lifeboat", "liner",
             "pirate", "schooner", "speedboat", "trimaran", "yawl", "paddlewheel", "submarine"),
    "train": ("bullet train", "electric locomotive", "freight car", "passenger car",
              "steam locomotive", "streetcar"),
    "military": ("tank", "half track", "aircraft carrier", "amphibian", "missile"),
    "other_vehicle": ("go-kart", "golfcart", "horse cart", "oxcart", "jinrikisha", "snowmobile"),
}
NOT_A_VEHICLE = "not_a_vehicle"
TYPE_COLUMNS = (*VEHICLE_TYPES, NOT_A_VEHICLE)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    text = resources.files("vehiclust.describe").joinpath("imagenet_classes.txt").read_text("utf-8")
    classes = tuple(text.splitlines())
    assert len(classes) == 1000, "imagenet_classes.txt must list the 1000 ImageNet-1k classes"
    return classes


@lru_cache(maxsize=1)
def type_matrix() -> np.ndarray:
    """1000 x T matrix mapping each ImageNet class to its vehicle type (one-hot or zero)."""
    index = {name: i for i, name in enumerate(imagenet_classes())}
    matrix = np.zeros((1000, len(VEHICLE_TYPES)), dtype=np.float32)
    for column, names in enumerate(VEHICLE_TYPES.values()):
        for name in names:
            matrix[index[name], column] = 1.0  # KeyError here means a typo in VEHICLE_TYPES
    return matrix


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def type_probabilities(logits: np.ndarray) -> np.ndarray:
    """N x (T + 1): probability of each vehicle type and of no vehicle at all."""
    probs = softmax(np.asarray(logits, dtype=np.float32))
    types = probs @ type_matrix()
    return np.concatenate([types, np.clip(1.0 - types.sum(axis=1, keepdims=True), 0, 1)], axis=1)


def top_classes(logits: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely ImageNet classes per row."""
    probs = softmax(np.asarray(logits, dtype=np.float32))
    top = np.argsort(-probs, axis=1)[:, :k]
    return top, np.take_along_axis(probs, top, axis=1)
