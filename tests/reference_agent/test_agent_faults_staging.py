"""Many files in one StageInFiles: journalled in chunks, in order, and stopped at the client's deadline."""
from __future__ import annotations

import time

import grpc
import pytest

from agent_helpers import new_id
from protos.client import AgentCallError, AgentClient
from reference_agent import domain


def _many(h, n: int) -> list[str]:
    files = [new_id() for _ in range(n)]
    for f in files:
        (h.source / f).write_bytes(f.encode())
    return files


def test_files_across_chunks_are_staged_in_order_and_survive_a_restart(make_agent):
    h = make_agent()
    n = domain.STAGE_CHUNK + 300  # two journal transactions
    files = _many(h, n)
    job = new_id()
    shuffled = files[::2] + files[1::2]
    assert h.client.stage_in(job, shuffled) == shuffled
    assert h.core.journal.staged_for(job) == shuffled
    assert h.client.stage_in(job, files) == files  # AGT-STAGE-2: all of them, in the order asked
    h.server.stop(grace=0)
    again = make_agent(state_dir=h.state, source=h.source)
    assert again.core.staged_files(job) == shuffled
    assert sorted(p.name for p in (again.state / "jobs" / job / "work").iterdir()) == sorted(files)


def test_staging_stops_when_the_client_stops_waiting_and_keeps_what_it_staged(make_agent):
    h = make_agent()
    n = 4 * domain.STAGE_CHUNK
    files, job = _many(h, n), new_id()
    with grpc.insecure_channel(h.address) as channel:
        with pytest.raises(AgentCallError) as caught:
            AgentClient(channel, timeout=0.5).stage_in(job, files)
    assert caught.value.code_name == "DEADLINE_EXCEEDED"
    settled, deadline = None, time.monotonic() + 30
    while True:  # the RPC thread gives up at its next chunk: the count stops growing
        count = len(h.core.staged_files(job))
        if count == settled:
            break
        assert time.monotonic() < deadline, "staging never stopped"
        settled = count
        time.sleep(0.7)  # longer than a chunk (STAGE_CHUNK_SECONDS)
    assert 0 < settled < n, f"{settled} of {n} files staged after the client gave up"
    staged = h.core.staged_files(job)
    assert staged == files[:settled] and h.core.journal.staged_for(job) == staged  # durable, in order
    assert h.client.stage_in(job, staged) == staged  # still staged (AGT-STAGE-2)
