"""A typed client of the Agent protocol (docs/CLIENT.md): plain calls, and retrying ones that survive restarts."""
from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

import grpc

from protos import (AgentExtensions_pb2, AgentExtensions_pb2_grpc, AgentService_pb2_grpc, Common_pb2, RunJob_pb2,
                    StageInFile_pb2, extensions, validation)
from protos import client_wait
from protos.client_errors import (
    AgentCallError, AgentUnavailable, AlreadySubmitted, InvalidRequest, JobTimeout, NoInterpreter, NotAuthorized,
    NotOffered, PreconditionFailed, ProtocolViolation, ResourceExhausted, StageAfterSubmit, UnknownJob, Unstaged,
    classify,
)
from protos.client_wait import Timeline
from protos.extensions import CANCEL, OUTCOME, WATCH, EndKind, Outcome, OutcomeError
from protos.retry import Backoff
from protos.states import JobState

__all__ = [
    "AgentCallError", "AgentClient", "AgentUnavailable", "AlreadySubmitted", "Backoff", "CANCEL", "EndKind",
    "InvalidRequest", "JobTimeout", "NoInterpreter", "NotAuthorized", "NotOffered", "OUTCOME", "Outcome",
    "PreconditionFailed", "ProtocolViolation", "RECONNECT_OPTIONS", "ResourceExhausted", "StageAfterSubmit",
    "Timeline", "UnknownJob", "Unstaged", "WATCH", "secure_channel",
]

# gRPC's defaults try to reconnect 1 s after a failure, growing to 120 s apart: a client noticed a
# restarted agent seconds to minutes late. These try again 0.1 s after a failure, growing by 1.6
# (gRPC's multiplier, jitter 20 %) to at most 0.25 s apart, so a call waiting for the channel
# (wait_for_ready, as the retrying calls use) is sent within about 0.3 s of the agent listening
# again. `min_reconnect_backoff_ms` is gRPC's *minimum connect timeout* (how long one connection
# attempt may take): 5 s leaves room for a TLS handshake over a slow link (gRPC's default: 20 s).
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 5000),
)


