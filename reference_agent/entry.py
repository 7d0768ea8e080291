"""The `reference-agent` console command, with an install hint when a module of its extra is missing."""
from protos.extras import extra_hint


def main(argv: list[str] | None = None) -> int:
    with extra_hint("reference-agent", "agent"):
        from reference_agent.cli import main as command
        return command(argv)
