"""SimPy model of many agents for capacity planning."""
from __future__ import annotations

__all__ = ["Scenario", "ScenarioError", "run", "Results", "Simulation", "JobRecord"]

_HOMES = {"Scenario": "simulator.scenario", "ScenarioError": "simulator.checks", "run": "simulator.api",
          "Results": "simulator.api", "Simulation": "simulator.engine", "JobRecord": "simulator.metrics"}


def __getattr__(name: str):
    """Lazy exports: `import simulator` stays cheap for the CLI and the other packages."""
    if name in _HOMES:
        import importlib
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
