"""Worker processes on this machine, for pieces of a stage that each run best on one thread.

Fits of milliseconds gain nothing from more threads, and the numba code of UMAP and HDBSCAN
holds the GIL, so threads would not run two of them at once; processes do. The pool is loky's
reusable executor (the one joblib and scikit-learn use): its workers start once and serve every
later call of the process. A piece runs in a worker on one thread, with numba's compiled code
from the user cache, and its warnings go back to the parent, which tallies them (the CLI's
summary) instead of a worker printing them between progress lines.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def worker_pool(workers: int):
    """loky's reusable executor with ``workers`` processes, or None for fewer than 2."""
    if workers < 2:
        return None
    from joblib.externals.loky import get_reusable_executor

    from vehiclust.thirdparty import environment

    # the workers and loky's resource tracker start in the working folder, which may be the
    # user's input or --out: with PYTHONSAFEPATH nothing lying there is imported in place of a
    # module (as for the notebook's kernel)
    with environment(PYTHONSAFEPATH="1"):
        return get_reusable_executor(max_workers=workers, env={"PYTHONSAFEPATH": "1"})


def start(pool, function: Callable, *args) -> Callable[[], Any]:
    """``function(*args)`` in a worker of ``pool`` (here, when ``pool`` is None, and only once
    its result is asked for); returns the call that waits for the result."""
    if pool is None:
        return lambda: function(*args)
    future = pool.submit(in_worker, function, *args)
    return lambda: unpacked(future.result())


def in_worker(function: Callable, *args) -> tuple[Any, list[tuple]]:
    """What a worker runs: ``function(*args)`` on one thread; returns it with the warnings it
    raised, each once."""
    from vehiclust.cluster.backends import limited_threads
    from vehiclust.thirdparty import configure_process

    configure_process()
    with warnings.catch_warnings(record=True) as caught, limited_threads(1):
        warnings.simplefilter("always")
        result = function(*args)
    return result, list(dict.fromkeys((w.category, str(w.message), w.filename, w.lineno) for w in caught))


def unpacked(sent: tuple[Any, list[tuple]]) -> Any:
    """A worker's result, its warnings raised again here (where the CLI tallies them)."""
    result, caught = sent
    for category, message, filename, lineno in caught:
        warnings.warn_explicit(message, category, filename, lineno)
    return result
