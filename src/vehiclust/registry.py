"""One registry pattern for everything a user picks by name: descriptors, backbones, clustering
algorithms, outlier detectors and checks.

Each kind defines a frozen dataclass spec with at least ``name`` and ``summary`` (plus every
option and role of that kind, declared instead of probed) and one :class:`Registry` for it.
Entries are registered where they are defined::

    ALGORITHMS = Registry("algorithm", AlgorithmSpec, builtins=("vehiclust.cluster.algorithms",))

    @ALGORITHMS.add("kmeans", summary="k-means (faiss when installed)", takes_k=True)
    class KMeansClusterer(...): ...

``builtins`` names the modules that register the built-in entries; they are imported on the
first lookup, so the registry module imports none of them and no import cycle forms. Listings
(``vehiclust descriptors``, CLI help) are generated from :meth:`Registry.table`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from vehiclust.errors import VehiclustError

Spec = TypeVar("Spec")


class Registry(Generic[Spec]):
    """Named specs of one kind, registered at their definition, looked up by name."""

    def __init__(self, kind: str, spec_type: type[Spec], builtins: tuple[str, ...] = ()):
        if not dataclasses.is_dataclass(spec_type):
            raise TypeError(f"{spec_type!r}: a registry's spec must be a dataclass")
        self.kind = kind
        self.spec_type = spec_type
        self._builtins = builtins
        self._loaded = not builtins
        self._entries: dict[str, Spec] = {}

    # -- registering ---------------------------------------------------------------------
    def register(self, spec: Spec) -> Spec:
        """Add one spec; a name may be registered once."""
        if not isinstance(spec, self.spec_type):
            raise TypeError(f"{spec!r} is not a {self.spec_type.__name__}")
        name = spec.name
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = spec
        return spec

    def add(self, name: str, **fields: Any) -> Callable[[Any], Any]:
        """Decorator: register ``spec_type(name=name, factory=<decorated>, **fields)``."""

        def decorate(factory: Any) -> Any:
            self.register(self.spec_type(name=name, factory=factory, **fields))
            return factory

        return decorate

    # -- looking up ----------------------------------------------------------------------
    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtins:
                importlib.import_module(module)

    def get(self, name: str) -> Spec:
        """The spec called ``name``; an unknown name is a one-line error listing the known ones."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise VehiclustError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self, where: Callable[[Spec], bool] | None = None) -> list[str]:
        """Registered names in registration order, optionally only those whose spec passes ``where``."""
        self._load()
        return [n for n, spec in self._entries.items() if where is None or where(spec)]

    def specs(self) -> list[Spec]:
        self._load()
        return list(self._entries.values())

    def table(self) -> list[dict[str, Any]]:
        """One dict per entry with every declared field except the factory (for listings, help)."""
        return [
            {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "factory"}
            for spec in self.specs()
        ]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
