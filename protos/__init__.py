"""The Agent protocol v1: generated messages and the plain-Python layer every package imports."""
from __future__ import annotations

__version__ = "1.0.0"
PROTOCOL_VERSION = "v1"
