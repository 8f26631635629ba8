"""The vehicle-colour descriptor names the body's paint, not the background."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import real_photos
from vehiclust.describe.vehicle_color import COLOR_NAMES, color_columns, color_names, describe_colors

PAINTS = {
    "red": (170, 25, 30), "blue": (30, 60, 150), "white": (235, 235, 232), "black": (20, 20, 22),
    "yellow": (225, 190, 30), "gray": (110, 112, 115), "silver": (175, 177, 180),
    "green": (40, 120, 60), "brown": (100, 65, 40), "orange": (225, 115, 25),
}


def car_on(background: np.ndarray, paint: tuple[int, int, int], rng) -> np.ndarray:
    """A car-like silhouette: painted body, dark windows and tyres, a shadow, a highlight."""
    image = Image.fromarray(background).resize((224, 224))
    draw = ImageDraw.Draw(image)
    dx, dy = rng.integers(-12, 12, size=2)
    draw.ellipse((30 + dx, 170 + dy, 200 + dx, 190 + dy), fill=(35, 35, 35))  # shadow
    draw.rounded_rectangle((25 + dx, 95 + dy, 200 + dx, 170 + dy), radius=18, fill=paint)  # body
    draw.polygon([(60 + dx, 95 + dy), (85 + dx, 60 + dy), (150 + dx, 60 + dy), (175 + dx, 95 + dy)], fill=paint)
    draw.polygon([(72 + dx, 93 + dy), (90 + dx, 68 + dy), (145 + dx, 68 + dy), (162 + dx, 93 + dy)],
                 fill=(40, 48, 58))  # windows
    for cx in (60, 165):
        draw.ellipse((cx - 18 + dx, 150 + dy, cx + 18 + dx, 186 + dy), fill=(15, 15, 15))  # tyres
    draw.ellipse((100 + dx, 110 + dy, 112 + dx, 116 + dy), fill=(250, 250, 250))  # highlight
    return np.asarray(image)


@pytest.fixture(scope="module")
def backgrounds() -> list[np.ndarray]:
    photos = real_photos()
    return [photos[n] for n in ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")]


@pytest.mark.parametrize("paint", sorted(PAINTS))
def test_names_the_paint_on_real_backgrounds(paint, backgrounds):
    rng = np.random.default_rng(0)
    images = np.stack([car_on(bg, PAINTS[paint], rng) for bg in backgrounds])
    names, confidence = color_names(describe_colors(images))
    assert list(names).count(paint) >= len(backgrounds) - 1, list(names)  # one miss allowed
    assert (confidence > 0).all()


def test_shape_and_columns(backgrounds):
    out = describe_colors(np.stack([car_on(backgrounds[0], PAINTS["red"], np.random.default_rng(1))]))
    assert out.shape == (1, len(color_columns())) and np.isfinite(out).all()
    shares = out[0, : len(COLOR_NAMES)]
    assert abs(shares.sum() - 1) < 1e-5
