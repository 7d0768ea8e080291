"""Structured JSON log lines (one per RPC and per job transition) and Prometheus metrics."""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable, TextIO

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily

from protos.states import JobState


class Telemetry:
    """Writes one JSON object per line to `stream` and keeps the agent's Prometheus metrics.

    Each agent owns its own registry, so several agents in one process (tests) do not clash.
    `stream=None` silences the log but keeps the metrics.
    """

    def __init__(self, stream: TextIO | None = sys.stderr):
        self.stream = stream
        self._write_lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter("agent_rpcs", "RPCs answered, by method and status code",
                            ["method", "code"], registry=self.registry)
        self.staging_bytes = Counter("agent_staging_bytes", "bytes read from the file source",
                                     registry=self.registry)
        self.staged_files = Counter("agent_staged_files", "file placements into job directories",
                                    registry=self.registry)
        self.transitions = Counter("agent_job_transitions", "job state transitions, by event",
                                   ["event"], registry=self.registry)
        self._http = None

    def log(self, kind: str, **fields) -> None:
        if self.stream is None:
            return
        line = json.dumps({"ts": round(time.time(), 6), "kind": kind, **fields}, default=str)
        with self._write_lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must never stop the agent

    def rpc(self, method: str, code: str, seconds: float, **fields) -> None:
        self.rpcs.labels(method, code).inc()
        self.log("rpc", method=method, code=code, ms=round(seconds * 1000, 3), **fields)

    def job_transition(self, job: str, old: JobState, new: JobState, event: str, **fields) -> None:
        self.transitions.labels(event).inc()
        self.log("job", job=job, old=old.name, new=new.name, event=event, **fields)

    def watch_core(self, counts: Callable[[], dict[str, int]]) -> None:
        """Expose jobs by state and the queue length, read from the core at scrape time."""
        self.registry.register(_CoreCollector(counts))

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_port

    def close(self) -> None:
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
