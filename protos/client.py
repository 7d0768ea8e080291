"""A typed client of the Agent protocol (docs/CLIENT.md): plain calls, and retrying ones that survive restarts."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import grpc

from protos import AgentService_pb2_grpc, Common_pb2, RunJob_pb2, StageInFile_pb2, validation
from protos.client_errors import (
    AgentCallError, AgentUnavailable, AlreadySubmitted, InvalidRequest, JobTimeout, NoInterpreter, NotAuthorized,
    PreconditionFailed, ResourceExhausted, StageAfterSubmit, UnknownJob, Unstaged, classify,
)
from protos.retry import Backoff
from protos.states import JobState

__all__ = [
    "AgentCallError", "AgentClient", "AgentUnavailable", "AlreadySubmitted", "Backoff", "InvalidRequest",
    "JobTimeout", "NoInterpreter", "NotAuthorized", "PreconditionFailed", "RECONNECT_OPTIONS", "ResourceExhausted",
    "StageAfterSubmit", "Timeline", "UnknownJob", "Unstaged", "secure_channel",
]

# gRPC's defaults reconnect after 1 s, growing to 120 s: a client would notice a restarted agent
# minutes late. These keep reconnect attempts between 0.1 s and 2 s apart.
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


@dataclass
class Timeline:
    """The states seen for one job, as (seconds since the first poll, state), and the transient
    failures survived on the way, as (seconds, status code name)."""

    job: str
    points: list[tuple[float, JobState]] = field(default_factory=list)
    retries: list[tuple[float, str]] = field(default_factory=list)
    polls: int = 0

    @property
    def final(self) -> JobState | None:
        return self.points[-1][1] if self.points else None


def secure_channel(target: str, ca: bytes | None = None, cert: bytes | None = None,
                   key: bytes | None = None, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A TLS channel (mutual TLS when cert and key are given)."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds, options=list(options))


def _deadline(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class AgentClient:
    """Calls StageInFiles and RunJob; every non-OK status raises a subclass of AgentCallError.

    stage_in, run and status make exactly one call each. stage, submit and wait_until_done
    retry transient failures (AgentUnavailable) with `backoff` until their overall deadline,
    which is safe because StageInFiles is idempotent and a verbatim RunJob repeat is a status
    query. `timeout` bounds each call (None: no bound), `metadata` goes with every call;
    `clock` and `sleep` measure and spend the overall deadlines (inject them in tests).
    """

    def __init__(self, channel: grpc.Channel, timeout: float | None = 30.0,
                 metadata: Sequence[tuple[str, str]] = (), *, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if timeout is not None and (_deadline("timeout", timeout) == 0):
            raise ValueError("timeout must be > 0 seconds, or None for no bound")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a protos.retry.Backoff, got {backoff!r}")
        self._stub = AgentService_pb2_grpc.AgentStub(channel)
        self.channel = channel
        self.timeout = timeout
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
            channel = secure_channel(target, ca, cert, key, opts)
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

    def _call(self, method: str, fn, request, timeout: float | None = None):
        try:
            return fn(request, timeout=self.timeout if timeout is None else timeout,
                      metadata=self.metadata or None)
        except grpc.RpcError as exc:
            raise classify(method, exc.code(), exc.details(), request) from None

    def stage_in(self, job: str, files: Iterable[str], *, timeout: float | None = None) -> list[str]:
        """One StageInFiles; return the UUIDs the agent reports staged."""
        request = StageInFile_pb2.StageInFilesRequest(
            job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f) for f in files])
        response = self._call("StageInFiles", self._stub.StageInFiles, request, timeout)
        return [sf.file.uuid for sf in response.success_files]

    def run(self, job: str, files: Iterable[str] = (),
            python_version: str | Sequence[str | None] | None = None, *, timeout: float | None = None) -> JobState:
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
        return JobState(self._call("RunJob", self._stub.RunJob, request, timeout).code)

    def status(self, job: str, *, timeout: float | None = None) -> JobState:
        """A status query: RunJob with no files and no requirements (AGT-RUN-7/8). UnknownJob when
        the agent does not know the job."""
        return self.run(job, timeout=timeout)

    # --- retrying ---------------------------------------------------------------------------

    def _call_timeout(self, remaining: float) -> float | None:
        """The per-call timeout inside an overall deadline: never past it (a floor of 50 ms keeps
        one last call possible)."""
        if self.timeout is not None and remaining >= self.timeout:
            return self.timeout
        return max(remaining, 0.05)

    def _retrying(self, what: str, call: Callable[[float | None], object], deadline: float):
        """call(timeout) until it does not fail transiently or `deadline` seconds have passed."""
        start, attempt = self.clock(), 0
        while True:
            remaining = deadline - (self.clock() - start)
            try:
                return call(self._call_timeout(remaining))
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
        staged = self._retrying("staging", lambda t: self.stage_in(job, files, timeout=t),
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
        return self._retrying("submitting", lambda t: self.run(job, files, python_version, timeout=t), left)

    def wait_until_done(self, job: str, poll_interval: float | None = None, deadline: float = 60.0,
                        on_state: Callable[[JobState], None] | None = None,
                        clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                        *, backoff: Backoff | None = None, retry: bool = True) -> Timeline:
        """Poll until DONE and return the timeline; JobTimeout past `deadline` seconds.

        Polls back off with `backoff` (default: the client's), restarting from its first delay
        whenever the state changes; `poll_interval` alone means a fixed interval, as before.
        Transient failures (agent restarting, a slow answer) are retried until the deadline
        unless retry=False; UnknownJob and other errors are raised at once."""
        clock = clock or self.clock
        sleep = sleep or self.sleep
        deadline = _deadline("deadline", deadline)
        if backoff is None:
            backoff = Backoff.fixed(poll_interval) if poll_interval is not None else self.backoff
        start = clock()
        timeline = Timeline(job)
        attempt, last_error = 0, None
        while True:
            try:
                timeline.polls += 1
                state = self.status(job, timeout=self._call_timeout(deadline - (clock() - start)))
            except AgentCallError as exc:
                if not (retry and exc.transient):
                    raise
                state, last_error = None, exc
                timeline.retries.append((clock() - start, exc.code_name))
            now = clock() - start
            if state is not None:
                last_error = None
                if not timeline.points or timeline.points[-1][1] != state:
                    timeline.points.append((now, state))
                    attempt = 0
                    if on_state:
                        on_state(state)
                if state is JobState.DONE:
                    return timeline
            if now >= deadline:
                raise JobTimeout(job, deadline, timeline.points, last_error)
            sleep(min(backoff.delay(attempt), max(0.0, deadline - now)))
            attempt += 1