def secure_channel(target: str, *, ca: bytes | None = None, cert: bytes | None = None,
                   key: bytes | None = None, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A TLS channel (mutual TLS when cert and key are given)."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds, options=list(options))


def _deadline(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class AgentClient:
    """Calls the Agent service and, where offered, AgentExtensions; every non-OK status raises a
    subclass of AgentCallError.

    stage_in, run, status, outcome and cancel make exactly one call each. stage, submit,
    wait_until_done and run_and_wait retry transient failures (AgentUnavailable) with `backoff`
    until their overall deadline, which is safe because StageInFiles is idempotent and a
    verbatim RunJob repeat is a status query; a retry waits for the channel to be ready
    (wait_for_ready), so it goes out as soon as a restarted agent listens again. `timeout` bounds
    each unary call (None: no bound), `metadata` goes with every call; a watch stream is opened
    again after `watch_refresh` seconds (None: it lasts until the wait's deadline), so a
    connection that died silently costs at most that long. `clock` and `sleep` measure and spend
    the overall deadlines (inject them in tests). Every parameter after `channel` is keyword-only.
    """

    def __init__(self, channel: grpc.Channel, *, timeout: float | None = 30.0,
                 metadata: Sequence[tuple[str, str]] = (), backoff: Backoff | None = None,
                 watch_refresh: float | None = 60.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if timeout is not None and (_deadline("timeout", timeout) == 0):
            raise ValueError("timeout must be > 0 seconds, or None for no bound")
        if watch_refresh is not None and (_deadline("watch_refresh", watch_refresh) == 0):
            raise ValueError("watch_refresh must be > 0 seconds, or None")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a protos.retry.Backoff, got {backoff!r}")
        self._stub = AgentService_pb2_grpc.AgentStub(channel)
        self._ext = AgentExtensions_pb2_grpc.AgentExtensionsStub(channel)
        self._capabilities: frozenset[str] | None = None
        self.channel = channel
        self.timeout = timeout
        self.watch_refresh = watch_refresh
        self.metadata = tuple(metadata)
        self.backoff = backoff if backoff is not None else Backoff()
        self.clock = clock
        self.sleep = sleep
        self._owns_channel = False

    @classmethod
    def connect(cls, target: str, *, ca: bytes | None = None, cert: bytes | None = None, key: bytes | None = None,
                tls: bool = False, token: str | None = None, options: Sequence[tuple[str, object]] = (),
                **kwargs) -> "AgentClient":
        """A client on a new channel to `target` that it closes in close().

        TLS when `tls` is true or `ca` is given (mutual TLS with `cert` and `key`); `token` adds
        `authorization: Bearer TOKEN` to every call. RECONNECT_OPTIONS come before `options`."""
        if token is not None and (not isinstance(token, str) or not token.strip() or "\n" in token):
            raise ValueError(f"token must be a non-empty one-line string, got {token!r}")
        if (cert is None) != (key is None):
            raise ValueError("mutual TLS needs both cert and key")
        opts = [*RECONNECT_OPTIONS, *options]
        if tls or ca is not None or cert is not None:
            channel = secure_channel(target, ca=ca, cert=cert, key=key, options=opts)
        else:
            channel = grpc.insecure_channel(target, options=opts)
        if token is not None:
            kwargs["metadata"] = (*kwargs.get("metadata", ()), ("authorization", f"Bearer {token.strip()}"))
        client = cls(channel, **kwargs)
        client._owns_channel = True
        return client

    def close(self) -> None:
        """Close the channel if connect() made it."""
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one call each --------------------------------------------------------------------

    def _call(self, method: str, fn, request, timeout: float | None = None, *, ready: bool = False):
        try:
            return fn(request, timeout=self.timeout if timeout is None else timeout,
                      metadata=self.metadata or None, wait_for_ready=ready or None)
        except grpc.RpcError as exc:
            raise classify(method, exc.code(), exc.details(), request) from None

    def stage_in(self, job: str, files: Iterable[str], *, timeout: float | None = None,
                 ready: bool = False) -> list[str]:
        """One StageInFiles; return the UUIDs the agent reports staged. `ready`: wait for the
        channel to connect (up to `timeout`) instead of failing at once while it cannot."""
        request = StageInFile_pb2.StageInFilesRequest(
            job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f) for f in files])
        response = self._call("StageInFiles", self._stub.StageInFiles, request, timeout, ready=ready)
        return [sf.file.uuid for sf in response.success_files]

    def run(self, job: str, files: Iterable[str] = (), python_version: str | Sequence[str | None] | None = None,
            *, timeout: float | None = None, ready: bool = False) -> JobState:
        """One RunJob: submit a job (or query it when already submitted); return its state.

        `python_version` is one string, a list of strings (each one JobRequirement; None leaves
        the field unset), or None for no requirement at all."""
        if python_version is None:
            reqs = []
        elif isinstance(python_version, str):
            reqs = [RunJob_pb2.JobRequirement(python_version=python_version)]
        else:
            reqs = [RunJob_pb2.JobRequirement() if v is None else RunJob_pb2.JobRequirement(python_version=v)
                    for v in python_version]
        request = RunJob_pb2.RunJobRequest(
            job=Common_pb2.JobId(uuid=job), requirements=reqs, files=[Common_pb2.FileId(uuid=f) for f in files])
        return JobState(self._call("RunJob", self._stub.RunJob, request, timeout, ready=ready).code)

    def status(self, job: str, *, timeout: float | None = None, ready: bool = False) -> JobState:
        """A status query: RunJob with no files and no requirements (AGT-RUN-7/8). UnknownJob when
        the agent does not know the job."""
        return self.run(job, timeout=timeout, ready=ready)

    # --- the extension (docs/SPEC.md, profile ext) -------------------------------------------------

    def capabilities(self, *, refresh: bool = False, timeout: float | None = None) -> frozenset[str]:
        """The extensions the agent offers ("outcome", "cancel", "watch"), asked once per client
        and cached (`refresh=True` asks again). A v1 agent (UNIMPLEMENTED) offers none."""
        if self._capabilities is None or refresh:
            try:
                answer = self._call("GetCapabilities", self._ext.GetCapabilities,
                                    AgentExtensions_pb2.CapabilitiesRequest(), timeout)
                self._capabilities = extensions.capabilities_from(answer.extensions)
            except NotOffered:
                self._capabilities = frozenset()
        return self._capabilities

    def offers(self, capability: str) -> bool:
        """True when the agent offers `capability` (asks GetCapabilities the first time)."""
        if capability not in extensions.CAPABILITIES:
            raise ValueError(f"unknown extension {capability!r}; known: {', '.join(extensions.CAPABILITIES)}")
        return capability in self.capabilities()

    def forget(self, capability: str) -> None:
        """Stop using an extension the agent listed but does not serve (docs/SPEC.md, EXT reading 2)."""
        self._capabilities = self.capabilities() - {capability}

    def outcome(self, job: str, *, timeout: float | None = None, ready: bool = False) -> Outcome:
        """One GetOutcome: the job's state and, once DONE, how it ended (AGT-EXT-3). UnknownJob for
        a job the agent never saw, NotOffered when it does not offer "outcome", ProtocolViolation
        for an answer that breaks the outcome rules."""
        answer = self._call("GetOutcome", self._ext.GetOutcome, Common_pb2.JobId(uuid=job), timeout, ready=ready)
        try:
            return Outcome.from_proto(answer)
        except OutcomeError as exc:
            raise ProtocolViolation("GetOutcome", grpc.StatusCode.OK, str(exc), requirement=exc.requirement,
                                    job=job) from None

    def cancel(self, job: str, *, timeout: float | None = None, ready: bool = False) -> JobState:
        """One CancelJob: the job's state after the call, DONE, or RUN while the kill is under way
        (AGT-EXT-5). Cancelling a DONE job changes nothing, so a retry is safe."""
        answer = self._call("CancelJob", self._ext.CancelJob, Common_pb2.JobId(uuid=job), timeout, ready=ready)
        return JobState(answer.code)

    # --- retrying ---------------------------------------------------------------------------

    def _call_timeout(self, remaining: float) -> float | None:
        """The per-call timeout inside an overall deadline: never past it (a floor of 50 ms keeps
        one last call possible)."""
        if self.timeout is not None and remaining >= self.timeout:
            return self.timeout
        return max(remaining, 0.05)

    def _retrying(self, what: str, call: Callable[[float | None, bool], object], deadline: float):
        """call(timeout, ready) until it does not fail transiently or `deadline` seconds have passed;
        retries wait for the channel to be ready (ready=True)."""
        start, attempt = self.clock(), 0
        while True:
            remaining = deadline - (self.clock() - start)
            try:
                return call(self._call_timeout(remaining), attempt > 0)
            except AgentCallError as exc:
                if not exc.transient:
                    raise
                left = deadline - (self.clock() - start)
                if left <= 0:
                    raise type(exc)(exc.method, exc.code, f"{exc.details} (gave up {what} after {deadline:g} s, "
                                    f"{attempt + 1} attempts)", job=exc.job) from exc
                self.sleep(min(self.backoff.delay(attempt), left))
                attempt += 1

    def stage(self, job: str, files: Iterable[str], *, deadline: float = 60.0) -> list[str]:
        """StageInFiles, retried on transient failures; raise Unstaged naming the files the agent
        left out (absent from its source or unreadable). Returns the staged list."""
        files = list(files)
        staged = self._retrying("staging", lambda t, r: self.stage_in(job, files, timeout=t, ready=r),
                                _deadline("deadline", deadline))
        listed = {f.lower() for f in staged}
        missing = validation.dedupe(f.lower() for f in files if f.lower() not in listed)
        if missing:
            raise Unstaged("StageInFiles", grpc.StatusCode.FAILED_PRECONDITION,
                           f"the agent did not stage {len(missing)} file(s): {', '.join(missing[:8])}; put them in "
                           "its file source and stage again", files=missing, requirement="AGT-STAGE-1", job=job)
        return staged

    def submit(self, job: str, files: Sequence[str], python_version: str | Sequence[str | None] | None = None, *,
               stage: bool = True, deadline: float = 60.0) -> JobState:
        """Stage `files` (unless stage=False) and send the first RunJob, both retried on transient
        failures within `deadline` seconds; return the job's first state. A retried submission,
        also by a restarted client with the same job id, is answered as a status query, so the
        job is created at most once (AGT-RUN-7)."""
        deadline = _deadline("deadline", deadline)
        start = self.clock()
        files = list(files)
        if stage:
            try:
                self.stage(job, files, deadline=deadline)
            except StageAfterSubmit:
                pass  # submitted before (an earlier run of this client): the RunJob below is a status
                # query when the lists are the same, AlreadySubmitted when they are not
        left = max(0.0, deadline - (self.clock() - start))
        return self._retrying("submitting", lambda t, r: self.run(job, files, python_version=python_version,
                                                                   timeout=t, ready=r), left)

    def wait_until_done(self, job: str, *, deadline: float = 60.0, watch: bool | None = None,
                        poll_interval: float | None = None, backoff: Backoff | None = None,
                        on_state: Callable[[JobState], None] | None = None,
                        clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                        retry: bool = True) -> Timeline:
        """Wait until the job is DONE and return the timeline; JobTimeout past `deadline` seconds.

        With `watch` None (the default) the client watches (WatchJobs) when the agent offers
        "watch" and polls otherwise; True insists on watching (NotOffered if it cannot), False
        polls. A watch that breaks is opened again, its first event giving the current state; a
        watch the agent refuses (UNIMPLEMENTED, RESOURCE_EXHAUSTED) falls back to polling. Polls back
        off with `backoff` (default: the client's), restarting from its first delay whenever the
        state changes; `poll_interval` alone means a fixed interval. Transient failures are retried
        until the deadline unless retry=False; UnknownJob and other errors are raised at once."""
        return client_wait.wait(self, job, deadline=_deadline("deadline", deadline), watch=watch,
                                poll_interval=poll_interval, backoff=backoff, on_state=on_state,
                                clock=clock or self.clock, sleep=sleep or self.sleep, retry=retry)

    def run_and_wait(self, job: str, files: Sequence[str], python_version: str | Sequence[str | None] | None = None,
                     *, stage: bool = True, deadline: float = 600.0, watch: bool | None = None) -> Outcome | JobState:
        """submit(), then wait_until_done(), both within `deadline` seconds; return the job's
        Outcome when the agent offers "outcome" (from the DONE event, or GetOutcome after the
        last poll), else the v1 answer, JobState.DONE."""
        deadline = _deadline("deadline", deadline)
        start = self.clock()
        self.submit(job, files, python_version=python_version, stage=stage, deadline=deadline)
        left = max(0.0, deadline - (self.clock() - start))
        timeline = self.wait_until_done(job, deadline=left, watch=watch)
        if timeline.outcome is not None:
            return timeline.outcome
        if not self.offers(OUTCOME):
            return JobState.DONE
        left = max(0.05, deadline - (self.clock() - start))
        try:
            return self._retrying("asking the outcome", lambda t, r: self.outcome(job, timeout=t, ready=r), left)
        except NotOffered:
            self.forget(OUTCOME)
            return JobState.DONE
