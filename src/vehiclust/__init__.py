"""vehiclust: cluster, explain and clean large collections of vehicle images.

The package is laid out by pipeline stage::

    collection  ->  describe  ->  cluster  ->  outliers  ->  report
    (ingest)        (vectors)     (sweep)      (verdicts)    (html)

``vehiclust.pipeline`` chains the stages over a :class:`~vehiclust.runfolder.RunFolder`;
the CLI (``vehiclust.cli``) only calls the library.
"""

__version__ = "0.1.0"

from vehiclust.errors import InputError, VehiclustError  # noqa: E402


def __getattr__(name: str):
    # lazy: reading results pulls in pandas/scikit-learn, which `import vehiclust` should not
    if name in ("load_run", "RunResults"):
        from vehiclust import results

        return getattr(results, name)
    raise AttributeError(f"module 'vehiclust' has no attribute {name!r}")


__all__ = ["InputError", "RunResults", "VehiclustError", "__version__", "load_run"]
