"""Issue 18.4: a source directory that is gone is the source's fault, not the state directory's.

StageInFiles answers OK (AGT-STAGE-1): files already in the cache are staged from it
(AGT-STAGE-5), the others are left out, and the cause is in the agent's log."""
from __future__ import annotations

import io
import json
import shutil

from fault_helpers import wait_for
from reference_agent.telemetry import Telemetry
from reliability_helpers import new_id


def test_gone_source_stages_cached_files_and_leaves_out_the_rest(start_agent):
    log = io.StringIO()
    agent = start_agent(telemetry=Telemetry(stream=log))
    cached, other = agent.put(b"cached bytes"), agent.put(b"never fetched")
    first = new_id()
    assert agent.client.stage_in(first, [cached]) == [cached]
    shutil.rmtree(agent.source)

    job = new_id()
    assert agent.client.stage_in(job, [cached, other]) == [cached]  # OK, not UNAVAILABLE
    assert (agent.workdir(job) / cached).read_bytes() == b"cached bytes"
    assert not (agent.workdir(job) / other).exists()

    def cause_logged():
        agent.server.telemetry.flush()
        lines = [json.loads(line) for line in log.getvalue().splitlines()]
        return [entry for entry in lines if entry.get("kind") == "stage" and entry.get("ok") is False
                and entry.get("file") == other]
    (entry,) = wait_for(cause_logged, what="the cause in the log")
    assert str(agent.source) in entry["error"] and "No such file" in entry["error"]
