"""The ``quality`` describer: image quality measurements as a descriptor, in the describe pass.

Its spec declares ``needs_original=True``: blur, noise and JPEG blocking must be measured on the
pixels as stored, not on the 224 x 224 copy the networks get (enlarging a 60-pixel crop to 224
invents blur, shrinking a noisy 400-pixel crop hides the noise). An extractor that honours the
flag calls :meth:`QualityDescriber.decode` on each file's bytes and passes a list of images of
their own sizes to :meth:`QualityDescriber.describe`; one that does not passes the usual
N x S x S x 3 batch, which still works (with the caveat above).

The matrix has the columns of :data:`vehiclust.quality.features.COLUMNS`, listed again in the
descriptor's provenance (``columns``) so that readers pick columns by name.
"""

from __future__ import annotations

import numpy as np

from vehiclust.collection.imageio import DEFAULT_MAX_PIXELS, decode_rgb
from vehiclust.describe.registry import DESCRIPTORS
from vehiclust.quality.brisque import default_model
from vehiclust.quality.features import BLUR_SIDE, BLUR_WINDOW, COLUMNS, measure_batch

QUALITY_DESCRIPTOR = "quality"
QUALITY_VERSION = 1
MAX_SIDE = 512  # larger originals are reduced to this longer side before measuring


def decode_original(data: bytes, max_side: int = MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Upright 8-bit RGB at the file's own resolution, reduced only when its longer side exceeds
    ``max_side`` (the same decode the describe pass gives describers that need originals)."""
    return np.asarray(decode_rgb(data, None, max_pixels, max_side=max_side))


@DESCRIPTORS.add(QUALITY_DESCRIPTOR, summary="image quality measurements (BRISQUE, exposure, blur, noise, ...)",
                 width=len(COLUMNS), columns=tuple(COLUMNS), version=QUALITY_VERSION, support=True,
                 clustered=False, needs_original=True, max_side=MAX_SIDE, tags=("classical", "quality"))
class QualityDescriber:
    """Per-image quality measurements (BRISQUE, exposure, contrast, blur, noise, colour, JPEG
    blocking, a perceptual hash); see :mod:`vehiclust.quality.features` for each column."""

    input_size = 224  # only used by extractors that ignore ``needs_original``
    outputs = {QUALITY_DESCRIPTOR: len(COLUMNS)}

    def __init__(self, threads: int | None = None, max_side: int = MAX_SIDE):
        self.threads = threads
        self.max_side = max_side

    def decode(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        return decode_original(data, self.max_side, max_pixels)

    def describe(self, images) -> dict[str, np.ndarray]:
        from threadpoolctl import threadpool_limits

        # one BLAS thread per image: the images themselves are spread over threads
        with threadpool_limits(1):
            return {QUALITY_DESCRIPTOR: measure_batch(images, self.threads)}

    def provenance(self) -> dict:
        model = default_model()
        return {
            "model": "image quality measurements", "columns": list(COLUMNS),
            "resolution": f"original, longer side capped at {self.max_side} px",
            "blur": f"Crete-Roffet on a {BLUR_SIDE}-px thumbnail, window {BLUR_WINDOW}",
            "brisque_model": model.source if model else None,
            "brisque": "LIVE-trained SVR from the installed 'brisque' package" if model
            else "NaN: the 'brisque' package (its model files) is not installed",
        }


def quality_columns(meta: dict) -> list[str]:
    """Column names of a stored quality matrix (from its provenance)."""
    return list(meta.get("columns") or COLUMNS)

