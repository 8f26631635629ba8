"""Where the libraries vehiclust runs keep their own state: under the user cache folder, never
in the home folder's shared places (``~/.cache/Microsoft``, ``~/.cache/matplotlib``,
``~/.ipython``) and never in the run folder, which holds files from elsewhere.

Variables the user set are respected; only unset ones are filled in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from vehiclust.cache import cache_root


def state_dir(name: str) -> Path:
    return cache_root() / "third_party" / name


def state_env() -> dict[str, str]:
    """matplotlib's config and font cache, IPython's profile, Jupyter's connection files, numba's
    compiled code (kept across runs, also where the installed packages are read-only; read when
    numba is imported, so set before); the folders are made here (IPython falls back to a
    temporary folder and warns otherwise)."""
    env = {"MPLCONFIGDIR": state_dir("matplotlib"), "IPYTHONDIR": state_dir("ipython"),
           "JUPYTER_RUNTIME_DIR": state_dir("jupyter_runtime"), "NUMBA_CACHE_DIR": state_dir("numba")}
    for folder in env.values():
        with contextlib.suppress(OSError):  # an unwritable cache: the libraries say so themselves
            folder.mkdir(parents=True, exist_ok=True)
    return {name: str(folder) for name, folder in env.items()}


def configure_process() -> None:
    """Fill in the state folders of this process (call before matplotlib or Jupyter start)."""
    for name, value in state_env().items():
        os.environ.setdefault(name, value)
    from vehiclust.jit_cache import cache_compiled_code

    cache_compiled_code()  # after NUMBA_CACHE_DIR, before umap or fast_hdbscan are imported


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """These environment variables set for what runs inside, the old values back afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def import_onnxruntime():
    """onnxruntime with its telemetry off. Loading the library writes a device id under
    ``$XDG_CACHE_HOME/Microsoft``: it is pointed at vehiclust's cache for that moment only, so
    that nothing else of the process (torch, huggingface) changes its cache folder."""
    import sys

    if "onnxruntime" not in sys.modules:
        with environment(XDG_CACHE_HOME=str(state_dir("onnxruntime"))):
            import onnxruntime
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    return onnxruntime
