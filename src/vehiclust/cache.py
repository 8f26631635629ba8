"""The user's cache folder, shared by every run: exported models, weights, demo sources."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$VEHICLUST_CACHE``, else ``$XDG_CACHE_HOME/vehiclust``, else ``~/.cache/vehiclust``."""
    explicit = os.environ.get("VEHICLUST_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "vehiclust"
