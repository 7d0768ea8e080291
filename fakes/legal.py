"""Legal-behaviour exploration: a fake agent that plays, per test run, one of the behaviours the contract allows."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import grpc
from hypothesis import strategies as st

from fakes.agent import FakeAgent
from fakes.backend import Call, FakeJob
from fakes.faults import Fault, FaultPlan
from fakes.habits import Habit
from fakes.progression import ManualClock, Scripted
from protos.extensions import CAPABILITIES
from protos.states import Event, JobState

STATES = ("WAIT", "RUN", "DONE")
CANCEL_MODES = ("at-once", "late", "ends-first")


@dataclass(frozen=True)
class Restart:
    """The agent restarts after its `after_answer`-th OK RunJob answer (1 = right after the first
    submission): the next `down_calls` calls get UNAVAILABLE, then it is back. Jobs in RUN are
    then still running, or DONE (interrupted) when `ends_running`; jobs in WAIT stay WAIT and
    staged files stay staged (AGT-DUR-1)."""

    after_answer: int
    down_calls: int = 1
    ends_running: bool = False

    def __post_init__(self):
        for name in ("after_answer", "down_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True)
class Behaviour:
    """One legal way for an agent to serve a client's test.

    `answers`: the n-th OK RunJob answer for each job reports answers[n-1] (the submission is
    answer 1; the last one stays), a forward path ending in DONE, RUN possibly skipped.
    Calls are numbered from 0 in arrival order; those in `unavailable` get UNAVAILABLE before
    the agent acts, those in `lost` are acted on and their answer is lost (UNAVAILABLE), those
    in `slow` are acted on and answered after the caller's deadline. With `vanish`, a file leaves
    the source as soon as it is staged (it stays staged: AGT-STAGE-2/3).

    The extension (PROTOCOL-EXT): `offers` is what GetCapabilities lists (None: no such service, a
    v1 agent). Watch streams count events from 0 across the run: a stream ends with UNAVAILABLE
    right after each event numbered in `breaks`, and each event counts as an answer for `restart`
    (a restart ends an open stream with UNAVAILABLE, AGT-EXT-8). `cancel` is how a cancel of a RUN
    job plays: DONE at once, RUN answered and DONE later ("late"), or the job's own end winning the
    race ("ends-first": DONE with its natural outcome, AGT-EXT-6).
    """

    answers: tuple[str, ...] = ("WAIT", "RUN", "DONE")
    restart: Restart | None = None
    unavailable: frozenset[int] = frozenset()
    lost: frozenset[int] = frozenset()
    slow: frozenset[int] = frozenset()
    vanish: bool = False
    offers: frozenset[str] | None = None
    breaks: frozenset[int] = frozenset()
    cancel: str = "at-once"

    def __post_init__(self):
        object.__setattr__(self, "answers", tuple(self.answers))
        if self.offers is not None:
            offers = frozenset(self.offers)
            if isinstance(self.offers, str) or not offers <= set(CAPABILITIES):
                raise ValueError(f"offers must be None or names from {', '.join(CAPABILITIES)}, got {self.offers!r}")
            object.__setattr__(self, "offers", offers)
        if self.cancel not in CANCEL_MODES:
            raise ValueError(f"cancel must be one of {', '.join(CANCEL_MODES)}, got {self.cancel!r}")
        if not self.answers or self.answers[-1] != "DONE" or any(a not in STATES for a in self.answers):
            raise ValueError(f"answers must be WAIT/RUN/DONE names ending in DONE, got {self.answers!r}")
        Scripted(self.answers)  # refuses a script that goes backwards (AGT-STATE-1)
        if self.restart is not None and not isinstance(self.restart, Restart):
            raise TypeError(f"restart must be a fakes.legal.Restart or None, got {self.restart!r}")
        for name in ("unavailable", "lost", "slow", "breaks"):
            value = frozenset(getattr(self, name))
            if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in value):
                raise ValueError(f"{name} must hold call numbers >= 0, got {sorted(value, key=repr)!r}")
            object.__setattr__(self, name, value)


def behaviours(*, max_waits: int = 12, max_runs: int = 12, max_call: int = 30, restarts: bool = True,
               failures: bool = True, slow: bool = True, vanish: bool = True,
               extension: bool = True) -> st.SearchStrategy[Behaviour]:
    """A Hypothesis strategy of Behaviours; each keyword turns one kind of behaviour off or bounds it
    (extension=False: always a v1 agent). Shrinking goes towards DONE at the first answer, no
    restart, no failure, nothing slow, a v1 agent."""
    answers = st.builds(lambda w, r: ("WAIT",) * w + ("RUN",) * r + ("DONE",),
                        st.integers(0, max_waits), st.integers(0, max_runs))
    # half the draws among the first calls and answers, where staging and submission happen
    calls = st.frozensets(st.integers(0, 3) | st.integers(0, max_call), max_size=3)
    none: st.SearchStrategy[frozenset[int]] = st.just(frozenset())
    after = st.integers(1, 4) | st.integers(1, max_waits + max_runs + 1)
    restart = st.none() | st.builds(Restart, after, st.integers(1, 3), st.booleans())
    offers = st.none() | st.just(frozenset(CAPABILITIES)) | st.frozensets(st.sampled_from(CAPABILITIES))
    breaks = st.frozensets(st.integers(0, 3) | st.integers(0, max_waits + max_runs + 2), max_size=3)
    return st.builds(Behaviour, answers=answers, restart=restart if restarts else st.none(),
                     unavailable=calls if failures else none, lost=calls if failures else none,
                     slow=calls if slow else none, vanish=st.booleans() if vanish else st.just(False),
                     offers=offers if extension else st.none(), breaks=breaks if extension else none,
                     cancel=st.sampled_from(CANCEL_MODES) if extension else st.just("at-once"))


class _Player(FaultPlan):
    """The faults of one Behaviour, decided per call number; also counts the OK RunJob answers."""

    def __init__(self, behaviour: Behaviour, agent: "LegalAgent", slow_cap: float):
        super().__init__()
        self.behaviour, self.agent, self.slow_cap = behaviour, agent, slow_cap
        self.calls = self.answers = self.down = self.sent = 0
        self.pending: Restart | None = None
        self.events: list[str] = []
        self.exercised: set[str] = set()
        self._plock = threading.Lock()

    def _event(self, kind: str, text: str) -> None:
        self.exercised.add(kind)
        self.events.append(text)

    def take(self, method: str) -> Fault | None:
        b, back = self.behaviour, None
        with self._plock:
            n = self.calls
            self.calls += 1
            if self.down:
                self.down -= 1
                self._event("restart: down", f"call {n} {method}: UNAVAILABLE (agent restarting)")
                return Fault(grpc.StatusCode.UNAVAILABLE, "agent restarting (legal mode)", method)
            back, self.pending = self.pending, None
        if back is not None:
            self._come_back(back)
        if n in b.unavailable:
            self._event("unavailable", f"call {n} {method}: UNAVAILABLE before acting")
            return Fault(grpc.StatusCode.UNAVAILABLE, "transient failure (legal mode)", method)
        if n in b.slow:
            self._event(f"slow {method}", f"call {n} {method}: acted, answered after the caller's deadline")
            return Fault(grpc.StatusCode.DEADLINE_EXCEEDED, "slow answer (legal mode)", method, after_apply=True,
                         slow=True, cap=self.slow_cap)
        if n in b.lost:
            self._event(f"lost {method}", f"call {n} {method}: acted, answer lost (UNAVAILABLE)")
            return Fault(grpc.StatusCode.UNAVAILABLE, "answer lost (legal mode)", method, after_apply=True)
        return super().take(method)

    def _come_back(self, restart: Restart) -> None:
        ended = []
        if restart.ends_running:
            backend = self.agent.backend
            with backend.lock:
                for job in backend.jobs():
                    if job.state is JobState.RUN:
                        backend.advance(job.uuid, Event.INTERRUPT)
                        ended.append(job.uuid)
        self._event("restart: RUN job interrupted" if ended else "restart: jobs kept",
                    f"agent back; {'DONE (interrupted): ' + ', '.join(ended) if ended else 'jobs kept'}")

    def event_sent(self) -> tuple[grpc.StatusCode, str] | None:
        """A watch stream sent an event: it counts as an answer (a restart may follow) and the stream
        may break here."""
        with self._plock:
            n = self.sent
            self.sent += 1
        self.answered()
        with self._plock:
            if self.down:
                self._event("restart: stream", f"stream event {n}: the restart ends the stream (UNAVAILABLE)")
                return grpc.StatusCode.UNAVAILABLE, "agent restarting (legal mode)"
        if n in self.behaviour.breaks:
            self._event("stream broken", f"stream event {n}: stream ends with UNAVAILABLE")
            return grpc.StatusCode.UNAVAILABLE, "stream broken (legal mode)"
        return None

    def answered(self) -> None:
        with self._plock:
            self.answers += 1
            restart = self.behaviour.restart
            if restart is not None and self.answers == restart.after_answer:
                self.down, self.pending = restart.down_calls, restart
                self._event("restart", f"restart after answer {self.answers}: down for {restart.down_calls} call(s)")


@dataclass
class Play:
    """One run of a client's test against one Behaviour: the clock to give the client, and what
    happened (calls, events, habits, jobs) to assert on."""

    agent: "LegalAgent"
    behaviour: Behaviour
    player: _Player
    sleeps: list[float] = field(default_factory=list)

    @property
    def clock(self) -> ManualClock:
        return self.agent.clock

    @property
    def source(self):
        return self.agent.source

    def sleep(self, seconds: float) -> None:
        """The client's sleep: moves the fake clock instead of waiting."""
        self.agent.clock.advance(seconds)
        self.sleeps.append(float(seconds))

    @property
    def calls(self) -> list[Call]:
        return self.agent.backend.calls

    @property
    def events(self) -> list[str]:
        return list(self.player.events)

    @property
    def exercised(self) -> set[str]:
        """The kinds of behaviour that actually happened in this run (not all that were scripted)."""
        return set(self.player.exercised)

    @property
    def habits(self) -> list[Habit]:
        return self.agent.backend.habits

    @property
    def jobs(self) -> list[FakeJob]:
        return self.agent.backend.jobs()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no call is being answered (a slow answer may still be on its way)."""
        self.agent.settle(timeout)

    def describe(self) -> str:
        lines = [repr(self.behaviour), *self.events]
        lines += [_describe(c) for c in self.calls]
        lines += [f"habit: {h}" for h in self.habits]
        return "\n".join(lines)


class LegalAgent(FakeAgent):
    """A FakeAgent that plays one Behaviour per `play()`: a session-wide server, a fresh agent
    state for each run. Its clock is a ManualClock that the client's sleep should advance
    (Play.sleep), so backoff costs no real time; slow answers do cost real time (the caller's
    per-call timeout, at most `slow_cap` seconds)."""

    def __init__(self, slow_cap: float = 2.0, **config):
        self.clock = ManualClock()
        super().__init__(clock=self.clock, **config)
        self.slow_cap = slow_cap
        self._player: _Player | None = None
        self._flight = threading.Condition()
        self._in_flight = 0

    @contextlib.contextmanager
    def play(self, behaviour: Behaviour):
        """Reset the agent (jobs, staged files, source, calls, habits) and play `behaviour`."""
        if not isinstance(behaviour, Behaviour):
            raise TypeError(f"play() needs a fakes.legal.Behaviour, got {behaviour!r}")
        self.settle()
        self.backend.reset()
        self.source.clear()
        self.backend.progression = Scripted(behaviour.answers)
        self.backend.extensions = behaviour.offers
        self.backend.cancel_mode = behaviour.cancel
        self._player = self.backend.faults = _Player(behaviour, self, self.slow_cap)
        run = Play(self, behaviour, self._player)
        try:
            yield run
        finally:
            self.settle()
            _note(run)

    def settle(self, timeout: float = 10.0) -> None:
        with self._flight:
            if not self._flight.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} call(s) still being answered after {timeout} s")

    def _counted(self, handler, *args):
        with self._flight:
            self._in_flight += 1
        try:
            return handler(*args)
        finally:
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def after_event(self, method: str, sent: int):
        player = self._player
        return player.event_sent() if player is not None else None

    def handle(self, method, request, context, step):
        return self._counted(super().handle, method, request, context, step)

    def stage_in(self, request):
        response = super().stage_in(request)
        player = self._player
        if player is not None and player.behaviour.vanish:
            for staged in response.success_files:
                if self.source.delete(staged.file.uuid):
                    player._event("vanish", f"{staged.file.uuid} left the source after staging")
        return response

    def run_job(self, request):
        response = super().run_job(request)
        if self._player is not None:
            self._player.answered()
        return response


def _describe(c: Call) -> str:
    injected = " (injected)" if c.injected else ""
    if c.method not in ("RunJob", "StageInFiles"):
        sent = f" {len(c.response)} event(s)" if isinstance(c.response, tuple) else ""
        return f"{c.method} -> {c.code.name}{injected}{sent}"
    answer = f" {JobState(c.response.code).name}" if c.method == "RunJob" and c.response else ""
    return f"{c.method} job={c.request.job.uuid} files={len(c.request.files)} -> {c.code.name}{injected}{answer}"


def _note(run: Play) -> None:
    """Show what happened in Hypothesis's report of a failing example (only there)."""
    try:
        from hypothesis import note

        note(run.describe())
    except Exception:  # noqa: BLE001 - outside a Hypothesis test there is nowhere to note it
        pass
