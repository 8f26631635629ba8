"""Pretrained weights that vehiclust does not ship: find the file, read it, check it, load it.

Every backbone with downloadable weights goes through the same steps, so that a wrong or
missing file always fails the same way, with one message that says what to do:

1. **resolve** a file (in :mod:`vehiclust.describe.models.weights`, which needs no torch): an
   explicit path (or a folder to look in), else the environment variable
   ``VEHICLUST_WEIGHTS_<NAME>`` (``VEHICLUST_WEIGHTS_EFFICIENTNET_B7``), else the weights cache
   folder (``$VEHICLUST_CACHE/weights``, else ``$XDG_CACHE_HOME/vehiclust/weights``, else
   ``~/.cache/vehiclust/weights``) under one of the file names the model accepts, else a
   fallback the model provides (a pip package). Nothing is downloaded: when no file is found
   the message names the file to get, where it is published, and the exact path to put it at.
2. **read** it: torch ``.pth``/``.pt``/``.pth.tar`` (zip or legacy format, ``weights_only``) or
   ``.safetensors``; training checkpoints are unwrapped (``{'state_dict': ..., 'epoch': ...}``)
   and wrapper prefixes stripped (``module.`` from DataParallel, ``_orig_mod.`` from
   ``torch.compile``).
3. **detect** the key layout (torchvision, timm, ...) from signature keys.
4. **verify** the file: a sha256 given by the caller, or the hash prefix that a published file
   name carries (torch.hub convention ``name-<first 8+ hex digits of sha256>.pth``), only for
   names whose publisher checks that convention.
5. **load** strictly: the model's keys are translated to the file's layout, and every missing,
   unexpected or wrongly shaped tensor is reported together, in the file's own key names.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vehiclust.errors import VehiclustError
from vehiclust.rules import sha256_file

# Pixel statistics in 0..1 units; pipelines that take 0..255 input multiply by 255.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # x * 2 - 1: TF "inception" / AdvProp preprocessing
INCEPTION_STD = (0.5, 0.5, 0.5)

# Wrapper prefixes that say nothing about the architecture; stripped when every key has one.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Containers that training scripts wrap the state dict in, most specific first.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "params")
# Missing buffers that do not change inference: BatchNorm's step counter.
IGNORABLE_MISSING = ("num_batches_tracked",)
MAX_LISTED = 5  # keys quoted per problem kind in an error message


class CheckpointError(VehiclustError):
    """A weights file was found but cannot be used as it is (unreadable, wrong model, corrupt)."""


@dataclass
class LoadedBackbone:
    """A backbone with its weights loaded, and everything needed to feed and describe it."""

    name: str
    model: nn.Module
    weights_path: Path
    layout: str
    input_size: tuple[int, int]  # (height, width) the weights were trained/evaluated at
    mean: tuple[float, float, float]  # 0..1 units, RGB
    std: tuple[float, float, float]
    feature_dim: int
    num_classes: int  # 0 when the file has no (usable) classifier
    details: dict = field(default_factory=dict)  # padding, bn eps, ... (for provenance)

    @property
    def has_logits(self) -> bool:
        return self.num_classes > 0

    def mean_255(self) -> tuple[float, float, float]:
        """The mean in the 0..255 units of ``ImagePipelineModel``."""
        return tuple(255.0 * m for m in self.mean)

    def std_255(self) -> tuple[float, float, float]:
        return tuple(255.0 * s for s in self.std)

    def provenance(self) -> dict:
        return {"model": self.name, "weights": str(self.weights_path),
                "weights_sha256": sha256_file(self.weights_path), "layout": self.layout,
                "input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "feature_dim": self.feature_dim, "num_classes": self.num_classes, **self.details}


# --- reading -------------------------------------------------------------------------------

def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from training containers, prefixes stripped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = read_safetensors(path)
    else:
        state = _torch_load(path)
    state = unwrap_state_dict(state, path)
    return strip_wrapper_prefixes(state)


def _benign_globals() -> list:
    """Harmless non-tensor objects training scripts leave in checkpoints: numpy scalars and
    dtypes (torchreid's rank-1 score), ``argparse.Namespace`` (timm's training arguments)."""
    import argparse

    from numpy import dtypes

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed: list = [np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"),
                     (scalar, "numpy._core.multiarray.scalar")]
    allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed + [argparse.Namespace]


def _torch_load(path: Path):
    """``torch.load`` that never unpickles arbitrary objects, with messages a user can act on."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _is_disallowed_global(exc):
            raise _unreadable(path, exc) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc
    # Maybe only benign objects besides the tensors (numpy scores, training arguments).
    try:
        with torch.serialization.safe_globals(_benign_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _is_disallowed_global(exc):
            raise _unreadable(path, exc) from exc
        raise CheckpointError(
            f"{path}: holds Python objects other than tensors and numbers, which vehiclust does "
            f"not unpickle (that could run arbitrary code). If you trust the file, re-save only "
            f"the weights: torch.save(torch.load(PATH, weights_only=False)['state_dict'], "
            f"NEW_PATH)") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc


def _is_disallowed_global(exc: BaseException) -> bool:
    text = str(exc)
    return "Unsupported global" in text or "GLOBAL" in text and "allowed" in text


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable PyTorch weights file ({_short(exc)}); it may "
                           f"be truncated or of another format: download it again")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file (the format the Hugging Face hub serves timm weights in).

    The format is an 8-byte little-endian header length, a JSON header mapping each name to
    dtype, shape and byte offsets, then the raw little-endian data; small enough to read here
    rather than depend on the ``safetensors`` package.
    """
    data = Path(path).read_bytes()
    try:
        (header_len,) = np.frombuffer(data[:8], dtype="<u8")
        header = json.loads(data[8:8 + int(header_len)])
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({_short(exc)})") from exc
    base = 8 + int(header_len)
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        if base + end > len(data):
            raise CheckpointError(f"{path}: truncated (tensor {name} ends past the end of the file); "
                                  f"download it again")
        raw = bytearray(data[base + begin:base + end])
        tensor = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        state[name] = tensor.reshape(info["shape"])
    return state


def write_safetensors(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write a ``.safetensors`` file (tests use it to produce hub-style timm files)."""
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name, tensor in state.items():
        raw = tensor.detach().contiguous().cpu().numpy().tobytes() if tensor.dtype != torch.bfloat16 \
            else tensor.detach().contiguous().view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as fh:
        fh.write(np.array([len(encoded)], dtype="<u8").tobytes())
        fh.write(encoded)
        for chunk in chunks:
            fh.write(chunk)


def unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The ``name -> tensor`` mapping inside whatever a training script saved."""
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, but be explicit
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    if not _is_state_dict(obj):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                obj = inner
                break
        else:
            raise CheckpointError(
                f"{path}: no state dict found (top-level keys: {', '.join(map(str, list(obj)[:8]))}); "
                f"expected tensors, or one of {', '.join(CONTAINER_KEYS)} holding them")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping) -> bool:
    values = list(obj.values())
    return bool(values) and sum(isinstance(v, torch.Tensor) for v in values) >= 0.9 * len(values)


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor],
                           prefixes: Iterable[str] = WRAPPER_PREFIXES) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DataParallel) and similar prefixes, repeatedly, when all keys have one."""
    state = dict(state)
    changed = True
    while changed and state:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def detect_layout(keys: Iterable[str], signatures: Mapping[str, Sequence[str]], path: Path,
                  model_name: str) -> str:
    """The layout most of whose signature keys are present (so one damaged key still leaves
    the layout recognisable, and the strict load then names exactly what is wrong)."""
    keys = set(keys)
    scores = {layout: sum(k in keys for k in required) for layout, required in signatures.items()}
    best = max(scores.values(), default=0)
    winners = [layout for layout, score in scores.items() if score == best]
    if best > 0 and len(winners) == 1:
        return winners[0]
    sample = ", ".join(sorted(keys)[:6])
    known = "; ".join(f"{layout}: {', '.join(req)}" for layout, req in signatures.items())
    raise CheckpointError(f"{path}: not a {model_name} weights file in any layout vehiclust knows "
                          f"(its keys start with: {sample}; expected keys per layout: {known})")


# --- verification --------------------------------------------------------------------------

def verify_sha256(path: Path, expected: str) -> str:
    """Check a full sha256 or a prefix of at least 8 hex digits; returns the full digest."""
    expected = expected.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", expected):
        raise VehiclustError(f"sha256 {expected!r} is not 8-64 hex digits")
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise CheckpointError(f"{path}: sha256 is {actual}, expected {expected}"
                              f"{'...' if len(expected) < 64 else ''}; the file is corrupt, "
                              f"truncated or not the published one: download it again")
    return actual


# --- strict loading ------------------------------------------------------------------------

def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, path: Path,
                      layout: str, model_name: str, key_map: Mapping[str, str] | None = None,
                      ignore_prefixes: Sequence[str] = ()) -> None:
    """Load ``state`` (in ``layout``'s key names) into ``model``, or explain every mismatch.

    ``key_map`` maps each of the model's own keys to the file's key (identity when None).
    File keys under ``ignore_prefixes`` (a re-identification classifier sized for its
    training set) are skipped. Missing BatchNorm step counters are filled from the model.
    """
    own = model.state_dict()
    key_map = dict(key_map) if key_map is not None else {k: k for k in own}
    if set(key_map) != set(own):
        raise RuntimeError("key_map does not cover the model's keys")  # a bug here, not the user's
    wanted = {ext: own_key for own_key, ext in key_map.items()}
    missing, mismatched = [], []
    converted = {}
    for own_key, ext in key_map.items():
        if ext not in state:
            if not own_key.endswith(IGNORABLE_MISSING):
                missing.append(ext)
            converted[own_key] = own[own_key]
            continue
        tensor = state[ext]
        if tuple(tensor.shape) != tuple(own[own_key].shape):
            mismatched.append(f"{ext}: file {tuple(tensor.shape)} vs model {tuple(own[own_key].shape)}")
            continue
        converted[own_key] = tensor.to(own[own_key].dtype)
    unexpected = [k for k in state if k not in wanted and not k.startswith(tuple(ignore_prefixes))]
    if missing or unexpected or mismatched:
        raise CheckpointError(mismatch_message(path, model_name, layout, missing, unexpected,
                                               mismatched))
    model.load_state_dict(converted, strict=True)


def mismatch_message(path: Path, model_name: str, layout: str, missing: Sequence[str],
                     unexpected: Sequence[str], mismatched: Sequence[str]) -> str:
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected),
                       ("with the wrong shape", mismatched)):
        if keys:
            listed = ", ".join(keys[:MAX_LISTED]) + (", ..." if len(keys) > MAX_LISTED else "")
            parts.append(f"{len(keys)} keys {what} (first: {listed})")
    return (f"{path}: does not fit {model_name} ({layout} layout): " + "; ".join(parts) +
            ". Is it the right file for this model (variant, width), complete and not truncated?")
