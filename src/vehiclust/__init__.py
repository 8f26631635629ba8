"""vehiclust: cluster, explain and clean large collections of vehicle images.

The package is laid out by pipeline stage::

    collection  ->  describe  ->  cluster  ->  outliers  ->  report
    (ingest)        (vectors)     (sweep)      (verdicts)    (html)

``vehiclust.pipeline`` chains the stages over a :class:`~vehiclust.runfolder.RunFolder`;
the CLI (``vehiclust.cli``) only calls the library.
"""

__version__ = "0.1.0"

from vehiclust.errors import InputError, VehiclustError  # noqa: E402

__all__ = ["InputError", "VehiclustError", "__version__"]
