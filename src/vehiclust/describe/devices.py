"""Which device a describe pass runs on, decided without importing torch where no GPU can be.

Importing torch takes seconds. On Linux without any GPU driver's device file (NVIDIA's, WSL's
or ROCm's) torch cannot see a CUDA device, so ``auto`` means ``cpu`` at once and the CPU pass,
which runs its network in ONNX Runtime, never imports torch.
"""

from __future__ import annotations

import os
import sys

from vehiclust.errors import VehiclustError

DEVICES = ("auto", "cpu", "cuda")
GPU_DRIVER_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")  # NVIDIA, WSL, ROCm


def gpu_driver_present() -> bool:
    """False only where no GPU can be visible: Linux without any GPU driver's device file."""
    return not sys.platform.startswith("linux") or any(os.path.exists(p) for p in GPU_DRIVER_FILES)


def cuda_available() -> bool:
    if not gpu_driver_present():
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda[:N]' must exist."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not cuda_available():
            raise VehiclustError(f"--device {requested}: PyTorch sees no CUDA device here "
                                 f"(torch {_torch_version()}); use --device cpu or auto")
        return requested
    raise VehiclustError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)} or cuda:N")


def _torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "not installed"
