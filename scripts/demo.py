"""`make demo`: the toolkit's main job on its embedded defaults, start to finish.

1. the protocol's summary;
2. a real reference agent on a free loopback port: stage a script, run it, poll to DONE,
   and show the job as its operator sees it;
3. the conformance suite against an embedded reference agent (`agent-conformance`, MUST level);
4. the simulator on examples/demo.toml, results in out/demo/.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from protos.__main__ import summary  # noqa: E402
from protos import launcher  # noqa: E402
from protos.client import AgentClient  # noqa: E402


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def agent_round_trip() -> None:
    with tempfile.TemporaryDirectory(prefix="agent-demo-") as tmp:
        source, state = Path(tmp, "source"), Path(tmp, "state")
        source.mkdir()
        agent = launcher.reference_agent(source, state, 2, ["--quiet"], cwd=ROOT)
        try:
            address = agent.start()
            print(f"reference agent listening on {address}")
            script, job = str(uuid.uuid4()), str(uuid.uuid4())
            (source / script).write_text("import sys\nprint('hello from', sys.version.split()[0])\n")
            client = AgentClient.connect(address)
            print(f"StageInFiles -> {client.stage_in(job, [script])}")
            print(f"RunJob       -> {client.run(job, [script], python_version='3').name}")
            started = time.monotonic()
            timeline = client.wait_until_done(job, poll_interval=0.05, deadline=60)
            print("polls seen   -> " + ", ".join(f"{s.name}@{t * 1000:.0f}ms" for t, s in timeline.points)
                  + f" (DONE after {time.monotonic() - started:.2f} s)")
            subprocess.run([sys.executable, "-m", "reference_agent", "job", job, "--state-dir", str(state)],
                           check=True, cwd=ROOT)
        finally:
            agent.stop(30)


def main() -> int:
    banner("Agent protocol v1")
    print(summary())
    banner("Reference agent: stage, run, poll to DONE")
    agent_round_trip()
    banner("Conformance suite against an embedded reference agent")
    conformance = subprocess.run([str(BIN / "agent-conformance"), "--level", "must", "-q"], cwd=ROOT)
    banner("Simulator: examples/demo.toml -> out/demo/")
    sim = subprocess.run([str(BIN / "agent-sim"), "run", "examples/demo.toml", "--out", "out/demo"], cwd=ROOT)
    return conformance.returncode or sim.returncode


if __name__ == "__main__":
    sys.exit(main())
