"""A correct but slow agent for the suite's deadline tests: the reference agent that takes SECONDS per
staged file (an agent that fsyncs every file on a loaded machine).

    python _slow_agent.py SECONDS --listen HOST:PORT --source DIR --state-dir DIR --slots N
"""
from __future__ import annotations

import argparse
import sys
import time

from reference_agent.config import AgentConfig
from reference_agent.domain import AgentCore
from reference_agent.server import AgentServer, serve_until_signalled
from reference_agent.telemetry import Telemetry


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("seconds", type=float)
    p.add_argument("--listen", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--slots", type=int, default=2)
    args = p.parse_args(argv)

    class SlowStaging(AgentCore):
        def stage_file(self, job_id, file):
            time.sleep(args.seconds)
            return super().stage_file(job_id, file)

    config = AgentConfig(listen=args.listen, source=args.source, state_dir=args.state_dir, slots=args.slots,
                         discover_path=False).validate()
    server = AgentServer(config, core_factory=SlowStaging, telemetry=Telemetry(stream=None))
    return serve_until_signalled(server, "slow agent", stop_jobs=True)


if __name__ == "__main__":
    sys.exit(main())
