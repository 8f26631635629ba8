"""Run an image pipeline with PyTorch on a GPU (fp16, channels_last).

On the CPU, ONNX Runtime is several times faster than PyTorch eager, so extraction only comes
here when a CUDA device is present. The model is the same ``ImagePipelineModel`` the ONNX file
is exported from (uint8 NHWC in, float32 features and logits out), so both paths share one
definition and one set of weights.
"""

from __future__ import annotations

import numpy as np
import torch

PAD_MULTIPLE = 64


class TorchImageModel:
    """``ImagePipelineModel`` on a torch device; same ``run`` contract as ``OnnxImageModel``."""

    def __init__(self, pipeline: torch.nn.Module, input_size: int, device: str = "cuda",
                 half: bool | None = None) -> None:
        self.device = torch.device(device)
        # fp16 halves memory traffic on the GPU; features stay within ~1e-2 relative of fp32.
        self.half = self.device.type == "cuda" if half is None else half
        self.input_size = input_size
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
        model = pipeline.eval().to(self.device, memory_format=torch.channels_last)
        self.model = model.half() if self.half else model  # buffers (mean, scale) follow

    @torch.inference_mode()
    def run_tensor(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) as float32 tensors on the device, of a uint8 [N, S, S, 3] batch."""
        images = images.to(self.device, non_blocking=True)
        expected = (self.input_size, self.input_size, 3)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected a uint8 batch [N, {', '.join(map(str, expected))}], "
                             f"got {images.dtype} {tuple(images.shape)}")
        n = len(images)
        if self.device.type == "cuda" and n % PAD_MULTIPLE:
            # cudnn autotunes each new batch shape; padding the last, short batch keeps it to a few
            padding = images.new_zeros((PAD_MULTIPLE - n % PAD_MULTIPLE, *images.shape[1:]))
            images = torch.cat([images, padding])
        features, logits = self.model(images)
        return features[:n].float(), logits[:n].float()

    def provenance(self) -> dict:
        return {"runtime": f"torch {self.device}" + (" fp16" if self.half else ""),
                "precision": "fp16" if self.half else "fp32"}

    def run(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        tensor = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
        features, logits = self.run_tensor(tensor)
        return features.cpu().numpy(), logits.cpu().numpy()
