"""The conformance suite: any Agent implementation at an address, checked against PROTOCOL-V1."""
