"""Each broken agent shows its defect over a real loopback channel; the reference agent does not.

A probe returns a text describing the defect it observed, or None. Every probe runs against
its broken agent (the defect must show) and against the reference agent (it must not), so a
probe that cannot tell the two apart fails here rather than vouching for a broken agent.
"""
from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import probes_wire_staging  # noqa: F401  (its probes register themselves)
from broken_probe_kit import PROBES, V1_AGENTS, D, R, W, appender, done, output_of, probe, submit, wait_for  # noqa: F401
from fakes import broken
from fakes.broken import CATALOGUE
from protos.states import JobState
from shared_helpers import code_of
from shared_helpers import new_id as new


def _run_with(agent, python_version):
    job, f = new(), agent.put(b"pass\n")
    agent.client.stage_in(job, [f])
    return code_of(agent.client.run, job, [f], python_version=python_version)


@probe(broken.AnswersWithoutSubmitting, no_happy_path='its defect is that no job is ever created')
def probe_answers_without_submitting(agent, tmp):
    job, f, first = submit(agent)
    code = code_of(agent.client.status, job)
    if code != "OK":
        return f"answered {first.name} to the submission, then {code} to a status query"


@probe(broken.RunsLastFile)
def probe_runs_last_file(agent, tmp):
    marker = tmp / "entry"
    job, first, last = new(), agent.put(appender(marker, "first")), agent.put(appender(marker, "last"))
    agent.client.stage_in(job, [first, last])
    agent.client.run(job, [first, last])
    marker_text = output_of(agent, job, marker)
    if marker_text != "first":
        return f"the job ran {marker_text!r}"


@probe(broken.IgnoresPythonVersion)
def probe_ignores_python_version(agent, tmp):
    code = _run_with(agent, ">=99")
    if code != "FAILED_PRECONDITION":
        return f"python_version '>=99' answered {code}"


@probe(broken.UsesOnlyFirstRequirement)
def probe_first_requirement_only(agent, tmp):
    code = _run_with(agent, ["3", ">=99"])
    if code != "FAILED_PRECONDITION":
        return f"python_version ['3', '>=99'] answered {code}"


@probe(broken.AcceptsMalformedPythonVersion)
def probe_malformed_python_version(agent, tmp):
    code = _run_with(agent, "three")
    if code != "INVALID_ARGUMENT":
        return f"python_version 'three' answered {code}"


@probe(broken.AcceptsMismatchedRepeat)
def probe_mismatched_repeat(agent, tmp):
    job, f, _ = submit(agent)
    code = code_of(agent.client.run, job, [f, f])
    if code != "ALREADY_EXISTS":
        return f"repeat with other files answered {code}"


@probe(broken.RunsJobTwiceOnRepeat)
def probe_runs_twice_on_repeat(agent, tmp):
    counter = tmp / "repeat-counter"
    job, f, _ = submit(agent, appender(counter))
    done(agent, job)
    for _ in range(3):
        agent.client.status(job)
    wait_for(lambda: counter.exists() and len(counter.read_text()) > 1, 3)
    if len(counter.read_text()) != 1:
        return f"the job ran {len(counter.read_text())} times"


