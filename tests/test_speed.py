"""What keeps repeated work out of a run: numba's compiled code cached across processes, the
describers that need no network run beside it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np


def test_numba_keeps_compiled_code_in_the_user_cache_across_processes(tmp_path):
    env = {**os.environ, "VEHICLUST_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NUMBA_CACHE_DIR", None)
    module = tmp_path / "compiled.py"
    module.write_text("import numba\n@numba.njit(cache=True)\ndef double(x):\n    return 2 * x\n")
    code = ("from vehiclust.thirdparty import configure_process\nconfigure_process()\n"
            "import compiled\nprint(compiled.double(21))\n")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.stdout.strip() == "42", done.stderr
    numba_cache = tmp_path / "cache" / "third_party" / "numba"
    assert list(numba_cache.rglob("*.nbi")) and list(numba_cache.rglob("*.nbc"))
    assert not (tmp_path / "__pycache__").exists() or not list((tmp_path / "__pycache__").glob("*.nbi"))
