"""Watch streams: the hub every job state change is published to, and bounded subscriptions."""
from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import Iterable

from protos.extensions import too_many_watches
from protos.states import JobState


@dataclass(frozen=True)
class WatchLimits:
    """Open watch streams allowed per caller (its token, else its host) and in all (AGT-EXT-9)."""

    per_caller: int = 64
    total: int = 1024

    def __post_init__(self):
        for name in ("per_caller", "total"):
            if getattr(self, name) < 1:
                raise ValueError(f"watch limit {name}={getattr(self, name)!r}: must be >= 1")


class HubClosed(Exception):
    """The agent is shutting down: open streams end with UNAVAILABLE (AGT-EXT-8)."""


class Subscription:
    """One watch stream's events, in order per job, each state once (AGT-EXT-7).

    Filled by the hub from any thread (under the core's lock); read by one consumer, either
    blocking (`next`) or from an asyncio loop (`next_async`). `finished` once every watched
    job's DONE has been taken; `closed` when the hub shut down."""

    def __init__(self, hub: "EventHub", caller: str, current: dict[str, JobState]):
        self.hub = hub
        self.caller = caller
        self.jobs = tuple(current)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pending: collections.deque[tuple[str, JobState]] = collections.deque(current.items())
        self._last = dict(current)               # the latest state queued per job
        self._left = {j for j, s in current.items() if s is not JobState.DONE}  # DONE not queued yet
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_ready: asyncio.Event | None = None

    # --- filled by the hub ----------------------------------------------------------------------
    def offer(self, job: str, state: JobState) -> None:
        with self._lock:
            last = self._last.get(job)
            if last is None or int(state) <= int(last) or self._closed:
                return  # not watched, or a state this stream has already had (each once, forward)
            self._last[job] = state
            self._pending.append((job, state))
            if state is JobState.DONE:
                self._left.discard(job)
            self._wake()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake()

    def _wake(self) -> None:
        """Under self._lock: wake the consumer, blocking or asyncio."""
        self._ready.notify_all()
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._async_ready.set)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    # --- read by the stream -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Every watched job's DONE has been queued and taken: the stream ends (AGT-EXT-7)."""
        with self._lock:
            return not self._left and not self._pending

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed and not self._pending

    def take(self) -> tuple[str, JobState] | None:
        """The next event if one is queued, else None; HubClosed once the hub shut down."""
        with self._lock:
            if self._closed:
                raise HubClosed("the agent is shutting down")
            return self._pending.popleft() if self._pending else None

    def next(self, timeout: float | None = None) -> tuple[str, JobState] | None:
        """Block until an event (returned), the timeout (None) or the hub's close (HubClosed)."""
        with self._lock:
            if not self._pending and not self._closed:
                self._ready.wait(timeout)
        return self.take()

    async def next_async(self) -> tuple[str, JobState]:
        """Await the next event; HubClosed once the hub shut down. One consumer per subscription."""
        if self._loop is None:
            with self._lock:
                self._loop = asyncio.get_running_loop()
                self._async_ready = asyncio.Event()
        while True:
            self._async_ready.clear()
            event = self.take()
            if event is not None:
                return event
            await self._async_ready.wait()

    def cancel(self) -> None:
        """The stream is over (finished, failed or its client left): free its place."""
        self.hub.unsubscribe(self)


class EventHub:
    """Where the core publishes every state change (`publish`, called under the core's lock at
    each transition), and where watch streams subscribe. No polling: a change reaches each
    subscription's queue and wakes its consumer. Bounded per caller and in all (AGT-EXT-9)."""

    def __init__(self, limits: WatchLimits | None = None):
        self.limits = limits or WatchLimits()
        self._lock = threading.Lock()
        self._by_job: dict[str, set[Subscription]] = {}
        self._per_caller: collections.Counter[str] = collections.Counter()
        self._open: set[Subscription] = set()
        self._closed = False
        self.published = 0   # state changes published (metrics, the bench)

    def subscribe(self, caller: str, current: dict[str, JobState]) -> Subscription:
        """A subscription whose first events are `current` (job -> its state now). The caller
        holds the core's lock, so that no change between that snapshot and this call is lost."""
        with self._lock:
            if self._closed:
                raise HubClosed("the agent is shutting down")
            if len(self._open) >= self.limits.total:
                raise too_many_watches(self.limits.total, "in all")
            if self._per_caller[caller] >= self.limits.per_caller:
                raise too_many_watches(self.limits.per_caller, "for this caller")
            sub = Subscription(self, caller, current)
            self._open.add(sub)
            self._per_caller[caller] += 1
            for job in current:
                self._by_job.setdefault(job, set()).add(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub not in self._open:
                return
            self._open.discard(sub)
            self._per_caller[sub.caller] -= 1
            if self._per_caller[sub.caller] <= 0:
                del self._per_caller[sub.caller]
            for job in sub.jobs:
                subs = self._by_job.get(job)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_job[job]

    def publish(self, job: str, state: JobState) -> None:
        """A job's new state, as the core made it visible to v1 (AGT-EXT-8: never earlier)."""
        with self._lock:
            self.published += 1
            subs = list(self._by_job.get(job, ()))
        for sub in subs:
            sub.offer(job, state)

    def open_streams(self) -> int:
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Shutdown: every open stream ends (UNAVAILABLE on the wire), none opens again."""
        with self._lock:
            self._closed = True
            subs = list(self._open)
        for sub in subs:
            sub.close()


def dedupe(jobs: Iterable[str]) -> list[str]:
    """Watched ids once each, in the order first asked."""
    return list(dict.fromkeys(jobs))
