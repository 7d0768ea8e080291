"""In-process fakes of the Agent protocol for client developers, and broken agents."""
