"""What each describer of the default pass costs per image, on one thread.

    python benchmarks/describer_costs.py [--images 256] [--folder DIR]

The images are the benchmark's photographs (``end_to_end.make_images``) or the JPEGs of
``--folder`` (the demo collection, say). Each describer gets what the describe pass gives it:
224 x 224 views, or the originals for those that ask for them (quality). The network is timed
on the same views, and so is decoding (the network alone decodes straight to 224 x 224; the
default pass decodes the original once and resizes it), so the lines add up to what each pass
costs on one core. Their quotient predicts the ratio ``benchmarks/describe_throughput.py``
measures (reading files and writing chunks aside).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from describe_throughput import default_pass  # noqa: E402
from end_to_end import make_images  # noqa: E402

from vehiclust.collection.imageio import decode_rgb  # noqa: E402
from vehiclust.describe.registry import DESCRIPTORS  # noqa: E402


def best_of(runs: int, function) -> float:
    best = np.inf
    for _ in range(runs):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def describers() -> dict[str, object]:
    """One describer object per describer of the default pass (a backbone's gives several
    descriptors in one call)."""
    out = {}
    for name in default_pass():
        spec = DESCRIPTORS.get(name)
        key = spec.describer or name
        if key not in out:
            out[key] = spec.factory(threads=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--folder", type=Path, help="JPEGs to use instead of the benchmark's photographs")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            folder = Path(tmp) / "images"
            make_images(folder, args.images)
        files = sorted(folder.rglob("*.jpg"))[: args.images]
        blobs = [f.read_bytes() for f in files]
    n = len(blobs)
    views = np.stack([np.asarray(decode_rgb(b, (224, 224))) for b in blobs])
    costs = {}
    with threadpool_limits(1):
        decode_view = best_of(3, lambda: [decode_rgb(b, (224, 224)) for b in blobs]) / n * 1e3
        decode_both = best_of(3, lambda: [_original_and_view(b) for b in blobs]) / n * 1e3
        for key, describer in describers().items():
            if getattr(describer, "decode", None):  # asks for the originals
                images = [describer.decode(b) for b in blobs]
                call = lambda d=describer, im=images: d.describe(im)  # noqa: E731
            else:
                call = lambda d=describer: [d.describe(views[i:i + args.batch])  # noqa: E731
                                            for i in range(0, n, args.batch)]
            call()  # warm-up: first-call costs (model load, caches) are not per image
            costs[key] = best_of(3, call) / n * 1e3
    print(f"{n} images from {folder if args.folder else 'the benchmark photographs'}, one thread, best of 3")
    print(f"  {'decode, 224 view':22s} {decode_view:7.2f} ms/image")
    print(f"  {'decode, original+view':22s} {decode_both:7.2f} ms/image")
    for key, ms in costs.items():
        print(f"  {key:22s} {ms:7.2f} ms/image")
    network = sum(ms for key, ms in costs.items() if DESCRIPTORS.get(key).backbone)
    alone, full = decode_view + network, decode_both + sum(costs.values())
    print(f"  network alone {alone:.2f} ms/image, default pass {full:.2f}: predicted ratio {alone / full:.2f} "
          f"(target 0.80; the default pass may spend {alone / 0.8 - alone - decode_both + decode_view:.2f} ms "
          f"on the describers beside the network, it spends {full - alone - decode_both + decode_view:.2f})")


def _original_and_view(blob: bytes) -> None:
    """The default pass's decode: the original (longer side capped) and a 224 view from it."""
    from vehiclust.quality.describer import MAX_SIDE

    original = decode_rgb(blob, None, max_side=MAX_SIDE)
    original.resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=2.0)


if __name__ == "__main__":
    main()
