"""Broken agents: the reference agent with exactly one defect each, named after it (CATALOGUE).

The catalogue is declared once, by the `@register` decorator on each class: the first use of this
package imports every module of it (each registers its agents) and exposes every registered class
by its name (`from fakes.broken import <Name>`). A new broken agent is a decorated class in a
module of this package; nothing else lists it (docs/ARCHITECTURE.md, "a broken agent").

Loading is deferred to that first use, so that `python -m fakes.broken` without the `[agent]`
extra (the broken agents subclass the reference agent) says which extra to install.
"""
from __future__ import annotations

import importlib
import pkgutil

_REGISTRY_NAMES = ("CATALOGUE", "build_server", "describe", "layer", "markdown_table", "register")


def _load() -> dict:
    """Import the registry and every module of the package once; return the catalogue."""
    registry = importlib.import_module(f"{__name__}._registry")
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    names = {name: getattr(registry, name) for name in _REGISTRY_NAMES}
    globals().update(names, **registry.CATALOGUE)
    globals()["__all__"] = [*_REGISTRY_NAMES, *sorted(registry.CATALOGUE)]
    return registry.CATALOGUE


def __getattr__(name: str):
    if name.startswith("__") and name != "__all__":
        raise AttributeError(name)
    catalogue = _load()
    if name == "__all__" or name in _REGISTRY_NAMES or name in catalogue:
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (no broken agent of that name)")
