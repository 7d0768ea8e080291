"""The conformance tests proper; collected by `pytest --pyargs conformance.suite --agent-target ...`."""
