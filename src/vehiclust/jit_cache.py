"""numba's compiled code kept across runs for the libraries that do not ask for it.

umap-learn and fast_hdbscan mark almost none of their numba functions ``cache=True`` (umap: 1
of 117, fast_hdbscan: 0 of 98), so every process compiles them again: on a 1,000-image demo run
on the loaded 2-core machine the first UMAP fit took 118 s and the first HDBSCAN 153 s, the
later ones 4 s and under 1 s. :func:`cache_compiled_code` makes ``cache=True`` the default of
numba's ``njit`` and ``jit`` for the modules imported after it; the code lands in
``NUMBA_CACHE_DIR`` (the user cache, see ``thirdparty``). numba keys each entry by the function's
source file, signature and closure values, and compiles again when any of them changes.
"""

from __future__ import annotations

import functools
import warnings

_MARK = "_vehiclust_caches"
_warned = False  # that no compiled code is kept: said once per process


def _caching(decorator):
    """numba's ``decorator`` (njit or jit) with ``cache=True`` unless the library said
    ``cache=False``, and without it where numba finds no folder to write the cache in: it refuses
    to compile a cached function then ("no locator available"), which would stop umap (one of
    its functions asks for a cache itself), pynndescent or fast_hdbscan at import."""
    @functools.wraps(decorator)
    def decorate(*args, **kwargs):
        if kwargs.get("cache") is False:
            return decorator(*args, **kwargs)
        kwargs["cache"] = True
        uncached = {**kwargs, "cache": False}
        try:
            made = decorator(*args, **kwargs)
        except RuntimeError as error:
            _no_cache_folder(error)
            return decorator(*args, **uncached)
        if _is_dispatcher(made):
            return made

        def waiting(function):  # ``@njit(fastmath=True)``: the refusal comes with the function
            try:
                return made(function)
            except RuntimeError as error:
                _no_cache_folder(error)
                return decorator(*args, **uncached)(function)
        return waiting

    setattr(decorate, _MARK, True)
    return decorate


def _no_cache_folder(error: RuntimeError) -> None:
    """Re-raise ``error`` unless it is numba's refusal to cache for want of a folder; say once
    that compiled code is not kept (every process compiles again: minutes for UMAP)."""
    global _warned
    if "no locator available" not in str(error):
        raise error
    if _warned:
        return
    _warned = True
    warnings.warn("numba finds no folder to keep compiled code in (NUMBA_CACHE_DIR, the user cache and the "
                  "packages' folders are read-only): it compiles again in every process, which is slower",
                  RuntimeWarning, stacklevel=3)


def _is_dispatcher(made) -> bool:
    from numba.core.dispatcher import Dispatcher

    return isinstance(made, Dispatcher)


def cache_compiled_code() -> None:
    """Call before umap, pynndescent or fast_hdbscan are imported (later imports keep their
    compiled code; earlier ones are unaffected). Idempotent."""
    try:
        import numba
    except ImportError:  # numba comes with umap-learn; without it there is nothing to cache
        return
    # Functions numba cannot cache (those using dynamic globals) still run, compiled per
    # process; the warning says only that, and it is this module's doing, not the user's.
    warnings.filterwarnings("ignore", message="Cannot cache compiled function")
    for name in ("njit", "jit"):
        decorator = getattr(numba, name)
        if not getattr(decorator, _MARK, False):
            setattr(numba, name, _caching(decorator))


def compiled(**options):
    """``numba.njit(nogil=True, **options)`` for vehiclust's own loops, with an on-disk cache, or
    without one where numba finds no folder to write it in (it refuses to compile a cached
    function then, and the functions are compiled in every process instead)."""
    import numba

    def compile_(function):
        try:
            return numba.njit(cache=True, nogil=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, nogil=True, **options)(function)
    return compile_
