"""AGT-EXT-7/8/9: WatchJobs sends the current state, then each later state once and in order, ends after
DONE, refuses unknown ids before any event, never runs ahead of v1, ends with UNAVAILABLE on a restart;
streams are bounded (SHOULD)."""
from __future__ import annotations

import time

import grpc

from conformance.suite_ext import _ext
from conformance.violations import covers, expect
from protos.states import JobState


def _states(events, job):
    return [s for j, s, _ in events if j == job.lower()]


@covers("AGT-EXT-7", "AGT-EXT-8", needs=("watch", "witness", "slots"))
def test_watch_follows_a_job_from_wait_to_done(env):
    gated = [env.job("AGT-EXT-7", gate=True) for _ in range(env.target.slots)]
    for job in gated:
        env.wait_started("AGT-EXT-7", job)
    job = env.job("AGT-EXT-7", gate=True)
    watch = _ext.Watch(env, [job], env.timing(60.0)).start()
    env.wait_until("AGT-EXT-7", lambda: watch.events or watch.done.is_set(), env.timing(5.0),
                   "WatchJobs sent no first event (the job's current state)")
    v1_seen = []   # (time, state) of each v1 answer, to compare with the events' arrival
    env.witness.open_gate(gated[0])
    env.wait_started("AGT-EXT-7", job)
    v1_seen.append((time.monotonic(), env.status("AGT-EXT-7", job)))
    env.witness.open_gate(job)
    env.finish(job)
    v1_seen.append((time.monotonic(), JobState.DONE))
    expect("AGT-EXT-7", watch.wait(env.timing(5.0)), "the watch stream did not end after its job's DONE event",
           lambda: f"job {job}: events {_states(watch.decoded('AGT-EXT-7'), job)}")
    events = watch.decoded("AGT-EXT-7")
    states = _states(events, job)
    # AGT-EXT-8: no DONE event before v1 says DONE (a v1 answer after the DONE event arrived said otherwise)
    arrivals = [t for (_, t), (j, s, _) in zip(watch.events, events) if s is JobState.DONE]
    later = [(t, v1) for t, v1 in v1_seen if arrivals and t > arrivals[0] and v1 is not JobState.DONE]
    expect("AGT-EXT-8", not later, "a watch reported DONE while RunJob still reported the job as not DONE after it",
           lambda: f"job {job}: events {[s.name for s in states]}; RunJob answered {later[0][1].name} "
                   f"{later[0][0] - arrivals[0]:.3f} s after the DONE event arrived")
    expect("AGT-EXT-7", watch.code is grpc.StatusCode.OK, "the watch stream ended with an error",
           f"{watch.code.name} {watch.details!r} after {states}")
    expect("AGT-EXT-7", states == [JobState.WAIT, JobState.RUN, JobState.DONE],
           "a watched job's states were not WAIT, RUN, DONE, each once and in order",
           f"job {job} (WAIT when the watch began, RUN and DONE later): events {[s.name for s in states]}")
    done_event = next(o for j, s, o in events if s is JobState.DONE)
    if "outcome" in (env.target.extensions or ()):
        expect("AGT-EXT-7", done_event is not None and done_event.code == JobState.DONE,
               "a DONE event carries no outcome although 'outcome' is offered", f"job {job}")
    for job_ in gated:
        env.witness.open_gate(job_)


@covers("AGT-EXT-7", needs=("watch",))
def test_watch_of_a_done_job_and_of_unknown_ids(env):
    job = env.job("AGT-EXT-7")
    env.finish(job)
    watch = _ext.Watch(env, [job], env.timing(10.0)).start()
    ended = watch.wait(env.timing(5.0))
    watch.cancel()
    states = _states(watch.decoded("AGT-EXT-7"), job)
    expect("AGT-EXT-7", ended and watch.code is grpc.StatusCode.OK and states == [JobState.DONE],
           "watching a DONE job is not one DONE event and the end of the stream",
           f"job {job}: events {[s.name for s in states]}, stream "
           f"{'ended ' + watch.code.name if ended else 'still open after the deadline'}")
    unknown = env.new_id()
    watch = _ext.Watch(env, [job, unknown], env.timing(10.0)).start()
    ended = watch.wait(env.timing(5.0))
    watch.cancel()
    expect("AGT-EXT-7", ended and watch.code is grpc.StatusCode.NOT_FOUND and not watch.events
           and unknown.lower() in watch.details.lower(),
           "a watch naming an unknown job id did not fail with NOT_FOUND naming it before any event",
           f"watched [{job}, {unknown}]: {len(watch.events)} events, ended with "
           f"{watch.code.name if watch.code else 'nothing'} {watch.details!r}")


@covers("AGT-EXT-8", needs=("watch", "witness", "restart"))
def test_a_restart_ends_open_watch_streams_with_unavailable(env):
    job = env.job("AGT-EXT-8", gate=True)
    env.wait_started("AGT-EXT-8", job)
    watch = _ext.Watch(env, [job], env.timing(60.0), own_channel=True).start()
    env.wait_until("AGT-EXT-8", lambda: watch.events, env.timing(5.0), "WatchJobs sent no first event")
    env.target.restart(hard=False)
    ended = watch.wait(env.timing(10.0))
    watch.cancel()
    expect("AGT-EXT-8", ended and watch.code is grpc.StatusCode.UNAVAILABLE,
           "a restart did not end an open watch stream with UNAVAILABLE",
           f"stream {'ended with ' + watch.code.name if ended else 'still open'} {watch.details!r}")
    env.witness.open_gate(job)


@covers("AGT-EXT-9", needs=("watch", "witness"))
def test_open_watch_streams_are_bounded(env):
    """SHOULD: up to 512 streams on one running job; one of them must be refused with RESOURCE_EXHAUSTED."""
    job = env.job("AGT-EXT-9", gate=True)
    env.wait_started("AGT-EXT-9", job)
    watches = []
    try:
        for _ in range(512):
            watches.append(_ext.Watch(env, [job], env.timing(30.0)).start())
            if any(w.code is grpc.StatusCode.RESOURCE_EXHAUSTED for w in watches[-8:]):
                break
        limit = time.monotonic() + env.timing(3.0)
        while time.monotonic() < limit and not any(w.code is grpc.StatusCode.RESOURCE_EXHAUSTED for w in watches):
            time.sleep(env.timing(0.05))
        refused = [w for w in watches if w.code is grpc.StatusCode.RESOURCE_EXHAUSTED]
        expect("AGT-EXT-9", refused, "no bound on open watch streams (512 open on one job, none refused)",
               f"{len(watches)} streams opened; codes so far: "
               f"{sorted({w.code.name for w in watches if w.code is not None})}")
    finally:
        for w in watches:
            w.cancel()
        env.witness.open_gate(job)
