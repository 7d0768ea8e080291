"""Structured JSON log lines (one per RPC and per job transition) and Prometheus metrics."""
from __future__ import annotations

import itertools
import json
import queue
import sys
import threading
import time
from typing import Callable, TextIO

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from protos.states import JobState

# A log line waits at most this long for others to share its write(): under a stream of polls
# the writer thread wakes ~50 times a second instead of once per RPC (GIL hand-offs cost).
BATCH_DELAY = 0.02
# Strings in log lines are cut to this many characters: many come from clients (job ids,
# method names), and a log line must not grow with what a caller sends.
MAX_FIELD = 256


def cut(text: str, limit: int = MAX_FIELD) -> str:
    """text, or its first characters and '...' when longer than limit."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Telemetry:
    """Writes one JSON object per line to `stream` and keeps the agent's Prometheus metrics.

    Each agent owns its own registry, so several agents in one process (tests) do not clash.
    `stream=None` silences the log but keeps the metrics.
    """

    def __init__(self, stream: TextIO | None = sys.stderr, queue_size: int = 10000):
        self.stream = stream
        self.queue_size = queue_size
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()  # C-fast; bounded by hand
        self._queued = itertools.count(1)  # next() is atomic: numbers the queued lines
        self._last_queued = 0
        self._written = 0                  # lines handled by the writer thread
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._rpc_counters: dict[tuple[str, str], object] = {}
        self.dropped = 0  # lines lost because the stream did not keep up
        self.answered = 0  # calls counted by rpc()
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter("agent_rpcs", "RPCs answered, by method and status code",
                            ["method", "code"], registry=self.registry)
        self.staging_bytes = Counter("agent_staging_bytes", "bytes read from the file source",
                                     registry=self.registry)
        self.staged_files = Counter("agent_staged_files", "file placements into job directories",
                                    registry=self.registry)
        self.transitions = Counter("agent_job_transitions", "job state transitions, by event",
                                   ["event"], registry=self.registry)
        self.start_faults = Counter("agent_start_faults", "job starts the agent could not make for a cause "
                                    "of its own (the job stays WAIT), by cause (EMFILE, EROFS, EAGAIN...)",
                                    ["cause"], registry=self.registry)
        self._http = None

    def log(self, kind: str, **fields) -> None:
        """Queue one line; a background thread writes it. Never blocks the caller: a stream
        that does not keep up (a full pipe nobody reads) costs lines, not the agent."""
        if self.stream is None:
            return
        if self._lines.qsize() >= self.queue_size:
            self.dropped += 1
            return
        fields = {k: cut(v) if isinstance(v, str) else v for k, v in fields.items()}
        self._lines.put(json.dumps({"ts": round(time.time(), 6), "kind": kind, **fields}, default=str))
        self._last_queued = next(self._queued)
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="agent-log", daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        while True:
            batch = [self._lines.get()]
            if self._lines.empty():
                time.sleep(BATCH_DELAY)  # gather a burst: one write per burst, not per RPC
            while len(batch) < 1024:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            try:
                self.stream.write("\n".join(batch) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must never stop the agent
            self._written += len(batch)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far is written; False after `timeout` seconds."""
        end = time.monotonic() + timeout
        target = self._last_queued
        while self._written < target:
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True

    def rpc(self, method: str, code: str, seconds: float, log: bool = True, **fields) -> None:
        """Count the RPC by method and code; also log a line unless `log` is False."""
        self.answered += 1  # not atomic across threads: an estimate, for the memory janitor
        counter = self._rpc_counters.get((method, code))
        if counter is None:  # labels() takes a lock and builds keys: once per pair, not per call
            counter = self._rpc_counters.setdefault((method, code), self.rpcs.labels(method, code))
        counter.inc()
        if log:
            self.log("rpc", method=method, code=code, ms=round(seconds * 1000, 3), **fields)

    def job_transition(self, job: str, old: JobState, new: JobState, event: str, **fields) -> None:
        self.transitions.labels(event).inc()
        self.log("job", job=job, old=old.name, new=new.name, event=event, **fields)

    def watch_core(self, counts: Callable[[], dict[str, int]]) -> None:
        """Expose jobs by state and the queue length, read from the core at scrape time."""
        self.registry.register(_CoreCollector(counts))

    def watch_server(self, counts: Callable[[], dict[str, int]]) -> None:
        """Expose the server's calls (awaiting their message, work queued, refused), read at scrape time."""
        self.registry.register(_ServerCollector(counts))

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_port

    def close(self) -> None:
        self.flush()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _CoreCollector:
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.counts = counts

    def describe(self):
        return []

    def collect(self):
        counts = self.counts()
        jobs = GaugeMetricFamily("agent_jobs", "jobs known to the agent, by state", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.name], counts.get(state.name, 0))
        yield jobs
        yield GaugeMetricFamily("agent_queue_length", "jobs waiting for a slot", value=counts.get("queue", 0))
        yield GaugeMetricFamily("agent_slots_busy", "jobs holding a slot", value=counts.get("busy", 0))


class _ServerCollector:
    """Gauges and counters of the asyncio server (reference_agent.server.AgentServer)."""

    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.counts = counts

    def describe(self):
        return []

    def collect(self):
        c = self.counts()
        yield GaugeMetricFamily("agent_calls_awaiting_message", "calls whose request message has not come",
                                value=c.get("awaiting_message", 0))
        yield CounterMetricFamily("agent_calls_half_open_ended", "calls ended because their request message "
                                  "did not come within --request-timeout", value=c.get("half_open_ended", 0))
        yield GaugeMetricFamily("agent_work_pending", "calls running or queued on the work threads",
                                value=c.get("work_pending", 0))
        yield CounterMetricFamily("agent_work_refused", "calls refused with RESOURCE_EXHAUSTED: work queue full",
                                  value=c.get("work_refused", 0))
        yield GaugeMetricFamily("agent_open_streams", "streaming calls open", value=c.get("open_streams", 0))
