"""The hooks both suite packages (conformance/suite, conformance/suite_ext) share in their
conftest: without the suite's options their tests are skipped (they need an agent to test)."""
from __future__ import annotations

import pytest

from conformance import plugin


def pytest_collection_modifyitems(config, items) -> None:
    if plugin.is_active(config):
        return
    skip = pytest.mark.skip(reason=f"conformance suite inactive: give {plugin.TARGET}, {plugin.AGENT_CMD} "
                                   f"or {plugin.EMBEDDED}")
    for item in items:
        if "conformance/suite" in str(item.path).replace("\\", "/"):
            item.add_marker(skip)


def pytest_configure(config) -> None:
    from conformance.violations import MARKER_HELP

    config.addinivalue_line("markers", MARKER_HELP)
