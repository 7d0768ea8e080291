"""The suite's `requirement` marker for the tests that import the suite's modules: the conformance
plugin is not loaded by itself (it is asked for with -p conformance.plugin)."""
from conformance.violations import MARKER_HELP


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_HELP)
