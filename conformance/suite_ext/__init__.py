"""The extension profile `ext` of the conformance suite (PROTOCOL-EXT: outcome, cancel, watch)."""
