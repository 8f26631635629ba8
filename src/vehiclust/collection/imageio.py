"""Reading images robustly: every valid file becomes upright 8-bit RGB, every invalid one a reason.

Images live either as files or as members of a zip archive (the case bundle ships
``veriwild.zip``); a *location* string names either: ``/abs/path.jpg`` or
``zip:/abs/archive.zip::member/path.jpg``.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats Pillow would hand to an external program (Ghostscript for EPS/PS), or only identifies
# without decoding (WMF/EMF, MPEG, and the BUFR/GRIB/HDF5 stubs): never opened as images.
UNSAFE_FORMATS = frozenset({"EPS", "WMF", "MPEG", "BUFR", "GRIB", "HDF5"})
Image.init()
with contextlib.suppress(ImportError):  # HEIC/HEIF, when the user installed Pillow's plugin for it
    from pillow_heif import register_heif_opener

    register_heif_opener()
SAFE_FORMATS = tuple(sorted(f for f in Image.OPEN if f not in UNSAFE_FORMATS))
# Every extension the installed Pillow opens (AVIF included when it has the plugin); the format
# itself is then read from the content, whatever the extension says.
IMAGE_SUFFIXES = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in SAFE_FORMATS
)
# Pictures this Pillow does not open: listed all the same, so each is a row saying so.
OTHER_PICTURE_SUFFIXES = frozenset({".heic", ".heif", ".jxl", ".eps", ".ps", ".wmf", ".emf", ".svg",
                                    ".dng", ".cr2", ".nef", ".arw"}) - IMAGE_SUFFIXES
DEFAULT_MAX_PIXELS = 100_000_000  # decompression-bomb guard; VeRi-Wild crops are ~0.1 MP
DEFAULT_MAX_IMAGE_BYTES = 256 << 20  # per image file or archive member; VeRi-Wild's are ~50 KB
NEUTRAL_BACKGROUND = (128, 128, 128)  # transparent pixels become mid-grey: neutral for CNNs

ZIP_PREFIX = "zip:"
ZIP_SEPARATOR = "::"


class UnreadableImage(Exception):
    """A file that cannot be used as an image; the message is the reason shown to the user."""


def zip_location(archive: Path, member: str) -> str:
    return f"{ZIP_PREFIX}{archive}{ZIP_SEPARATOR}{member}"


_zip_handles = threading.local()


def _zip_file(archive: str) -> zipfile.ZipFile:
    """One open ZipFile per thread and archive: ZipFile objects are not thread-safe."""
    cache = getattr(_zip_handles, "cache", None)
    if cache is None:
        cache = _zip_handles.cache = {}
    if archive not in cache:
        cache[archive] = zipfile.ZipFile(archive)
    return cache[archive]


def read_bytes(location: str, max_bytes: int | None = None) -> bytes:
    """The raw bytes at a location, or UnreadableImage with a reason a person understands.

    Only regular files are read (a FIFO would block, ``/dev/zero`` never ends), never more than
    the size they had when opened; ``max_bytes`` refuses larger files and archive members
    before they are read (ingest applies it; later stages read what ingest accepted).
    """
    if location.startswith(ZIP_PREFIX):
        return _read_member(location, max_bytes)
    path = Path(location)
    if path.is_symlink() and not path.exists():
        raise UnreadableImage("dangling symbolic link")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError as exc:
        raise UnreadableImage("file not found") from exc
    except PermissionError as exc:
        raise UnreadableImage("no read permission") from exc
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableImage("is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableImage("not_a_regular_file: a FIFO, device or socket")
        _check_size(info.st_size, max_bytes)
        try:
            data = fh.read(info.st_size)
        except OSError as exc:
            raise UnreadableImage(f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    return data


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise UnreadableImage(f"too large: {size:,} bytes exceed the limit of {max_bytes:,} per "
                              f"image (raise it with --max-image-bytes)")


def _read_member(location: str, max_bytes: int | None) -> bytes:
    """A zip member, refused by its declared size before it is inflated, and read no further
    than that size even when the archive lies about it (a zip bomb)."""
    archive, member = location[len(ZIP_PREFIX) :].split(ZIP_SEPARATOR, 1)
    try:
        zf = _zip_file(archive)
        info = zf.getinfo(member)
        _check_size(info.file_size, max_bytes)
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except KeyError as exc:
        raise UnreadableImage(f"missing from archive {archive}") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UnreadableImage(f"archive member unreadable: {exc}") from exc
    if len(data) > info.file_size:
        raise UnreadableImage("archive member larger than its header says (a zip bomb?)")
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    return data


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Parse the header (no pixel decoding yet) and refuse decompression bombs."""
    _allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=SAFE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"too many pixels (decompression bomb guard): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage("not a recognised image format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"corrupt image header: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise UnreadableImage(
            f"too many pixels: {width}x{height} = {width * height:,} exceeds the limit of "
            f"{max_pixels:,} (decompression bomb guard; raise it with --max-pixels)"
        )
    if width < 1 or height < 1:
        raise UnreadableImage(f"invalid size {width}x{height}")
    return image


