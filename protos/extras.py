"""Which pip extra provides which third-party module, so a command run without it says what to install."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

# import name -> the extra that brings it (pyproject.toml [project.optional-dependencies])
PROVIDED_BY = {
    "grpc_health": "agent", "grpc_reflection": "agent", "fsspec": "agent", "prometheus_client": "agent",
    "simpy": "sim", "numpy": "sim", "matplotlib": "sim",
    "dask": "dask", "distributed": "dask",
}


@contextlib.contextmanager
def extra_hint(command: str, extra: str) -> Iterator[None]:
    """Around a console command: a missing module of an extra exits 2 with the pip line that
    installs it (the command's own extra when it includes that module); any other import error
    is a bug and propagates."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in PROVIDED_BY:
            raise
        needed = extra if PROVIDED_BY[top] == "agent" else PROVIDED_BY[top]
        print(f"{command}: the Python module {top!r} is not installed; "
              f"install it with: pip install 'agent-protocol-toolkit[{needed}]'", file=sys.stderr)
        raise SystemExit(2) from None
