"""Shared fixtures: small collections of real photographs (scikit-image's bundled ones) and
every kind of bad file the pipeline must survive."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field",
          "immunohistochemistry")


def real_photos() -> dict[str, np.ndarray]:
    """RGB photographs bundled with scikit-image (no network needed)."""
    from skimage import data

    photos = {}
    for name in PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        image = loader()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos[name] = np.ascontiguousarray(image[..., :3])
    return photos


def variants(image: np.ndarray, count: int, rng: np.random.Generator) -> list[Image.Image]:
    """Crops, flips, brightness changes and rescales of one photograph."""
    out = []
    h, w = image.shape[:2]
    for _ in range(count):
        y0, x0 = rng.integers(0, h // 5), rng.integers(0, w // 5)
        y1, x1 = h - rng.integers(0, h // 5), w - rng.integers(0, w // 5)
        crop = image[y0:y1, x0:x1].astype(np.float32) * rng.uniform(0.7, 1.2)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        pil = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
        side = int(rng.integers(160, 320))
        out.append(pil.resize((side, int(side * pil.height / pil.width))))
    return out


def write_photo_folder(root: Path, per_photo: int = 6, seed: int = 0) -> list[str]:
    """VeRi-Wild-like layout: one numbered folder per source photo, JPEG images inside."""
    rng = np.random.default_rng(seed)
    written = []
    for index, (name, image) in enumerate(sorted(real_photos().items())):
        folder = root / f"{index + 1:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j, variant in enumerate(variants(image, per_photo, rng)):
            path = folder / f"{index * 100 + j:06d}.jpg"
            variant.save(path, quality=90)
            written.append(path.relative_to(root).as_posix())
    return sorted(written)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_photo_folder(root)
    return root


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def write_bad_files(root: Path, good_jpeg: bytes) -> dict[str, str]:
    """Every kind of unusable file, named by kind; returns {relative path: expected reason part}."""
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    files = {
        "zero.jpg": (b"", "empty file"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 3], "decode"),
        "corrupt.jpg": (good_jpeg[:200] + os.urandom(2000), ""),
        "not_an_image.jpg": (b"this is a text file, not a picture\n" * 20, "not a recognised image"),
        "bomb.png": (png_with_header_size(200_000, 200_000), "too many pixels"),
    }
    expected = {}
    for name, (content, reason) in files.items():
        (bad / name).write_bytes(content)
        expected[f"bad/{name}"] = reason
    unreadable = bad / "no_permission.jpg"
    unreadable.write_bytes(good_jpeg)
    unreadable.chmod(0)
    expected["bad/no_permission.jpg"] = "permission"
    (bad / "dangling.jpg").symlink_to(bad / "does-not-exist.jpg")
    expected["bad/dangling.jpg"] = "dangling"
    return expected


def write_case_bundle(root: Path, paths: list[str], descriptors: dict[str, np.ndarray],
                      header: str = "paths") -> Path:
    """The assignment's bundle in its real format: backslash paths and pickled arrays."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({header: [p.replace("/", "\\") for p in paths]}).to_csv(root / "images_paths.csv", index=False)
    (root / "descriptors").mkdir(exist_ok=True)
    for name, matrix in descriptors.items():
        with open(root / "descriptors" / f"{name}.pickle", "wb") as fh:
            pickle.dump(matrix, fh)
    return root
