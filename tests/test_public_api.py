"""Every module keeps ``__all__`` complete: it names exactly the public classes and functions it defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import vnnbridge

MODULES = sorted(m.name for m in pkgutil.walk_packages(vnnbridge.__path__, "vnnbridge.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what the module lacks: {missing}"
    defined = {n for n, v in vars(module).items()
               if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
               and getattr(v, "__module__", None) == name}
    unlisted = sorted(defined - set(exported))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"


@pytest.mark.parametrize("name", MODULES)
def test_public_things_have_docstrings(name: str) -> None:
    module = importlib.import_module(name)
    assert inspect.getdoc(module), f"{name} has no module docstring"
    bare = [n for n in getattr(module, "__all__", []) if (inspect.isclass(getattr(module, n, None))
            or inspect.isfunction(getattr(module, n, None))) and not inspect.getdoc(getattr(module, n))]
    assert not bare, f"{name}: public names without a docstring: {bare}"
