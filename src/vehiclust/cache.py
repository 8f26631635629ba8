"""The user's cache folder, shared by every run: exported models, weights, demo sources."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """``$VEHICLUST_CACHE``, else ``$XDG_CACHE_HOME/vehiclust``, else ``~/.cache/vehiclust``."""
    explicit = os.environ.get("VEHICLUST_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "vehiclust"


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold ``lock_file`` (a blocking ``flock``) so that processes filling one cache entry take
    turns; the kernel releases it when the holder dies. Without flock (not POSIX) it only waits
    for nothing: the entries are still written atomically."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        yield
