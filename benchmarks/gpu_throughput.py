"""GPU extraction throughput: JPEG files -> stored descriptors, beside the model-only rate.

Measured in one run on the GPU machine: (1) the network alone on uint8 batches already on the
GPU (the ceiling), (2) ``describe`` end to end with nvjpeg decoding on the GPU, (3) the same with
PIL decoding in CPU threads, for EfficientNet-Lite0 (224 px) and for a B7-sized network (600 px,
randomly initialised weights written in torchvision's layout: speed does not depend on the
values). Prints images/s and writes them as JSON.

Run: ``python benchmarks/gpu_throughput.py [--images 20000] [--b7-images 4000] [--json out.json]``
A smoke test on a machine without a GPU: ``--device cpu --images 300 --batch 8 --b7-images 100
--b7-batch 4 --b7-variant efficientnet_b0``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import make_images, peak_rss_mb  # noqa: E402

from vehiclust.collection import ingest  # noqa: E402
from vehiclust.describe import DescribeSettings, describe  # noqa: E402
from vehiclust.describe.models.weights import weights_env_var  # noqa: E402
from vehiclust.describe.onnx_backend import build_pipeline  # noqa: E402
from vehiclust.describe.torch_backend import TorchImageModel  # noqa: E402
from vehiclust.runfolder import RunFolder  # noqa: E402

SHARD = 1000


def _make_shard(args: tuple[str, int, int]) -> None:
    root, start, count = args
    make_images(Path(root) / f"shard{start // SHARD:04d}", count, seed=start)


def make_collection(root: Path, count: int) -> None:
    """``count`` JPEG crops of 200-400 px from real photographs, written by all cores."""
    jobs = [(str(root), s, min(SHARD, count - s)) for s in range(0, count, SHARD)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(_make_shard, jobs))


def write_random_b7(path: Path, variant: str) -> None:
    """A randomly initialised checkpoint in torchvision's layout (no real weights offline)."""
    from vehiclust.describe.models.efficientnet import EfficientNet

    model = EfficientNet(variant, num_classes=1000)
    mapping = model.key_map("torchvision")
    torch.save({mapping[k]: v for k, v in model.state_dict().items()}, path)


def model_only(name: str, device: str, batch: int, batches: int = 20) -> float:
    pipeline, size = build_pipeline(name)
    model = TorchImageModel(pipeline, size, device)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    for _ in range(3):
        model.run_tensor(images)
    _sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        model.run_tensor(images)
    _sync(device)
    return batches * batch / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def end_to_end(ingested: RunFolder, work: Path, names: list[str], settings: DescribeSettings) -> dict:
    shutil.copytree(ingested.root, work)  # ingest once; each measurement describes a fresh copy
    run = RunFolder(work)
    table = run.load_collection()
    started = time.perf_counter()
    describe(run, names, settings)
    seconds = time.perf_counter() - started
    meta = run.descriptor_meta(names[0])
    # meta["seconds"] is the extraction pass itself, without loading the weights and the model
    return {"images_per_s": len(table) / meta["seconds"], "images": len(table),
            "pass_seconds": meta["seconds"], "seconds_with_model_setup": seconds,
            "decoder": meta.get("decoder"), "decode_threads": meta.get("decode_threads"),
            "seconds_by_step": meta.get("seconds_by_step"), "runtime": meta.get("runtime")}


def decode_only(root: Path, device: str, threads: int, slice_rows: int = 128) -> float:
    """nvjpeg decoding + GPU resizing alone, files already in memory: the decoding ceiling."""
    from concurrent.futures import ThreadPoolExecutor

    from vehiclust.describe.gpu_decode import NvjpegDecoder, resize_batch

    blobs = [p.read_bytes() for p in sorted(root.rglob("*.jpg"))]
    decoder = NvjpegDecoder(device)

    def work(start: int) -> int:
        images = decoder.decode(blobs[start:start + slice_rows])
        return len(resize_batch(images, 224))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(0, min(len(blobs), 2048), slice_rows)))  # warm up
        _sync(device)
        started = time.perf_counter()
        done = sum(pool.map(work, range(0, len(blobs), slice_rows)))
        _sync(device)
    return done / (time.perf_counter() - started)


def measure(name: str, root: Path, tmp: Path, device: str, batch: int) -> dict:
    result = {"model_only": model_only(name, device, batch)}
    print(f"{name}: model only ({device}, batch {batch}): {result['model_only']:9.1f} images/s", flush=True)
    ingested = RunFolder(tmp / f"{name}-ingested")
    ingest(root, ingested)
    for label, gpu_decode, threads in (("nvjpeg", True, None), ("nvjpeg_x4", True, 4),
                                       ("pil_threads", False, None)):
        settings = DescribeSettings(device=device, batch_size=batch, gpu_decode=gpu_decode,
                                    decode_threads=threads)
        result[label] = e2e = end_to_end(ingested, tmp / f"{name}-{label}", [name], settings)
        print(f"{name}: end to end, decoder {e2e['decoder']:>6} x{e2e['decode_threads']:<2} ({e2e['images']} JPEGs): "
              f"{e2e['images_per_s']:9.1f} images/s ({e2e['images_per_s'] / result['model_only']:.0%} "
              f"of model only); seconds by step {e2e['seconds_by_step']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--b7-images", type=int, default=4000)
    parser.add_argument("--b7-variant", default="efficientnet_b7")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--b7-batch", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    report = {"gpu": gpu, "cpus": os.cpu_count(), "torch": torch.__version__}
    print(f"GPU {gpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        make_collection(tmp / "images", args.images)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - started:.0f} s", flush=True)
        if args.device.startswith("cuda"):
            for threads in (1, os.cpu_count()):
                rate = decode_only(tmp / "images", args.device, threads)
                report[f"nvjpeg_decode_resize_{threads}_threads"] = rate
                print(f"nvjpeg decode + resize only, {threads:2d} threads: {rate:9.1f} images/s", flush=True)
        report["efficientnet_lite0"] = measure("efficientnet_lite0", tmp / "images", tmp, args.device, args.batch)
        if args.b7_images:
            make_collection(tmp / "images_b7", args.b7_images)
            weights = tmp / "b7_random_torchvision.pth"
            write_random_b7(weights, args.b7_variant)
            os.environ[weights_env_var(args.b7_variant)] = str(weights)
            report[args.b7_variant] = measure(args.b7_variant, tmp / "images_b7", tmp, args.device, args.b7_batch)
    report["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS: {report['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