def _allow_pixels(max_pixels: int) -> None:
    """Pillow refuses above twice its own MAX_IMAGE_PIXELS before our check runs, so a raised
    --max-pixels raises Pillow's limit too (never lowers it: other code may rely on it)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def upright_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as displayed, i.e. after the EXIF orientation is applied."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        orientation = 1
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: CMYK, 16-bit, float, palette, alpha, grayscale, 1-bit."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if mode.startswith("I;16") and lo >= 0 and hi <= 65535:
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        array = np.clip((array - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def decode_rgb(
    data: bytes, size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> Image.Image:
    """Decode to an upright RGB image, resized to ``size`` (width, height) when given, else
    reduced (keeping its aspect) to at most ``max_side`` pixels on its longer side.

    JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small,
    which is most of the decode cost saved for large photographs.
    """
    image = open_image(data, max_pixels)
    try:
        if image.format == "JPEG" and size is not None:
            image.draft("RGB", (max(size), max(size)))
        elif image.format == "JPEG" and max_side is not None and max(image.size) > 2 * max_side:
            image.draft("RGB", (max_side, max_side))  # 1/2, 1/4 or 1/8 scale, still >= max_side
        image.load()
        image = ImageOps.exif_transpose(image) or image
        image = to_rgb(image)
        if size is not None and image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        elif size is None and max_side is not None and max(image.size) > max_side:
            scale = max_side / max(image.size)
            reduced = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(reduced, Image.Resampling.BOX)
    except UnreadableImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
        raise UnreadableImage(f"cannot decode: {exc}") from exc
    return image


@dataclass(frozen=True)
class ProbeResult:
    """What the collection stage records of one file without decoding its pixels."""

    width: int = 0
    height: int = 0
    file_size: int = 0
    content_hash: str = ""
    format: str = ""
    mode: str = ""
    error: str = ""


def probe(location: str, max_pixels: int = DEFAULT_MAX_PIXELS,
          max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> ProbeResult:
    """Header facts and a content hash; an unusable file gives a ProbeResult with ``error``."""
    import hashlib

    try:
        data = read_bytes(location, max_bytes)
    except UnreadableImage as exc:
        return ProbeResult(error=str(exc))
    digest = hashlib.blake2b(data, digest_size=12).hexdigest()
    try:
        image = open_image(data, max_pixels)
        width, height = upright_size(image)
    except UnreadableImage as exc:
        return ProbeResult(file_size=len(data), content_hash=digest, error=str(exc))
    return ProbeResult(
        width=width,
        height=height,
        file_size=len(data),
        content_hash=digest,
        format=image.format or "",
        mode=image.mode,
    )


def is_image_name(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_SUFFIXES or suffix in OTHER_PICTURE_SUFFIXES
