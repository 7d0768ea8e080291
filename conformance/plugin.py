"""pytest plugin of the conformance suite (inactive unless --agent-target or --agent-conformance is given)."""
