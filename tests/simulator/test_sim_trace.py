"""Trace-driven runs with answers worked out by hand, and the SWF/CSV readers' errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from simulator.api import run
from simulator.scenario import Scenario
from simulator.traces import TraceError, read_csv, read_swf, TraceStats

DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "tiny.swf"
NASA = DATA / "nasa-ipsc-1993-excerpt.swf"


def trace_scenario(trace: Path, *, count=1, slots=1, dispatch="on_arrival", poll=0, backoff=1.0, scale=1.0,
                   arrivals="swf") -> Scenario:
    return Scenario.from_dict({
        "agents": [{"name": "a", "count": count, "slots": slots}],
        "workload": {"arrivals": arrivals, "trace": str(trace), "time_scale": scale},
        "clients": {"poll_interval": poll, "poll_backoff": backoff, "poll_max_interval": max(poll, 1) * 100,
                    "dispatch": dispatch},
        "run": {"seed": 1},
    })


def by_job(results):
    return {r.job: r for r in results.records}


def test_single_agent_fifo_by_hand():
    # submit/runtime 0/10, 2/5, 4/1, 20/3, 21/2 on one slot, FIFO:
    # starts 0, 10, 15, 20, 23; ends 10, 15, 16, 23, 25; waits 0, 8, 11, 0, 2 (mean 4.2)
    res = run(trace_scenario(TINY), keep_records=True)
    recs = by_job(res)
    assert [recs[i].start for i in range(5)] == [0, 10, 15, 20, 23]
    assert [recs[i].end for i in range(5)] == [10, 15, 16, 23, 25]
    assert [recs[i].wait for i in range(5)] == [0, 8, 11, 0, 2]
    assert res.mean("wait_mean") == pytest.approx(4.2)
    assert res.mean("turnaround_mean") == pytest.approx((10 + 13 + 12 + 3 + 4) / 5)
    assert res.mean("p_wait") == pytest.approx(3 / 5)
    assert res.mean("trace_skipped") == 1
    assert res.mean("jobs_completed") == 5
    # window [0, 21] (last arrival): busy 10+5+1 in [0,16], 1 in [20,21]  -> 17/21
    assert res.mean("utilisation.a") == pytest.approx(17 / 21)


def test_polls_by_hand():
    # polls every 5 s from RunJob (= submit): job 0 polls at 5, 10 and sees DONE at 10 (a poll at
    # the end time sees DONE); job 1 at 7, 12, 17; job 2 at 9, 14, 19; job 3 at 25; job 4 at 26.
    res = run(trace_scenario(TINY, poll=5), keep_records=True)
    recs = by_job(res)
    assert [recs[i].done_seen for i in range(5)] == [10, 17, 19, 25, 26]
    assert [recs[i].polls for i in range(5)] == [2, 3, 3, 1, 1]
    assert res.mean("polls_per_job") == pytest.approx(10 / 5)


def test_polls_with_backoff_by_hand():
    # intervals 1, 2, 4, 8, ... from RunJob: job 0 (end 10) polls at 1, 3, 7, 15 -> seen 15
    res = run(trace_scenario(TINY, poll=1, backoff=2), keep_records=True)
    r0 = by_job(res)[0]
    assert (r0.done_seen, r0.polls) == (15, 4)


def test_two_agents_central_queue_by_hand():
    # agents A and B, one slot each, jobs handed out when a slot frees: job 0 on A 0..10,
    # job 1 on B 2..7, job 2 waits for B: 7..8 (wait 3); job 3 20..23; job 4 21..23 (wait 0)
    res = run(trace_scenario(TINY, count=2, dispatch="when_free"), keep_records=True)
    recs = by_job(res)
    assert [recs[i].start for i in range(5)] == [0, 2, 7, 20, 21]
    assert [recs[i].wait for i in range(5)] == [0, 0, 3, 0, 0]
    assert recs[0].agent != recs[1].agent and recs[2].agent == recs[1].agent


def test_time_scale_halves_every_time():
    res = run(trace_scenario(TINY, scale=0.5), keep_records=True)
    assert [by_job(res)[i].wait for i in range(5)] == [0, 4, 5.5, 0, 1]


def test_nasa_excerpt_matches_lindley_recursion():
    """One slot, FIFO: start_i = max(submit_i, end_{i-1}) computed here independently of the engine."""
    jobs = list(read_swf(NASA))
    assert len(jobs) == 40
    res = run(trace_scenario(NASA), keep_records=True)
    recs = by_job(res)
    end = 0.0
    for i, j in enumerate(jobs):
        start = max(j.submit, end)
        end = start + j.runtime
        assert recs[i].start == start and recs[i].end == end
    # the first job at submit 0 runs 1451 s; the second arrives at 1460 and does not wait
    assert recs[1].wait == 0 and recs[0].end == 1451


def test_csv_trace(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("# a comment\nsubmit,runtime,python\n0,4,3.11\n1,2,\n\n3,1,>=3.10\n")
    res = run(trace_scenario(path, arrivals="csv"), keep_records=True)
    recs = by_job(res)
    assert [recs[i].start for i in range(3)] == [0, 4, 6]
    assert [recs[i].python for i in range(3)] == ["3.11", "", ">=3.10"]


SWF_BAD = [
    ("1 0 -1 10 1\n", 1, "expected 18 fields, found 5"),
    ("; header\n1 0 -1 10 1 -1 -1 1 -1 -1 1 1 1 -1 1 -1 -1 x\n", 2, "field 18 is not a number: 'x'"),
    ("1 5 -1 10 1 -1 -1 1 -1 -1 1 1 1 -1 1 -1 -1 -1\n2 4 -1 10 1 -1 -1 1 -1 -1 1 1 1 -1 1 -1 -1 -1\n", 2,
     "earlier than the previous job's 5"),
    ("1 -3 -1 10 1 -1 -1 1 -1 -1 1 1 1 -1 1 -1 -1 -1\n", 1, "field 2 (submit time) must be >= 0"),
    ("1 0 -1 inf 1 -1 -1 1 -1 -1 1 1 1 -1 1 -1 -1 -1\n", 1, "field 4 is not a finite number"),
]


@pytest.mark.parametrize("text,line,message", SWF_BAD)
def test_malformed_swf_lines_name_the_line(tmp_path, text, line, message):
    path = tmp_path / "bad.swf"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        list(read_swf(path))
    assert info.value.line == line
    assert f"bad.swf:{line}: " in str(info.value) and message in str(info.value)


def test_malformed_swf_fails_the_run_with_its_line(tmp_path):
    path = tmp_path / "bad.swf"
    path.write_text(TINY.read_text() + "7 30 -1 2 1 -1\n")
    with pytest.raises(TraceError, match=r"bad.swf:\d+: expected 18 fields"):
        run(trace_scenario(path))


def test_swf_unknown_runtime_is_a_counted_skip():
    stats = TraceStats()
    assert len(list(read_swf(TINY, stats))) == 5
    assert stats.skipped_unknown_runtime == 1 and stats.read == 5


CSV_BAD = [
    ("submit,runtime\n0,x\n", 2, "runtime is not a number: 'x'"),
    ("submit,runtime\n0,1,2\n", 2, "expected 2 columns, found 3"),
    ("start,runtime\n0,1\n", 1, "header must name submit, runtime"),
    ("submit,runtime\n5,1\n3,1\n", 3, "earlier than the previous row's 5"),
    ("submit,runtime\n-1,1\n", 2, "submit must be a finite number >= 0"),
    ("submit,runtime,python\n0,1,>=3.x\n", 2, "python:"),
    ("", 1, "empty trace"),
]


@pytest.mark.parametrize("text,line,message", CSV_BAD)
def test_malformed_csv_lines_name_the_line(tmp_path, text, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        list(read_csv(path))
    assert info.value.line == line and message in str(info.value), str(info.value)
