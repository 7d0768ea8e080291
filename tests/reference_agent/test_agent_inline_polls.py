"""Status polls answered on the event loop (servicer.AgentServicer.status_now), over loopback.

The reference agent answers a poll of a known job without handing it to a work thread; anything
else (a submission, an unknown job, a repeat that differs, the tables' lock held by a journal
commit, a broken agent's hooks) takes the work thread as before and gets the same answers."""
from __future__ import annotations

import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_helpers import code_of, new_id
from protos import Common_pb2, RunJob_pb2
from protos.states import JobState
from reference_agent.config import AgentConfig
from reference_agent.domain import AgentCore
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry

RUN = "/Agent/RunJob"


def _count_work(server) -> list[int]:
    """Count the calls the server hands to its work pool from now on."""
    count = [0]
    submit = server.work.submit

    def counting(fn, *args):
        count[0] += 1
        return submit(fn, *args)

    server.work.submit = counting
    return count


def _done_job(agent) -> tuple[str, str]:
    job = new_id()
    entry = agent.script("pass\n")
    agent.client.stage_in(job, [entry])
    agent.client.run(job, [entry], python_version=">=3")
    agent.wait_done(job)
    return job, entry


def test_polls_of_a_known_job_take_no_work_thread_and_answer_its_state(agent):
    job, entry = _done_job(agent)
    handed = _count_work(agent.server)
    for query in (job, job.upper()):  # AGT-ID-3: any case names the job
        assert agent.client.status(query) is JobState.DONE
    # a repeat equal to the submission is a status query too (AGT-RUN-8)
    assert agent.client.run(job, [entry], python_version=">=3") is JobState.DONE
    assert handed[0] == 0


def test_what_is_not_a_plain_poll_takes_a_work_thread_and_gets_the_same_errors(agent):
    job, entry = _done_job(agent)
    handed = _count_work(agent.server)
    assert code_of(agent.client.run, job, [entry], python_version=">=3.0.1") == "ALREADY_EXISTS"  # AGT-RUN-8
    assert code_of(agent.client.run, job, [new_id()]) == "ALREADY_EXISTS"
    assert code_of(agent.client.status, new_id()) != "OK"  # unknown job: a submission without files
    raw = agent.channel.unary_unary(RUN)
    try:
        raw(b"\xff\xff", timeout=10)
        raise AssertionError("unparseable bytes answered OK")
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT  # AGT-ERR-1
    assert handed[0] == 4


def test_a_poll_while_a_commit_holds_the_tables_waits_on_a_thread_and_the_loop_stays_free(agent):
    job, _entry = _done_job(agent)
    handed = _count_work(agent.server)
    lock, held, release = agent.core._tables.lock, threading.Event(), threading.Event()

    def commit():  # stands for a journal commit made under the tables' lock
        with lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=commit)
    holder.start()
    assert held.wait(10)
    answers: list[JobState] = []
    poller = threading.Thread(target=lambda: answers.append(agent.client.status(job)))
    poller.start()
    try:
        health = health_pb2_grpc.HealthStub(agent.channel)
        for _ in range(3):  # the loop answers others while the poll waits for the lock
            start = time.monotonic()
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert time.monotonic() - start < 2.0
        assert not answers  # still waiting for the lock, on its work thread
    finally:
        release.set()
        holder.join(10)
        poller.join(20)
    assert answers == [JobState.DONE] and handed[0] == 1


class _SlowStatus(AgentCore):
    """A subclass whose status hook blocks (as a broken agent's may): never run on the loop."""

    def status_query(self, job, req):
        time.sleep(0.05)
        return super().status_query(job, req)


def test_a_subclassed_core_is_never_answered_on_the_loop(tmp_path):
    (tmp_path / "src").mkdir()
    config = AgentConfig(listen="127.0.0.1:0", source=str(tmp_path / "src"), state_dir=str(tmp_path / "state"),
                         slots=1, discover_path=False, log_rpcs=False)
    server = AgentServer(config, core_factory=_SlowStatus, telemetry=Telemetry(stream=None))
    server.start()
    try:
        from agent_harness import InProcessAgent
        agent = InProcessAgent(server, tmp_path / "src", tmp_path / "state", tmp_path)
        job, _entry = _done_job(agent)
        handed = _count_work(server)
        assert agent.client.status(job) is JobState.DONE
        assert handed[0] == 1
        agent.channel.close()
    finally:
        server.stop(stop_jobs=True)


def test_inline_answers_carry_the_code_field_on_the_wire_for_every_state(agent):
    """AGT-WIRE-2 on the loop's path: field 1 is present even for WAIT (0)."""
    job = new_id()
    entry = agent.script("import time; time.sleep(1)\n")
    agent.client.stage_in(job, [entry])
    agent.client.run(job, [entry])
    handed = _count_work(agent.server)
    raw = agent.channel.unary_unary(RUN)
    body = raw(RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job)).SerializeToString(), timeout=10)
    assert body[:1] == b"\x08" and len(body) == 2 and body[1] in (0, 1, 2)
    assert handed[0] == 0
