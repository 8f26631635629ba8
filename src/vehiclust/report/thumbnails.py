"""Small JPEG thumbnails as data URIs, so report.html is one file that opens offline."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw

from vehiclust.collection.imageio import UnreadableImage, decode_rgb, read_bytes

THUMB_SIDE = 112


def thumbnail_uri(location: str, side: int = THUMB_SIDE) -> str:
    if not location:
        return placeholder_uri("no image", side)
    try:
        image = decode_rgb(read_bytes(location), (side * 2, side * 2))
    except UnreadableImage:
        return placeholder_uri("unreadable", side)
    image.thumbnail((side, side))
    return _encode(image)


def placeholder_uri(text: str, side: int = THUMB_SIDE) -> str:
    image = Image.new("RGB", (side, side), (220, 220, 220))
    ImageDraw.Draw(image).text((8, side // 2 - 6), text, fill=(90, 90, 90))
    return _encode(image)


def _encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
