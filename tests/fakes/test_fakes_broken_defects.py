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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
import pytest

from fakes import broken
from fakes.agent import full_method_name
from fakes.broken import CATALOGUE
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.requirements import EXT_REQUIREMENTS
from protos.states import JobState
from shared_helpers import code_of
from shared_helpers import new_id as new

W, R, D = JobState.WAIT, JobState.RUN, JobState.DONE


@dataclass(frozen=True)
class Probe:
    """How one broken agent's defect is seen: `run(agent, tmp[, restart])` returns a text naming
    the defect it observed, or None. `slots`: the agent's job slots; `restart`: None, "plain" (a
    clean stop, running jobs stopped) or "keep jobs" (running jobs left to be adopted), the
    third argument given to `run`; `no_happy_path`: why the agent cannot run an ordinary job."""

    run: Callable
    slots: int = 2
    restart: str | None = None
    no_happy_path: str | None = None
    pythons: tuple[str, ...] = ()   # extra interpreters the agent is given (--python)


PROBES: dict[str, Probe] = {}  # filled by @probe, keyed by the broken agent's name
# The defects of the extension (AGT-EXT-*) show in tests/reference_agent/test_agent_ext_defects.py.
V1_AGENTS = sorted(n for n, c in CATALOGUE.items() if not set(c.violates) & set(EXT_REQUIREMENTS))


def probe(agent: type, **how):
    """Declare the decorated function the probe of the broken agent class `agent` (one each)."""
    def declare(run):
        assert agent.__name__ not in PROBES, f"two probes for {agent.__name__}"
        PROBES[agent.__name__] = Probe(run, **how)
        return run
    return declare




def appender(path: Path, text: str = "x", sleep: float = 0.0) -> bytes:
    """A job script that sleeps, then appends `text` to `path` (an absolute path)."""
    return f"import time\ntime.sleep({sleep})\nopen({str(path)!r}, 'a').write({text!r})\n".encode()


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def submit(agent, data: bytes = b"pass\n", job: str | None = None) -> tuple[str, str, JobState]:
    job, f = job or new(), agent.put(data)
    assert agent.client.stage_in(job, [f]) == [f]
    return job, f, agent.client.run(job, [f])


def done(agent, job, timeout=15.0):
    return agent.client.wait_until_done(job, poll_interval=0.02, deadline=timeout)


def raw_status(agent, method: str, payload: bytes) -> grpc.StatusCode:
    try:
        agent.channel.unary_unary(full_method_name(method))(payload, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# --- identifiers and wire ----------------------------------------------------------------------

@probe(broken.AcceptsMalformedUuid)
def probe_malformed_uuid(agent, tmp):
    for bad in (uuid.uuid4().hex, "{" + new() + "}", "urn:uuid:" + new()):
        if code_of(agent.client.stage_in, bad, []) == "OK":
            return f"StageInFiles accepted job {bad!r}"


@probe(broken.AcceptsMissingJob)
def probe_missing_job(agent, tmp):
    for message in (StageInFile_pb2.StageInFilesRequest(), RunJob_pb2.RunJobRequest(job=Common_pb2.JobId())):
        method = "StageInFiles" if isinstance(message, StageInFile_pb2.StageInFilesRequest) else "RunJob"
        code = raw_status(agent, method, message.SerializePartialToString())
        if code is not grpc.StatusCode.INVALID_ARGUMENT:
            return f"{method} without job.uuid answered {code.name}"


@probe(broken.CaseSensitiveUuids)
def probe_case_sensitive(agent, tmp):
    job, f = new(), agent.put(b"pass\n")
    agent.client.stage_in(job.upper(), [f])
    code = code_of(agent.client.run, job, [f.upper()])
    if code != "OK":
        return f"RunJob with the other case answered {code}"


@probe(broken.EchoesUuidCase)
def probe_echoes_case(agent, tmp):
    f = agent.put(b"pass\n")
    listed = agent.client.stage_in(new(), [f.upper()])
    if listed != [f]:
        return f"success_files {listed} not in lower case"


@probe(broken.OkWithoutCode, slots=1)
def probe_ok_without_code(agent, tmp):
    submit(agent, appender(tmp / "blocker", sleep=30))           # holds the only slot
    job, f = new(), agent.put(b"pass\n")
    agent.client.stage_in(job, [f])
    run = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
    raw = agent.channel.unary_unary(full_method_name("RunJob"))(run.SerializeToString(), timeout=10)
    response = RunJob_pb2.RunJobResponse.FromString(raw)
    assert response.code == W                                    # what a Python client sees
    if not response.HasField("code"):
        return f"OK RunJob response without code: {raw!r}"


@probe(broken.ServesUnderPackage, no_happy_path='answers only under /agent.Agent/ (tested in test_fakes_broken_catalogue.py)')
def probe_under_package(agent, tmp):
    code = raw_status(agent, "StageInFiles", StageInFile_pb2.StageInFilesRequest(
        job=Common_pb2.JobId(uuid=new())).SerializeToString())
    if code is not grpc.StatusCode.OK:
        return f"/Agent/StageInFiles answered {code.name}"


@probe(broken.OkForUnparseableBytes)
def probe_ok_for_garbage(agent, tmp):
    for method in ("StageInFiles", "RunJob"):
        code = raw_status(agent, method, b"\xff\xff\xff")
        if code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL):
            return f"{method} answered {code.name} to bytes that do not parse"


