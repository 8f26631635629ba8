"""Unusual but valid images decode to upright RGB; unusable files give a reason, never a crash."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import png_with_header_size, real_photos
from vehiclust.collection.imageio import UnreadableImage, decode_rgb, probe, read_bytes


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return real_photos()["chelsea"][:200, :300]  # 300 wide, 200 high


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_cmyk_jpeg(photo):
    data = encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95)
    out = np.asarray(decode_rgb(data))
    assert out.shape == (200, 300, 3)
    assert np.abs(out.astype(int) - photo.astype(int)).mean() < 12


def test_16_bit_grayscale_png(photo):
    gray16 = (np.asarray(Image.fromarray(photo).convert("L"), dtype=np.uint16) * 257)
    data = encode(Image.fromarray(gray16), "PNG")
    out = np.asarray(decode_rgb(data))
    assert out.shape == (200, 300, 3)
    expected = np.asarray(Image.fromarray(photo).convert("L"), dtype=int)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1


def test_palette_with_transparency_and_alpha(photo):
    palette = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    assert np.asarray(decode_rgb(encode(palette, "PNG"))).shape == (200, 300, 3)
    rgba = Image.fromarray(photo).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: becomes the neutral background
    out = np.asarray(decode_rgb(encode(rgba, "PNG")))
    assert (out == 128).all()


def test_grayscale_and_one_pixel():
    assert np.asarray(decode_rgb(encode(Image.new("L", (5, 7), 9), "JPEG"))).shape == (7, 5, 3)
    one = decode_rgb(encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), size=(224, 224))
    assert one.size == (224, 224)
    assert tuple(np.asarray(one)[100, 100]) == (200, 10, 10)


def test_exif_rotation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(Image.fromarray(photo), "JPEG", exif=exif, quality=95)
    assert np.asarray(decode_rgb(data)).shape == (300, 200, 3)  # upright: taller than wide


def test_exif_rotation_in_probe(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "rotated.jpg"
    Image.fromarray(photo).save(path, exif=exif)
    result = probe(str(path))
    assert (result.width, result.height) == (200, 300) and result.error == ""


def test_non_ascii_and_spaces_in_path(tmp_path, photo):
    path = tmp_path / "dossier avec espace" / "véhicule ü 車.jpg"
    path.parent.mkdir()
    Image.fromarray(photo).save(path)
    assert probe(str(path)).width == 300
    assert np.asarray(decode_rgb(read_bytes(str(path)))).shape == (200, 300, 3)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"plain text, not an image\n" * 10, "not a recognised image"),
    (png_with_header_size(100_000, 100_000), "too many pixels"),
])
def test_unusable_bytes_have_reasons(tmp_path, content, reason):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    assert reason in probe(str(path)).error


def test_truncated_jpeg_fails_at_decode_with_reason(photo):
    data = encode(Image.fromarray(photo), "JPEG")
    with pytest.raises(UnreadableImage, match="cannot decode"):
        decode_rgb(data[: len(data) // 2])


def test_dangling_link(tmp_path):
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    assert "dangling" in probe(str(dangling)).error


def test_no_read_permission(tmp_path, photo, monkeypatch):
    locked = tmp_path / "locked.jpg"
    Image.fromarray(photo).save(locked)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the OS refuse as it would for a user
        real = os.open

        def refuse(path, *args, **kwargs):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    assert probe(str(locked)).error == "no read permission"
