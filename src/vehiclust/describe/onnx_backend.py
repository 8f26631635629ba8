"""Export the image pipeline to ONNX once, cache it, and run it with ONNX Runtime.

ONNX Runtime on CPU is several times faster than PyTorch eager for this depthwise-heavy
network (it fuses conv+bn+relu6 and uses a blocked memory layout), so extraction runs the
exported graph and PyTorch is only needed to produce it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vehiclust.describe.backbones import BACKBONES
from vehiclust.errors import VehiclustError
from vehiclust.executor.base import available_cpus
from vehiclust.rules import sha256_file as weights_sha256

if TYPE_CHECKING:  # torch only exports a graph: running one needs ONNX Runtime alone
    import torch

    from vehiclust.describe.models.pipeline import ImagePipelineModel

# Bump when the graph changes in ways the weights hash and torch version cannot see
# (architecture, preprocessing, export options), so stale cached files are not reused.
EXPORT_FORMAT = "v2"
OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAMES = ("features", "logits")
# Features are post-ReLU6 averages of magnitude ~0..6; float reordering in fused kernels
# gives ~1e-5 differences, so anything near 1e-3 means a wrong graph, not rounding.
MAX_FEATURE_DIFF = 1e-3
VERIFY_BATCH = 3


class OnnxExportError(VehiclustError):
    """The exported graph does not reproduce the PyTorch model."""


def weights_file(name: str) -> Path:
    return BACKBONES.get(name).locate()


def build_pipeline(name: str) -> tuple[ImagePipelineModel, int]:
    """The export wrapper of a backbone by name, and the square input size it is fed."""
    from vehiclust.describe.models.pipeline import pipeline_of

    spec = BACKBONES.get(name)
    return pipeline_of(spec.load()), spec.square_size


def cache_key(name: str) -> str:
    """File stem that changes whenever the weights, torch or the export format change."""
    weights_hash = weights_sha256(weights_file(name))[:16]
    torch_version = version("torch").replace("+", "-")  # the installed torch's, not imported
    return f"{name}-{weights_hash}-torch{torch_version}-{EXPORT_FORMAT}"


def cached_onnx_model(name: str, cache_dir: Path) -> Path:
    """Path of the cached ONNX file for ``name``, exporting it on first use."""
    path = Path(cache_dir) / f"{cache_key(name)}.onnx"
    if not path.is_file():
        export_onnx(name, path)
    return path


def export_onnx(name: str, path: Path) -> Path:
    """Export the pipeline of backbone ``name`` to a self-contained ONNX file.

    The file is written next to its destination and moved into place only after it has been
    checked against PyTorch, so readers (or a crash) never see a partial or wrong model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, size = build_pipeline(name)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", prefix=f".{path.stem}-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _export_to(model, size, tmp)
        verify_export(model, size, tmp)
        tmp.chmod(0o644)  # mkstemp creates 0600; the cached model is not a secret
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def _export_to(model: torch.nn.Module, size: int, path: Path) -> None:
    """Export with the torch.export-based (dynamo) exporter and its ONNX optimiser.

    The legacy TorchScript exporter lowers the asymmetric TF "SAME" padding to separate Pad
    nodes that ONNX Runtime does not fuse; each one forces a blocked-layout round trip and
    costs ~30% of the run time. The dynamo exporter folds them into the Conv ``pads``.
    Only the batch axis is dynamic, so that padding is traced as constants.
    """
    import torch

    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"images": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and optional-dependency notices (torchvision)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def verify_export(model: torch.nn.Module, size: int, path: Path) -> None:
    """Compare the ONNX graph with PyTorch on a random uint8 batch; raise if they differ."""
    import torch

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (VERIFY_BATCH, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        ref_features, ref_logits = (t.numpy() for t in model(torch.from_numpy(batch)))
    features, logits = OnnxImageModel(path, threads=1).run(batch)
    diff = float(np.abs(features - ref_features).max())
    if not diff <= MAX_FEATURE_DIFF or features.shape != ref_features.shape:
        raise OnnxExportError(
            f"ONNX export of {path.name} does not match PyTorch: max |features diff| = "
            f"{diff:.3g} (allowed {MAX_FEATURE_DIFF}); delete the cache folder and retry, "
            "or report the torch/onnxruntime versions"
        )
    if logits.shape != ref_logits.shape:
        raise OnnxExportError(f"ONNX logits shape {logits.shape} != {ref_logits.shape}")


def _providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always as the fallback."""
    from vehiclust.thirdparty import import_onnxruntime

    ort = import_onnxruntime()

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


class OnnxImageModel:
    """An ONNX Runtime session over an exported pipeline: uint8 NHWC in, float32 out."""

    def __init__(self, onnx_path: Path, threads: int | None = None, precision: str = "fp32") -> None:
        from vehiclust.thirdparty import import_onnxruntime

        ort = import_onnxruntime()  # telemetry off, its device id under vehiclust's cache

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cpus()
        # One graph, run sequentially: inter-op threads would only compete for the cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep instead of spinning: the decoding threads and the numpy
        # describers share these cores. Measured on the shared 2-core machine (768 demo images,
        # features identical): the default pass 15.0 s -> 13.3 s, the network alone 12.9 -> 10.9 s.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(onnx_path)
        self.precision = precision  # "int8": a graph of ``describe.int8``, for the provenance
        self.session = ort.InferenceSession(str(self.path), options, providers=_providers())
        shape = self.session.get_inputs()[0].shape
        self.input_size = int(shape[1])

    def provenance(self) -> dict:
        return {"runtime": "onnxruntime", "onnx": str(self.path), "precision": self.precision}

    def run(self, batch_uint8_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, 1280], logits [N, 1000]) of a uint8 [N, S, S, 3] RGB batch."""
        batch = np.ascontiguousarray(batch_uint8_nhwc)
        expected = (self.input_size, self.input_size, 3)
        # Casting here would silently turn 0..1 floats into black images; refuse instead.
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"expected a uint8 batch [N, {', '.join(map(str, expected))}], "
                             f"got {batch.dtype} {batch.shape}")
        features, logits = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return features.astype(np.float32, copy=False), logits.astype(np.float32, copy=False)
