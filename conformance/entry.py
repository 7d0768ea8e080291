"""The `agent-conformance` console command, with an install hint when a module of its extra is missing."""
from protos.extras import extra_hint


def main(argv: list[str] | None = None) -> int:
    with extra_hint("agent-conformance", "conformance"):
        from conformance.cli import main as command
        return command(argv)
