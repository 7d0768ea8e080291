"""The `reference-agent` console command, with an install hint when a module of its extra is missing.

`serve` runs on the C allocator: the command re-executes itself once, same process (same pid),
with PYTHONMALLOC=malloc unless PYTHONMALLOC is set already. After a flood of calls CPython's
small-object arenas stay partly occupied and cannot go back to the system (1,000 half-open
calls left the agent at 1.18x its quiet memory); with the C allocator the agent's trim after a
flood gives it back (1.03x to 1.05x). Poll throughput measured the same (docs/PERFORMANCE.md)."""
import os
import sys

from protos.extras import extra_hint

ALLOCATOR = "malloc"


def _reexec_for_serve(argv: list[str] | None) -> None:
    """exec this same command again with PYTHONMALLOC=malloc when it is `serve` from a real
    command line (argv None) and PYTHONMALLOC is unset; returns when it does not apply."""
    if argv is not None or "PYTHONMALLOC" in os.environ or "serve" not in sys.argv[1:2]:
        return
    original = getattr(sys, "orig_argv", None)
    if not original or not sys.executable:
        return
    env = dict(os.environ, PYTHONMALLOC=ALLOCATOR)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *original[1:]], env)
    except OSError:
        return  # serve on the default allocator rather than not at all


def main(argv: list[str] | None = None) -> int:
    _reexec_for_serve(argv)
    with extra_hint("reference-agent", "agent"):
        from reference_agent.cli import main as command
        return command(argv)
