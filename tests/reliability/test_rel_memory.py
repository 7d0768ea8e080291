"""Requests that change nothing must leave nothing behind in the agent's memory (AGT-ERR-2 over time)."""
from __future__ import annotations

import gc
import tracemalloc

from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.errors import ProtocolError
from reliability_helpers import new_id


def _retained_by_core(core, requests: int) -> int:
    """Memory blocks allocated (anywhere but in tracemalloc) and still held after `requests`
    refused or empty calls: the agent must keep nothing for requests that changed nothing.
    Blocks, not bytes: a one-off resize of an interpreter table (interned strings) can hold a
    megabyte in one block and is no leak."""
    def one_round():
        for _ in range(requests):
            core.stage_in(core.parse_stage_request(StageInFile_pb2.StageInFilesRequest(
                job=Common_pb2.JobId(uuid=new_id()), files=[Common_pb2.FileId(uuid=new_id())])))
            try:
                core.run_job(core.parse_run_request(RunJob_pb2.RunJobRequest(
                    job=Common_pb2.JobId(uuid=new_id()), files=[Common_pb2.FileId(uuid=new_id())])))
            except ProtocolError:
                pass

    one_round()  # warm-up: caches, stripes, logging
    gc.collect()
    tracemalloc.start(5)
    try:
        before = tracemalloc.take_snapshot()
        one_round()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "filename")
    return sum(s.count_diff for s in stats)


def test_refused_requests_with_new_job_ids_do_not_grow_the_agent(start_agent):
    agent = start_agent()
    retained = _retained_by_core(agent.server.core, 2000)
    # One lock per job id ever seen kept 2 blocks per request: about 4000 here.
    assert retained < 500, f"{retained} memory blocks retained after 4000 requests that changed nothing"
