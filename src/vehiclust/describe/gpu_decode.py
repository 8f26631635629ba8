"""Decode JPEG crops on the GPU (nvjpeg through torchvision) and resize them there.

On a GPU machine the network outruns CPU decoding several times over, so decoding moves to the
GPU where it can. Anything nvjpeg should not or cannot handle (not a JPEG, an EXIF orientation
to apply, a file nvjpeg rejects) is decoded on the CPU by ``decode_rgb``, the same function the
CPU path uses, so odd files keep exactly the CPU path's behaviour and error messages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

JPEG_MAGIC = b"\xff\xd8"
JPEG_END = b"\xff\xd9"  # a file without it is truncated; nvjpeg would fill in grey, PIL refuses
# An APP1 "Exif" segment can carry an orientation that nvjpeg ignores; such files go to PIL.
EXIF_MARKER = b"Exif\x00\x00"
EXIF_SEARCH_BYTES = 64


def nvjpeg_available(device: str) -> bool:
    """True when torchvision's image extension can decode on this CUDA device."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except Exception:  # noqa: BLE001 - torchvision missing, or its C extension failed to load
        return False
    return True


def gpu_decodable(blob: bytes) -> bool:
    return (blob[:2] == JPEG_MAGIC and blob[-2:] == JPEG_END
            and EXIF_MARKER not in blob[:EXIF_SEARCH_BYTES])


class NvjpegDecoder:
    """Batched nvjpeg decoding to RGB, then one bilinear (antialiased) resize per image."""

    def __init__(self, device: str = "cuda") -> None:
        from torchvision.io import ImageReadMode, decode_jpeg

        self.device = torch.device(device)
        self._decode_jpeg = decode_jpeg
        self._rgb = ImageReadMode.RGB

    def decode(self, blobs: list[bytes]) -> list[torch.Tensor | None]:
        """CHW uint8 tensors on the device; None where nvjpeg failed (the caller falls back)."""
        if not blobs:
            return []
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            return list(self._decode_jpeg(tensors, mode=self._rgb, device=self.device))
        except RuntimeError:
            # A batch fails as a whole on one bad file: retry one by one to keep the others.
            return [self._decode_one(t) for t in tensors]

    def _decode_one(self, tensor: torch.Tensor) -> torch.Tensor | None:
        try:
            return self._decode_jpeg(tensor, mode=self._rgb, device=self.device)
        except RuntimeError:
            return None


def resize_batch(images_chw: list[torch.Tensor], size: int) -> torch.Tensor:
    """uint8 CHW images of any sizes -> uint8 [N, size, size, 3], bilinear with antialiasing
    (what PIL's reduce + bilinear approximates); rounding and the cast run once per batch."""
    resized = [F.interpolate(image[None].float(), size=(size, size), mode="bilinear",
                             align_corners=False, antialias=True) for image in images_chw]
    batch = torch.cat(resized).round_().clamp_(0, 255).to(torch.uint8)
    return batch.permute(0, 2, 3, 1)
