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


def test_foreground_weight_is_the_distance_to_the_nearest_border_colour():
    from vehiclust.describe.vehicle_color import pixel_weights

    rng = np.random.default_rng(2)
    lab = rng.uniform([0, -80, -80], [100, 80, 80], (3, 20, 24, 3)).astype(np.float32)
    n, h, w, _ = lab.shape
    border = np.concatenate([lab[:, :2].reshape(n, -1, 3), lab[:, -2:].reshape(n, -1, 3),
                             lab[:, :, :2].reshape(n, -1, 3), lab[:, :, -2:].reshape(n, -1, 3)], axis=1)
    samples = border[:, :: max(1, border.shape[1] // 24)]
    pixels = lab.reshape(n, -1, 1, 3).astype(np.float64)
    nearest = np.sqrt(((pixels - samples[:, None].astype(np.float64)) ** 2).sum(-1).min(-1)).reshape(n, h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((yy - h / 2) / (0.32 * h)) ** 2 + ((xx - w / 2) / (0.36 * w)) ** 2))
    expected = centre * (0.25 + 0.75 * (1.0 - np.exp(-(nearest / 18.0) ** 2)))
    np.testing.assert_allclose(pixel_weights(lab), expected, atol=1e-4)


def test_pixels_are_named_by_the_lightness_and_hue_regions_bounds_included():
    from vehiclust.describe.vehicle_color import (BROWN_BELOW_L, CHROMATIC_AT, GRAY_LIGHTNESS, HUE_RANGES,
                                                  name_pixels)

    def by_rule(lightness: float, chroma: float, hue: float) -> str:
        if chroma <= CHROMATIC_AT:
            return next((name for bound, name in GRAY_LIGHTNESS if lightness > bound), "black")
        if lightness < BROWN_BELOW_L and (47.0 <= hue < 105.0 or (hue >= 20.0 and chroma < 30.0)):
            return "brown"
        return next((name for bound, name in HUE_RANGES if hue < bound), "red")

    bounds = [b for b, _ in GRAY_LIGHTNESS] + [BROWN_BELOW_L]
    lightness = sorted({v for b in bounds if b >= 0 for v in (b - 0.5, float(b), b + 0.5)} | {0.0, 50.0, 100.0})
    hues = sorted({v for b, _ in HUE_RANGES for v in (b - 1.0, float(b), b + 1.0) if v < 360} | {0.0, 20.0, 359.0})
    chromas = [5.0, CHROMATIC_AT, CHROMATIC_AT + 1, 29.0, 60.0]
    grid = np.array([(lv, c, h) for lv in lightness for c in chromas for h in hues])
    angle = np.radians(grid[:, 2])
    lab = np.stack([grid[:, 0], grid[:, 1] * np.cos(angle), grid[:, 1] * np.sin(angle)], axis=1)
    named = [COLOR_NAMES[i] for i in name_pixels(lab)]
    # the rule on the hue and chroma as name_pixels recovers them from a and b (rounding)
    hue_back = np.degrees(np.arctan2(lab[:, 2], lab[:, 1])) % 360.0
    chroma_back = np.hypot(lab[:, 1], lab[:, 2])
    assert named == [by_rule(lv, c, h) for (lv, _, _), c, h in zip(grid, chroma_back, hue_back)]
