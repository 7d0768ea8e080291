"""The agent command the suite owns (embedded or --agent-cmd): a template on protos.launcher."""
from __future__ import annotations

import shlex
import sys

from protos import launcher
from protos.launcher import LaunchError

__all__ = ["REFERENCE_CMD", "PLACEHOLDERS", "LaunchError", "AgentProcess", "check_command"]

# The embedded default: the reference agent of this toolkit.
REFERENCE_CMD = (f"{shlex.quote(sys.executable)} -m reference_agent serve --listen {{listen}} "
                 f"--source {{source}} --state-dir {{state_dir}} --slots {{slots}}")
PLACEHOLDERS = ("listen", "source", "state_dir", "slots")


def check_command(template: str) -> None:
    """Raise ValueError naming the problem when `template` is not a usable --agent-cmd."""
    if "{listen}" not in template:
        raise ValueError(f"--agent-cmd {template!r} has no {{listen}} placeholder: the suite must choose "
                         f"the address (it restarts the agent on the same one)")
    try:
        template.format(**{k: "x" for k in PLACEHOLDERS})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"--agent-cmd {template!r}: bad placeholder {exc}; known: "
                         f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}") from None
    if not shlex.split(template):
        raise ValueError("--agent-cmd is empty")


class AgentProcess(launcher.AgentProcess):
    """An --agent-cmd template (split like a shell command line, never run by a shell) with
    {listen} {source} {state_dir} {slots} filled in, on protos.launcher.AgentProcess."""

    def __init__(self, template: str, *, source: str, state_dir: str, slots: int,
                 startup_timeout: float = 30.0, log_path: str | None = None, insecure_probe: bool = True):
        check_command(template)
        self.template = template
        self.values = {"source": source, "state_dir": state_dir, "slots": str(slots)}
        super().__init__(self.argv, startup_timeout=startup_timeout, log_path=log_path, probe=insecure_probe)

    def argv(self, listen: str) -> list[str]:
        return shlex.split(self.template.format(listen=listen, **self.values))