@probe(broken.IgnoresSizeLimit)
def probe_size_limit(agent, tmp):                    # the agent is configured with the 4 MiB default
    big = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid="x" * (5 * 1024 * 1024)))
    code = raw_status(agent, "StageInFiles", big.SerializeToString())
    if code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"a 5 MiB request answered {code.name}"


# --- staging ----------------------------------------------------------------------------------

@probe(broken.ListsUnstagedFiles)
def probe_lists_unstaged(agent, tmp):
    absent = new()
    listed = agent.client.stage_in(new(), [absent])
    if listed:
        return f"absent file listed: {listed}"


@probe(broken.ListsDuplicatesTwice)
def probe_lists_duplicates(agent, tmp):
    f = agent.put(b"pass\n")
    listed = agent.client.stage_in(new(), [f, f.upper(), f])
    if listed != [f]:
        return f"listed {listed}"


@probe(broken.ListsOnlyNewlyStaged)
def probe_lists_only_new(agent, tmp):
    job, f = new(), agent.put(b"pass\n")
    first, again = agent.client.stage_in(job, [f]), agent.client.stage_in(job, [f])
    if first != again:
        return f"first {first}, repeat {again}"


@probe(broken.LinksInsteadOfCopying)
def probe_links_source(agent, tmp):
    marker = tmp / "stage3"
    job, f = new(), agent.put(appender(marker, "staged"))
    agent.client.stage_in(job, [f])
    agent.put(appender(marker, "changed"), f)                     # the source changes afterwards
    agent.client.run(job, [f])
    done(agent, job)
    assert wait_for(marker.exists, 5)
    if marker.read_text() != "staged":
        return f"job ran the source's later bytes: {marker.read_text()!r}"


@probe(broken.StageChangesSubmittedJob)
def probe_stage_after_submit(agent, tmp):
    job, f, _ = submit(agent)
    code = code_of(agent.client.stage_in, job, [agent.put(b"late\n")])
    if code != "FAILED_PRECONDITION":
        return f"StageInFiles after submission answered {code}"


@probe(broken.AcceptsUnstagedRunJob)
def probe_unstaged_run(agent, tmp):
    job, f = new(), agent.put(b"pass\n")
    code = code_of(agent.client.run, job, [f])
    if code != "FAILED_PRECONDITION":
        return f"RunJob with an unstaged file answered {code}"


@probe(broken.FollowsSymlinksInSource)
def probe_follows_symlink(agent, tmp):
    secret = tmp / "outside-secret"
    secret.write_bytes(b"secret\n")
    f = new()
    (agent.source / f).symlink_to(secret)
    listed = agent.client.stage_in(new(), [f])
    if listed:
        return f"a symlink to {secret} was staged"


# --- RunJob -----------------------------------------------------------------------------------

@probe(broken.AcceptsRunWithoutFiles)
def probe_run_without_files(agent, tmp):
    job = new()
    agent.client.stage_in(job, [agent.put(b"pass\n")])
    code = code_of(agent.client.run, job, [])
    if code != "INVALID_ARGUMENT":
        return f"first RunJob without files answered {code}"


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
    done(agent, job)
    assert wait_for(marker.exists, 5)
    if marker.read_text() != "first":
        return f"the job ran {marker.read_text()!r}"


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
    again = restart(agent)
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
    done(agent, job)
    assert wait_for(out.exists, 5)
    if out.read_text() != f"{hashlib.sha256(big).hexdigest()} {len(big)}":
        return f"the job saw {out.read_text().split()[-1]} bytes of a {len(big)}-byte input"


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
    done(again, job)
    assert wait_for(out.exists, 5)
    if out.read_text().split()[0] != hashlib.sha256(b"bytes at staging time").hexdigest():
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
    done(agent, later)
    assert wait_for(out.exists, 5)
    if out.read_text().split()[0] != hashlib.sha256(b"the source's bytes").hexdigest():
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
