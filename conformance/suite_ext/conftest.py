"""Without the suite's options these tests are skipped (they need an agent to test): the hooks
are conformance.inactive's, shared with the other suite package."""
from __future__ import annotations

from conformance.inactive import pytest_collection_modifyitems, pytest_configure  # noqa: F401
