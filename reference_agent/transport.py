"""What the agent's server needs to face the network: grpc's channel arguments for caps,
keepalive and connection lifetimes, the open-files limit, and the cap on connections it allows."""
from __future__ import annotations

import resource

# File descriptors kept for the agent's own work whatever the connections: the journal, logs,
# per-job pipes and output files, copies in flight, interpreter probes.
FD_RESERVE = 256
FDS_PER_SLOT = 8
FDS_PER_WORK_THREAD = 4


def raise_open_files_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit (the common soft limit, 1,024, let 1,100
    idle connections take every descriptor). Returns (before, after); after == before when the
    kernel refuses or it is already there."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


def fd_reserve(slots: int, work_threads: int) -> int:
    """Descriptors the agent keeps for itself (not for connections)."""
    return FD_RESERVE + FDS_PER_SLOT * slots + FDS_PER_WORK_THREAD * work_threads


def connection_cap(configured: int, slots: int, work_threads: int, open_files: int | None = None) -> int:
    """The connections the server accepts at once: `configured`, lowered so that the open-files
    limit keeps fd_reserve() descriptors for jobs and the journal (at least 1)."""
    if open_files is None:
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, open_files - fd_reserve(slots, work_threads)))


def server_options(config, max_connections: int) -> list[tuple[str, int]]:
    """grpc channel arguments of the agent's server, from its AgentConfig."""
    ms = lambda seconds: int(seconds * 1000)  # noqa: E731
    options = [
        ("grpc.max_receive_message_length", config.max_request_bytes),  # AGT-ERR-2
        ("grpc.so_reuseport", 0),  # a second agent on the same port fails to bind
        ("grpc.max_concurrent_streams", config.max_streams_per_connection),
        ("grpc.max_allowed_incoming_connections", max_connections),
        # the server pings a connection with calls after this long without traffic, and drops it
        # when no answer comes within the timeout (a peer that vanished)
        ("grpc.keepalive_time_ms", ms(config.keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(config.keepalive_timeout)),
        # enforcement: client pings closer than this (or any without calls) are strikes, and
        # past max_ping_strikes the connection is closed (GOAWAY too_many_pings)
        ("grpc.http2.min_ping_interval_without_data_ms", ms(config.min_client_ping_interval)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", ms(config.max_connection_idle)),
    ]
    if config.max_connection_age is not None:
        options += [("grpc.max_connection_age_ms", ms(config.max_connection_age)),
                    ("grpc.max_connection_age_grace_ms", ms(config.max_connection_age_grace))]
    return options
