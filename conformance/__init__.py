"""The conformance suite: any Agent implementation at an address, checked against PROTOCOL-V1."""

SUITE_VERSION = "1.0.0"
