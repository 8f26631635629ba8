"""The registry pattern every extension point uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from vehiclust.errors import VehiclustError
from vehiclust.registry import Registry


@dataclass(frozen=True)
class ToySpec:
    name: str
    summary: str
    factory: Any = None
    takes_k: bool = False


def test_entries_are_declared_at_their_definition_and_listed_without_factories():
    toys = Registry("toy", ToySpec)

    @toys.add("first", summary="the first toy", takes_k=True)
    class First:
        pass

    toys.register(ToySpec("second", "the second toy"))
    assert toys.names() == ["first", "second"]
    assert toys.get("first").factory is First
    assert toys.names(where=lambda s: s.takes_k) == ["first"]
    assert toys.table() == [{"name": "first", "summary": "the first toy", "takes_k": True},
                            {"name": "second", "summary": "the second toy", "takes_k": False}]
    assert "second" in toys and len(toys) == 2


def test_an_unknown_name_is_one_line_naming_the_known_ones():
    toys = Registry("toy", ToySpec)
    toys.register(ToySpec("only", "x"))
    with pytest.raises(VehiclustError, match=r"^unknown toy 'other'; known: only$"):
        toys.get("other")


def test_a_name_registers_once_and_specs_must_be_of_the_kind():
    toys = Registry("toy", ToySpec)
    toys.register(ToySpec("a", "x"))
    with pytest.raises(ValueError, match="registered twice"):
        toys.register(ToySpec("a", "y"))
    with pytest.raises(TypeError):
        toys.register("a")


def test_builtins_are_imported_on_first_lookup_only(monkeypatch):
    imported = []
    monkeypatch.setattr("importlib.import_module", lambda name: imported.append(name))
    toys = Registry("toy", ToySpec, builtins=("some.module",))
    assert imported == []
    toys.names()
    toys.names()
    assert imported == ["some.module"]