@probe(broken.TwoExecutionsForConcurrentFirstCalls)
def probe_concurrent_first_calls(agent, tmp):
    counter = tmp / "race-counter"
    job, f = new(), agent.put(appender(counter))
    agent.client.stage_in(job, [f])
    barrier, codes = threading.Barrier(6), []

    def first_call():
        barrier.wait(10)
        codes.append(code_of(agent.client.run, job, [f]))

    threads = [threading.Thread(target=first_call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert codes == ["OK"] * 6
    done(agent, job)
    wait_for(lambda: counter.exists() and len(counter.read_text()) > 1, 3)
    if len(counter.read_text()) != 1:
        return f"the job ran {len(counter.read_text())} times"


# --- states, scheduling, durability --------------------------------------------------------------

@probe(broken.ReportsDoneBeforeRun)
def probe_done_before_run(agent, tmp):
    marker = tmp / "ended"
    job, f, first = submit(agent, appender(marker, sleep=2))
    if first is D and not marker.exists():
        return "answered DONE at submission of a job that runs for 2 s"


@probe(broken.GoesBackFromDoneToRun)
def probe_back_from_done(agent, tmp):
    job, f, _ = submit(agent)
    done(agent, job)
    after = [agent.client.status(job) for _ in range(4)]
    if after != [D] * 4:
        return f"after DONE: {[s.name for s in after]}"


@probe(broken.ReportsDoneLate)
def probe_done_late(agent, tmp):
    """Measured against the agent's own record of when the process ended (robust under load)."""
    job, f, _ = submit(agent)
    done(agent, job, timeout=30)
    delay = time.time() - agent.server.core.job(job).ended
    if delay > 1.0:
        return f"DONE first reported {delay:.1f} s after the process ended"


@probe(broken.NeverLeavesWait, no_happy_path='its defect is that no job ever starts')
def probe_never_leaves_wait(agent, tmp):
    job, f, _ = submit(agent)
    if not wait_for(lambda: agent.client.status(job) is not W, 3):
        return "still WAIT after 3 s with free slots"


@probe(broken.LeaksSlots, slots=1)
def probe_leaks_slots(agent, tmp):                   # agent has 1 slot
    first, _, _ = submit(agent)
    done(agent, first)
    second, _, _ = submit(agent)
    if not wait_for(lambda: agent.client.status(second) is not W, 3):
        return "the second job never started on a free slot"


@probe(broken.ExceedsSlots, slots=1)
def probe_exceeds_slots(agent, tmp):                 # agent has 1 slot
    jobs = [submit(agent, appender(tmp / f"slow{i}", sleep=5))[0] for i in range(2)]
    if wait_for(lambda: [agent.client.status(j) for j in jobs] == [R, R], 2.0):
        return "two jobs in RUN with one slot"


@probe(broken.StartsNewestFirst, slots=1)
def probe_newest_first(agent, tmp):                  # agent has 1 slot
    order = tmp / "order"
    submit(agent, appender(tmp / "blocker", sleep=2.0))
    jobs = [submit(agent, appender(order, name))[0] for name in "ABC"]
    for job in jobs:
        done(agent, job)
    if order.read_text() != "ABC":
        return f"started in order {order.read_text()}"


@probe(broken.ForgetsDoneAfterRestart, restart="plain")
def probe_forgets_done(agent, tmp, restart):
    job, f, _ = submit(agent)
    done(agent, job)
    again = restart(agent)
    code = code_of(again.client.status, job)
    if code != "OK" or again.client.status(job) is not D:
        return f"after a restart a DONE job's status query answered {code}"


# --- blind spots: late in a job's life, large inputs, after a restart ---------------------------

def _reader(path: Path, file: str) -> bytes:
    """A job script that writes the sha256 and size of its staged file `file` to `path`."""
    return (f"import hashlib\ndata = open({file!r}, 'rb').read()\n"
            f"open({str(path)!r}, 'w').write(hashlib.sha256(data).hexdigest() + ' %d' % len(data))\n").encode()


def _keep_jobs_restart(agent, start_agent, slots, state):
    """A clean restart that leaves running jobs running (the new agent adopts them)."""
    agent.channel.close()
    agent.server.stop(grace=0, stop_jobs=False)
    return start_agent(agent.name, slots=slots, state_dir=state)


@probe(broken.ReportsDoneWhileRunningLater)
def probe_done_while_running(agent, tmp):
    marker = tmp / "slow-ended"
    job, _, _ = submit(agent, appender(marker, sleep=3.0))
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        if agent.client.status(job) is D and not marker.exists():
            return "DONE answered while the job's process was still running"
        time.sleep(0.05)


@probe(broken.ForgetsSlotsAfterRestart, slots=1, restart="keep jobs")
def probe_forgets_slots_after_restart(agent, tmp, restart):    # agent has 1 slot
    slow, quick = tmp / "slow", tmp / "quick"
    first, _, _ = submit(agent, appender(slow, sleep=4.0))
    assert wait_for(lambda: agent.client.status(first) is R, 5)
    second, _, _ = submit(agent, appender(quick))
    restart(agent)  # the restarted agent adopts the slow job
    if wait_for(quick.exists, 1.5) and not slow.exists():
        return "after the restart a WAIT job started while the adopted job held the only slot"


@probe(broken.TruncatesLargeFiles)
def probe_truncates_large_files(agent, tmp):
    import hashlib
    import os

    big = os.urandom(3 * 1024 * 1024)
    job, data = new(), agent.put(big)
    out = tmp / "seen"
    entry = agent.put(_reader(out, data.lower()))
    agent.client.stage_in(job, [entry, data])
    agent.client.run(job, [entry])
    out_text = output_of(agent, job, out)
    if out_text != f"{hashlib.sha256(big).hexdigest()} {len(big)}":
        return f"the job saw {out_text.split()[-1]} bytes of a {len(big)}-byte input"


@probe(broken.RestagesFromSourceAfterRestart, restart="keep jobs")
def probe_restages_after_restart(agent, tmp, restart):
    import hashlib

    job, data = new(), agent.put(b"bytes at staging time")
    out = tmp / "seen"
    entry = agent.put(_reader(out, data.lower()))
    assert agent.client.stage_in(job, [entry, data]) == [entry, data]
    agent.put(b"bytes put later", data)
    again = restart(agent)
    again.client.run(job, [entry])
    out_text = output_of(again, job, out)
    if out_text.split()[0] != hashlib.sha256(b"bytes at staging time").hexdigest():
        return "after the restart the job saw the source's later bytes, not those of staging time"


@probe(broken.StopsStagingAfterAChunk)
def probe_stops_staging_after_a_chunk(agent, tmp):
    files = [agent.put(b"%d" % i) for i in range(1_100)]
    listed = agent.client.stage_in(new(), files)
    if len(listed) != len(files):
        return f"a StageInFiles of {len(files)} files listed {len(listed)}"


@probe(broken.TrustsCacheAfterJobWrites)
def probe_trusts_cache_after_job_writes(agent, tmp):
    import hashlib

    shared = agent.put(b"the source's bytes")
    writer = agent.put(f"open({shared.lower()!r}, 'ab').write(b' and a job wrote here')\n".encode())
    job = new()
    agent.client.stage_in(job, [writer, shared])
    agent.client.run(job, [writer])
    done(agent, job)
    out, later = tmp / "seen", new()
    reader = agent.put(_reader(out, shared.lower()))
    agent.client.stage_in(later, [reader, shared])
    agent.client.run(later, [reader])
    out_text = output_of(agent, later, out)
    if out_text.split()[0] != hashlib.sha256(b"the source's bytes").hexdigest():
        return "a later job got the bytes that an earlier job wrote into its copy"




@probe(broken.PicksInterpreterAtRandom, pythons=(getattr(sys, "_base_executable", sys.executable),))
def probe_picks_interpreter_at_random(agent, tmp):
    """Eleven jobs of one requirement list: a deterministic agent runs them all with one interpreter
    (a uniform choice between two gives one interpreter 11 times with probability 2 * 2**-11)."""
    outputs = []
    for i in range(11):
        out = tmp / f"exe-{i}"
        job, f = new(), agent.put(f"import sys\nopen({str(out)!r}, 'w').write(sys.executable)\n".encode())
        agent.client.stage_in(job, [f])
        agent.client.run(job, [f], python_version="3")
        done(agent, job)
        outputs.append(out)
    seen = {out.read_text() for out in outputs if wait_for(out.exists, 5)}
    if len(seen) > 1:
        return f"jobs of one requirement list ran with {len(seen)} interpreters: {sorted(seen)}"


def _run_probe(name, agent_name, start_agent, tmp_path):
    found = PROBES[name]
    state = tmp_path / f"state-{name}-{agent_name}"
    agent = start_agent(agent_name, slots=found.slots, state_dir=state, pythons=found.pythons)
    agent.name = agent_name
    if found.restart == "keep jobs":
        return found.run(agent, tmp_path, lambda old: _keep_jobs_restart(old, start_agent, found.slots, state))
    if found.restart == "plain":
        def restart(old):
            old.close()
            return start_agent(agent_name, slots=found.slots, state_dir=state)
        return found.run(agent, tmp_path, restart)
    return found.run(agent, tmp_path)


def test_every_catalogued_agent_has_a_probe():
    """Each @register'ed agent has one @probe: a new broken agent without one fails here, by name."""
    assert sorted(set(V1_AGENTS) - set(PROBES)) == [], "broken agents without a @probe"
    assert sorted(PROBES) == V1_AGENTS


@pytest.mark.parametrize("name", V1_AGENTS)
def test_broken_agent_shows_its_defect(name, start_agent, tmp_path):
    observed = _run_probe(name, name, start_agent, tmp_path)
    assert observed, f"{name}: the probe saw no defect"


@pytest.mark.parametrize("name", V1_AGENTS)
def test_reference_agent_passes_the_same_probe(name, start_agent, tmp_path):
    observed = _run_probe(name, None, start_agent, tmp_path)
    assert observed is None, f"the reference agent failed the {name} probe: {observed}"


# --- happy path: apart from its defect, each agent stages, runs and finishes a job ----------------

@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_happy_path(name, start_agent, tmp_path):
    found = PROBES.get(name)
    if found is not None and found.no_happy_path:
        pytest.skip(found.no_happy_path)
    agent = start_agent(name)
    marker = tmp_path / "ran"
    job, f = str(uuid.uuid4()), agent.put(f"open({str(marker)!r}, 'w').write('ok')\n".encode())
    assert agent.client.stage_in(job, [f]) == [f]
    agent.client.run(job, [f])
    timeline = agent.client.wait_until_done(job, poll_interval=0.02, deadline=15)
    assert timeline.final is JobState.DONE
    if name != "ReportsDoneBeforeRun":  # DONE is its first answer, the process may still run
        assert marker.read_text() == "ok"
