"""Agent failures per AGT-DUR-1: RUN jobs end DONE (interrupted), WAIT jobs stay and run later."""
from __future__ import annotations

from collections import Counter

from protos.states import DoneReason, Event, JobState
from simulator.api import run
from simulator.engine import Simulation
from simulator.scenario import Scenario


def failing(tmp_path, jobs: str, resubmit=False, max_resubmits=3, poll=0):
    trace = tmp_path / "jobs.csv"
    trace.write_text("submit,runtime\n" + jobs)
    return Scenario.from_dict({
        "agents": [{"count": 1, "slots": 1,
                    "failures": {"time_to_failure": 5, "time_to_repair": 3}}],
        "workload": {"arrivals": "csv", "trace": str(trace)},
        "clients": {"poll_interval": poll, "resubmit_interrupted": resubmit, "max_resubmits": max_resubmits},
        "run": {"seed": 1},
    })


def test_running_job_interrupted_waiting_job_survives(tmp_path):
    # job 0 runs from 0 and the agent fails at 5: DONE interrupted at 5. Job 1 waits (WAIT) through
    # the failure, starts at the repair (8) and ends at 9, before the next failure at 13.
    machines = {}

    def tracer(now, kind, job):
        if kind == "end":
            machines[job.id] = list(job.sm.history)
    res = Simulation(failing(tmp_path, "0,10\n0,1\n"), 0, tracer=tracer, sink=(recs := []).append).run()
    r = {x.job: x for x in recs}
    assert (r[0].outcome, r[0].end, r[0].done_seen) == ("interrupted", 5, 8)   # seen when the agent is back
    assert (r[1].outcome, r[1].start, r[1].end) == ("succeeded", 8, 9)
    assert machines[0] == [(JobState.RUN, Event.START), (JobState.DONE, Event.INTERRUPT)]
    assert machines[1] == [(JobState.RUN, Event.START), (JobState.DONE, Event.SUCCEED)]
    assert res["jobs_interrupted"] == 1


def test_resubmission_makes_new_attempts_and_never_reruns_one(tmp_path):
    starts = Counter()
    reasons = {}

    def tracer(now, kind, job):
        if kind == "start":
            starts[job.id] += 1
        if kind == "end":
            reasons[job.id] = job.sm.reason
    recs = []
    Simulation(failing(tmp_path, "0,10\n", resubmit=True, max_resubmits=2), 0, tracer=tracer, sink=recs.append).run()
    assert all(n == 1 for n in starts.values())                      # AGT-RUN-7: each id runs once
    attempts = sorted(recs, key=lambda r: r.attempt)
    assert [r.attempt for r in attempts] == [0, 1, 2]                # 10 s never fits in 5 s of uptime
    assert {r.logical for r in attempts} == {0}
    assert all(r.outcome == "interrupted" for r in attempts)
    assert all(reasons[r.job] is DoneReason.INTERRUPTED for r in attempts)
    assert attempts[1].submit == attempts[0].done_seen                # resubmitted when DONE is seen


def test_resubmitted_job_completes_when_it_fits(tmp_path):
    res = run(failing(tmp_path, "0,4\n3,4\n", resubmit=True), keep_records=True)
    final = [r for r in res.records if r.outcome == "succeeded"]
    assert {r.logical for r in final} == {0, 1}
    assert res.mean("jobs_resubmitted") >= 1


def test_polls_during_downtime_see_done_after_repair(tmp_path):
    # polls every 1 s from 0: the poll at 5 would see DONE, but the agent is down until 8
    res = run(failing(tmp_path, "0,10\n", poll=1), keep_records=True)
    r = res.records[0]
    assert (r.end, r.done_seen, r.polls) == (5, 8, 8)
