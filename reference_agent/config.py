"""The reference agent's configuration: one validated dataclass shared by the CLI, server and core."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_SOURCE = "agent-source"
DEFAULT_STATE_DIR = "agent-state"
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the option and the bad value."""


class StateError(Exception):
    """The state directory cannot be used (held by another agent, journal lost or unreadable).

    Not a ConfigError: the command line is right, the directory is not; `serve` prints the
    message alone (it says what was found and how to recover) and exits with status 2."""


def parse_listen(value: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT); raise ConfigError naming the value."""
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"--listen {value!r}: expected HOST:PORT, for example 127.0.0.1:50051 or [::1]:0")
    if host.startswith("[") != host.endswith("]"):
        raise ConfigError(f"--listen {value!r}: unbalanced brackets around the IPv6 host")
    try:
        number = int(port, 10)
    except ValueError:
        raise ConfigError(f"--listen {value!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--listen {value!r}: port {number} is outside 0..65535")
    return host, number


@dataclass
class AgentConfig:
    """Everything the agent needs; `validate()` checks it and fills derived defaults.

    `source` is a local directory or an fsspec URL (memory://bucket, s3://...). The state
    directory holds the journal, the content cache and the jobs' directories.
    """

    listen: str = DEFAULT_LISTEN
    source: str = DEFAULT_SOURCE
    state_dir: str = DEFAULT_STATE_DIR
    slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    pythons: tuple[str, ...] = ()           # extra interpreters (--python), preferred on ties
    discover_path: bool = True              # also look for python3, python3.X on PATH
    include_running: bool = True            # the interpreter running the agent
    probe_timeout: float = 10.0
    job_timeout: float | None = None        # wall-clock limit per job, seconds
    kill_grace: float = 1.0                 # SIGTERM -> SIGKILL delay when a limit kills a job
    limit_address_space: int | None = 8 * 1024 ** 3   # RLIMIT_AS per job, bytes
    limit_open_files: int | None = 1024     # RLIMIT_NOFILE per job
    limit_processes: int | None = 4096      # processes per job (its cgroup or session) and RLIMIT_NPROC
    limit_memory: int | None = None         # bytes per job, all its processes (cgroup memory limit)
    use_cgroups: bool = True                # per-job cgroups where the machine allows (else sessions)
    job_user: str | None = None             # run jobs as this user (the agent must run as root)
    retain_age: float | None = None         # retention: DONE jobs' directories, cache entries (seconds)
    retain_bytes: int | None = None         # retention: jobs/ + cache/ total bytes
    gc_interval: float = 600.0              # retention: seconds between background passes
    job_env: dict[str, str] = field(default_factory=dict)  # extra variables given to jobs
    stop_jobs_on_exit: bool = False         # on a clean stop: leave jobs running and adopt later
    accept_lost_journal: bool = False       # start although jobs/ or cache/ exist without a journal
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    auth_tokens: str | None = None     # file of allowed bearer tokens (reference_agent.auth)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    log_rpcs: bool = True
    # the server (reference_agent.transport, reference_agent.calls): docs/AGENT.md "Serving"
    work_threads: int | None = None         # threads for blocking work; None: sized for the machine
    max_queued_calls: int = 256             # calls waiting for a work thread; more: RESOURCE_EXHAUSTED
    request_timeout: float = 10.0           # seconds for a call's request message to arrive
    max_connections: int = 4096             # connections at once (lowered to fit the open-files limit)
    max_streams_per_connection: int = 100   # concurrent calls on one connection (HTTP/2 streams)
    max_calls: int = 4096                   # concurrent calls in all; more: RESOURCE_EXHAUSTED
    max_open_streams: int = 128             # open streaming calls of one method (Watch, reflection)
    keepalive_time: float = 60.0            # ping a connection with calls after this idle time
    keepalive_timeout: float = 20.0         # drop it when the ping is not answered within this
    min_client_ping_interval: float = 10.0  # client keepalive pings closer than this are strikes
    max_connection_idle: float = 300.0      # close connections without calls after this long
    max_connection_age: float | None = 3600.0  # ask clients to reconnect after this long
    max_connection_age_grace: float = 300.0    # then close, calls in flight or not

    def validate(self) -> "AgentConfig":
        parse_listen(self.listen)
        if not isinstance(self.slots, int) or self.slots < 1:
            raise ConfigError(f"--slots {self.slots!r}: must be an integer >= 1")
        if self.job_timeout is not None and not self.job_timeout > 0:
            raise ConfigError(f"--job-timeout {self.job_timeout!r}: must be > 0 seconds")
        if not self.probe_timeout > 0:
            raise ConfigError(f"--probe-timeout {self.probe_timeout!r}: must be > 0 seconds")
        if not self.max_request_bytes >= 1024:
            raise ConfigError(f"--max-request-bytes {self.max_request_bytes!r}: must be >= 1024")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port {self.metrics_port!r}: must be in 0..65535")
        if not self.source:
            raise ConfigError("--source '': give a directory or an fsspec URL")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is on top of TLS)")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_tokens"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"--{name.replace('_', '-')} {path!r}: no such file")
        for python in self.pythons:
            if not (os.path.isfile(python) and os.access(python, os.X_OK)):
                raise ConfigError(f"--python {python!r}: not an executable file")
        if self.job_user is not None:
            self.job_identity()  # ConfigError: unknown user, or the agent cannot switch user
        if self.retain_age is not None and not 0 < self.retain_age < float("inf"):
            raise ConfigError(f"--retain-age {self.retain_age!r}: must be a finite number of seconds > 0")
        if self.retain_bytes is not None and self.retain_bytes < 1:
            raise ConfigError(f"--retain-bytes {self.retain_bytes!r}: must be >= 1")
        if not 0 < self.gc_interval < float("inf"):
            raise ConfigError(f"--gc-interval {self.gc_interval!r}: must be a finite number of seconds > 0")
        self._validate_server()
        for limit in ("limit_address_space", "limit_open_files", "limit_processes", "limit_memory"):
            value = getattr(self, limit)
            if value is not None and value < 1:
                raise ConfigError(f"--{limit.replace('_', '-')} {value!r}: must be >= 1")
        return self

    def _validate_server(self) -> None:
        if self.work_threads is not None and not (isinstance(self.work_threads, int) and self.work_threads >= 1):
            raise ConfigError(f"--work-threads {self.work_threads!r}: must be an integer >= 1")
        for name, minimum in (("max_queued_calls", 0), ("max_connections", 1), ("max_streams_per_connection", 1),
                              ("max_calls", 1), ("max_open_streams", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(f"--{name.replace('_', '-')} {value!r}: must be an integer >= {minimum}")
        for name in ("request_timeout", "keepalive_time", "keepalive_timeout", "min_client_ping_interval",
                     "max_connection_idle", "max_connection_age", "max_connection_age_grace"):
            value = getattr(self, name)
            if value is None and name == "max_connection_age":
                continue
            if not (isinstance(value, (int, float)) and 0.001 <= value < 2**31 / 1000):
                raise ConfigError(f"--{name.replace('_', '-')} {value!r}: must be a duration from 1ms to 24d")

    def job_identity(self):
        """The JobUser of --job-user (None without it); ConfigError naming the value otherwise."""
        if self.job_user is None:
            return None
        import pwd

        from reference_agent.processes import JobUser

        try:
            entry = pwd.getpwnam(self.job_user)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"--job-user {self.job_user!r}: no such user") from None
        if entry.pw_uid == os.geteuid():
            return None  # the agent's own user: nothing to switch
        if os.geteuid() != 0:
            raise ConfigError(f"--job-user {self.job_user!r}: the agent must run as root to run jobs as "
                              "another user")
        from reference_agent.processes import JOB_USER_SHELL, SETPRIV

        for tool in (JOB_USER_SHELL, SETPRIV):
            if not os.access(tool, os.X_OK):
                raise ConfigError(f"--job-user {self.job_user!r}: needs {tool} to launch jobs")
        return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    @property
    def is_local_source(self) -> bool:
        return "://" not in self.source and "::" not in self.source
